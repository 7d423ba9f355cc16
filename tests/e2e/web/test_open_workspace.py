"""Open a running JupyterLab workspace from the Workloads page: a new tab on the workload's
own origin (w<id>.localhost), signed in there through Corral, and JupyterLab loads in it
and runs code in a kernel."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

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
    port = urlsplit(world.url).port
    origin = f"http://w{wid}.localhost:{port}"
    # On the workload's own origin (Chromium resolves *.localhost to this machine), at JupyterLab's base URL.
    expect(lab).to_have_url(re.compile(rf"^{re.escape(origin)}/lab"), timeout=30_000)
    # JupyterLab's own application shell, with its launcher, rendered through the proxy.
    expect(lab.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    expect(lab.get_by_text("Launcher").first).to_be_visible(timeout=30_000)
    screenshot(lab, "workspace-jupyterlab")
    # Its origin holds a credential for this workload alone, never Corral's session.
    cookies = {c["name"]: c for c in context.cookies(origin)}
    assert "corral_session" not in cookies and cookies["corral_app"]["httpOnly"]
    assert cookies["corral_app"]["domain"] == f"w{wid}.localhost" and cookies["corral_app"]["sameSite"] == "Lax"

    # A notebook's kernel runs code: its WebSocket comes from the workload's own origin.
    lab.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    expect(lab.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=60_000)
    cell = lab.locator(".jp-Notebook .jp-InputArea-editor").first
    expect(cell).to_be_visible(timeout=30_000)
    cell.click()
    lab.keyboard.type("print(6 * 7)")
    lab.keyboard.press("Shift+Enter")
    expect(lab.locator(".jp-OutputArea-output").first).to_have_text("42", timeout=60_000)

    # Its details page shows its output (JupyterLab's own log), read with the session cookie.
    page.goto(f"{world.url}/workloads/{wid}")
    expect(page.locator("#log-text")).to_contain_text("Jupyter", timeout=15_000)

    # Another browser without a session is sent from the workload's origin to sign in to Corral.
    anonymous = context.browser.new_context()
    try:
        stranger = anonymous.new_page()
        stranger.goto(f"{origin}/lab")
        expect(stranger).to_have_url(re.compile(rf"^{re.escape(world.url)}/sign-in\?next="))
        # And nothing of the workload is served on Corral's own origin.
        response = stranger.goto(f"{world.url}/proxy/{wid}/lab")
        assert response is not None and response.status == 404
    finally:
        anonymous.close()
    assert world.admin.delete(f"/api/v1/workloads/{wid}").status_code == 202
    deadline = time.monotonic() + 60  # gone from the default view before the next test looks at it
    while world.detail(wid)["status"] != "Deleted":
        assert time.monotonic() < deadline, world.detail(wid)
        time.sleep(0.2)
