"""Open a running JupyterLab workspace from the Workloads page: a new tab, through the
authenticated proxy, with the browser's session cookie, and JupyterLab loads in it."""

from __future__ import annotations

import re
import time

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.web.conftest import World, screenshot, sign_in
from tests.e2e.web.test_workloads_page import row


def test_open_a_running_jupyterlab_workspace_in_a_new_tab(page: Page, context: BrowserContext, world: World):
    # A real workspace on the built-in cluster, which the server's own agent runs.
    created = world.admin.post("/api/v1/workloads", json={
        "type": "workspace", "name": "notebook", "project": "default", "cluster": "local",
        "resources": {"cpu": "500m", "memory": "1Gi"}})
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    deadline = time.monotonic() + 90
    while (detail := world.detail(wid))["status"] != "Running":
        assert detail["status"] == "Pending" and time.monotonic() < deadline, detail
        time.sleep(0.2)

    password = (world.server.database.data_dir / "admin-password").read_text().strip()
    sign_in(page, world.url, "admin@localhost", password, next_path="/workloads?project=default")
    row(page, "notebook").get_by_role("button", name="Actions for notebook").click()
    with context.expect_page() as opened:
        page.get_by_role("menuitem", name="Open workspace").click()
    lab = opened.value
    expect(lab).to_have_url(re.compile(rf"/proxy/{wid}/"), timeout=30_000)
    # JupyterLab's own application shell, with its launcher, rendered through the proxy.
    expect(lab.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    expect(lab.get_by_text("Launcher").first).to_be_visible(timeout=30_000)
    screenshot(lab, "workspace-jupyterlab")

    # Its details page shows its output (JupyterLab's own log), read with the session cookie.
    page.goto(f"{world.url}/workloads/{wid}")
    expect(page.locator("#log-text")).to_contain_text("Jupyter", timeout=15_000)

    # Another browser without a session gets no further than the sign-in answer.
    anonymous = context.browser.new_context()
    try:
        response = anonymous.new_page().goto(f"{world.url}/proxy/{wid}/lab")
        assert response is not None and response.status == 401
    finally:
        anonymous.close()
    assert world.admin.delete(f"/api/v1/workloads/{wid}").status_code == 202
