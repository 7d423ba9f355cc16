"""The API's interactive documentation works without internet: /docs and /redoc render in
Chromium, and every request either page makes goes to Corral itself (no CDN, no fonts)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Request, Route, expect

from tests.e2e.web.conftest import SCREENSHOTS, World, screenshot


def _offline(context: BrowserContext, server_url: str) -> list[str]:
    """Every URL the pages request; any not on the server is refused, as with no internet."""
    origin = urlsplit(server_url).netloc
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    def only_the_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            route.abort("internetdisconnected")

    context.on("request", record)
    context.route("**/*", only_the_server)
    return requested


def _elsewhere(requested: list[str], server_url: str) -> list[str]:
    origin = urlsplit(server_url).netloc
    return [u for u in requested if urlsplit(u).scheme != "data" and urlsplit(u).netloc != origin]


def test_swagger_ui_renders_the_operations_from_corral_alone(context: BrowserContext, page: Page, world: World):
    requested = _offline(context, world.url)
    page.goto(f"{world.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Corral")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 20
    expect(page.locator(".opblock-summary-path[data-path='/api/v1/workloads']").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    screenshot(page, "api-docs-swagger")
    paths = {urlsplit(u).path for u in requested}
    assert {"/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= paths
    assert _elsewhere(requested, world.url) == []


def test_redoc_renders_from_corral_alone(context: BrowserContext, page: Page, world: World):
    requested = _offline(context, world.url)
    page.goto(f"{world.url}/redoc")
    expect(page.locator(".api-info h1")).to_contain_text("Corral")
    expect(page.get_by_role("menuitem").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SCREENSHOTS / "api-docs-redoc.png"))  # the first screen: the whole is ~47,000 px
    paths = {urlsplit(u).path for u in requested}
    assert {"/redoc", "/openapi.json", "/docs/assets/redoc.standalone.js"} <= paths
    assert _elsewhere(requested, world.url) == []


def test_the_assets_are_cached_and_compressed(world: World):
    page = world.admin.get("/docs").text
    js = next(part.split('"')[0] for part in page.split('src="')[1:] if "swagger-ui-bundle.js" in part)
    first = world.admin.get(js, headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
    assert "immutable" in first.headers["cache-control"]
    assert first.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    again = world.admin.get(js, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    redoc = world.admin.get("/docs/assets/redoc.standalone.js")
    assert redoc.status_code == 200 and b"cdn.redoc.ly" not in redoc.content
    assert world.admin.get("/docs/assets/../../etc/passwd").status_code == 404
    assert world.admin.get("/docs/assets/core.py").status_code == 404


def test_swagger_ui_authorizes_with_a_token_and_try_it_out_answers(page: Page, world: World):
    schema = world.admin.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["token"]["description"]}
    assert {"token": []} in schema["paths"]["/api/v1/projects"]["get"]["security"]
    page.goto(f"{world.url}/docs")
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux input[type=text]").fill(world.server.admin_token)
    page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
    expect(page.locator(".modal-ux").get_by_role("button", name="Remove authorization")).to_be_visible()
    page.locator(".modal-ux .auth-btn-wrapper button.btn-done").click()
    operation = page.locator("#operations-projects-list_projects_api_v1_projects_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    answer = operation.locator(".responses-inner")
    expect(answer).to_contain_text("Server response")
    expect(answer.locator("pre.curl")).to_contain_text(f"Authorization: Bearer {world.server.admin_token}")
    expect(answer).to_contain_text('"name": "default"')  # 200, the caller's projects (401 without the token)
