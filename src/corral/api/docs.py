"""The API's interactive documentation, served entirely by Corral.

FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN, so they are blank
on a machine without internet. These pages are FastAPI's, but their JavaScript, CSS and
icon come from /docs/assets/, files shipped by the fastapi-offline package (swagger-ui
bundle and css, redoc standalone, favicon); nothing is fetched from anywhere else
(tests/e2e/web/test_api_docs.py checks it in Chromium with every other host cut off).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse, Response

from corral.static_assets import StaticFile, respond, static_file

ASSETS = "/docs/assets"
_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
# The one thing either bundle fetches from elsewhere: ReDoc's "API docs by Redocly" logo.
# It becomes an empty image, so that the page asks nothing of any other host.
_REWRITES = {"redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg",
                                      b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E")]}


@cache
def _asset(name: str) -> StaticFile | None:
    if name not in _FILES:
        return None
    body = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    for old, new in _REWRITES.get(name, []):
        body = body.replace(old, new)
    return static_file(name, body, compress=not name.endswith(".png"))


def _url(name: str) -> str:
    found = _asset(name)
    return f"{ASSETS}/{name}?v={found.etag if found else '0'}"


def install(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc); the app must be made with docs_url=None, redoc_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=root + _url("swagger-ui-bundle.js"), swagger_css_url=root + _url("swagger-ui.css"),
            swagger_favicon_url=root + _url("favicon.png"), swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(oauth2_redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=root + _url("redoc.standalone.js"), redoc_favicon_url=root + _url("favicon.png"),
            with_google_fonts=False)

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    def asset(name: str, request: Request) -> Response:
        return respond(_asset(name), request)
