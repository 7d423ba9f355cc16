"""The Models page, a model's page with its evaluations side by side, the metrics on a
workload's page and the model suggestions of the submit form, in Chromium, over a model
really downloaded and evaluations really run by the server's built-in local cluster."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.e2e.bytes_server import serving
from tests.e2e.web.conftest import World, screenshot, sign_in

IVY = "ivy@example.com"
OSCAR = "oscar@example.com"
WEIGHTS = b"weights " * 4000


def _run(world: World, **body: Any) -> dict[str, Any]:
    """Submitted to the local cluster (real processes); its detail once finished."""
    spec = {"cluster": "local", "resources": {"cpu": "100m", "memory": "128Mi"}, **body}
    created = world.admin.post("/api/v1/workloads", json=spec)
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    deadline = time.monotonic() + 60
    while (detail := world.detail(wid))["status"] not in ("Complete", "Failed"):
        assert time.monotonic() < deadline, detail["status_reason"]
        time.sleep(0.1)
    assert detail["status"] == "Complete", detail
    return detail


def test_models_and_evaluations_in_the_browser(page: Page, browser: Browser, world: World):
    project = world.project("models", world.user(IVY))
    quota = world.admin.put(f"/api/v1/projects/{project}/quotas/local", json={"guaranteed": {"cpu": 0, "memory": 0}, "limit": {"cpu": 1, "memory": "1Gi"}})
    assert quota.status_code == 200, quota.text
    with serving(WEIGHTS, "tiny-web.bin") as url:
        download = _run(world, type="model_download", name="fetch-web", project=project, source=url)
    evaluations = [
        _run(world, type="evaluation", name=name, project=project, model="tiny-web", tasks=["qa"],
             command=f"printf '%s' '{metrics}' > \"$CORRAL_METRICS_FILE\"")
        for name, metrics in (("eval-one", '{"accuracy": 0.5, "f1": 0.25}'),
                              ("eval-two", '{"accuracy": 0.75, "f1": 0.5, "bleu": 31.2}'))]

    sign_in(page, world.url, IVY)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    row = page.locator("#models tbody tr", has_text="tiny-web")
    expect(row).to_contain_text(project)
    expect(row).to_contain_text("local")
    expect(row).to_contain_text("download")
    expect(row).to_contain_text(url)
    expect(row.get_by_role("link", name="fetch-web")).to_have_attribute("href", f"/workloads/{download['id']}")
    screenshot(page, "models")

    row.get_by_role("link", name="tiny-web").click()
    expect(page.get_by_role("heading", name="tiny-web")).to_be_visible()
    facts = page.locator("#model-facts")
    expect(facts).to_contain_text("1 file")
    expect(facts.get_by_role("link", name="fetch-web")).to_be_visible()
    table = page.locator("#evaluations table")
    expect(table.locator("thead th")).to_have_text(["Evaluation", "Model", "Status", "Finished", "accuracy", "bleu",
                                                    "f1"])
    expect(table.locator("tbody tr").nth(0)).to_contain_text("eval-two")
    expect(table.locator("tbody tr").nth(0)).to_contain_text("31.2")
    expect(table.locator("tbody tr").nth(1)).to_contain_text("eval-one")
    expect(table.locator("tbody tr").nth(1).locator("td").nth(5)).to_have_text("-")  # it reported no bleu
    screenshot(page, "model-evaluations")

    table.get_by_role("link", name="eval-one").click()
    metrics = page.locator("#metrics")
    expect(metrics.locator("tbody tr")).to_have_count(2)
    expect(metrics).to_contain_text("accuracy")
    expect(metrics).to_contain_text("0.25")
    page.get_by_role("link", name="Compare with the other evaluations of tiny-web").click()
    expect(page.locator("table.evaluations tbody tr")).to_have_count(2)

    page.goto(f"{world.url}/workloads/{download['id']}")
    expect(page.locator("#workload-results")).to_contain_text("Model registered: tiny-web (31.2Ki, 1 file)")

    # The submit form offers the project's models for the model fields.
    page.goto(f"{world.url}/workloads/new?type=evaluation&project={project}")
    model_field = page.get_by_role("combobox", name="Model")
    expect(model_field).to_have_attribute("list", f"models-{project}")
    expect(page.locator(f"datalist#models-{project} option")).to_have_attribute("value", "tiny-web")
    model_field.fill("tiny-web")
    assert page.locator(f"datalist#models-{project} option").count() == 1

    # Another project's member: neither the model nor the metrics.
    world.project("other", world.user(OSCAR))
    other = browser.new_context()
    try:
        oscar = other.new_page()
        sign_in(oscar, world.url, OSCAR)
        oscar.goto(f"{world.url}/models")
        expect(oscar.locator("main")).not_to_contain_text("tiny-web")
        model_id = world.admin.get("/api/v1/models", params={"project": project}).json()["items"][0]["id"]
        for path in (f"/models/{model_id}", f"/workloads/{evaluations[0]['id']}", f"/evaluations?project={project}",
                     f"/models?project={project}"):
            response = oscar.goto(world.url + path)
            assert response is not None and response.status == 404, path
            expect(oscar.locator("body")).not_to_contain_text("0.25")
    finally:
        other.close()
