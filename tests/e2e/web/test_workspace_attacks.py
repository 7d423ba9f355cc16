"""A member's hostile workspace, opened by an admin in real Chromium, cannot act as the admin.

The member runs a service whose page (``evil_workspace.py``) tries, from the admin's
browser: to read Corral's token page and its CSRF value and mint a token, to read
another workload's output through Corral's API, to read Corral's cookies, and to plant
``corral_session`` (from its server with ``Domain=localhost``, and from script). The
admin uses Corral at ``http://localhost:<port>``, the parent of every workload's host
name (``w<id>.localhost``), where a planted parent-domain cookie would count. The test
passes only because every attempt fails.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.web.conftest import World, sign_in
from tests.e2e.web.test_workloads_page import row

EVIL = Path(__file__).with_name("evil_workspace.py")
MEMBER = "mallory@example.com"


def _wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def test_a_workspace_page_opened_by_an_admin_cannot_act_as_the_admin(page: Page, context: BrowserContext,
                                                                     world: World):
    port = urlsplit(world.url).port
    corral = f"http://localhost:{port}"  # the parent domain of w<id>.localhost: the hardest case
    admin = world.admin
    # A workload of the admin's whose output is secret.
    secret = f"top-secret-{time.monotonic_ns()}"
    job = admin.post("/api/v1/workloads", json={
        "type": "custom", "name": "secret-job", "project": "default", "cluster": "local",
        "command": f"echo {secret}", "resources": {"cpu": "100m", "memory": "64Mi"}})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    _wait_for(lambda: secret in admin.get(f"/api/v1/workloads/{job_id}/logs").text, 60, "the secret output")

    # The member's hostile workspace, in a project the admin can see (every project).
    world.user(MEMBER)
    assert admin.post("/api/v1/projects/default/members", json={"email": MEMBER}).status_code in (201, 409)
    login = world.server.cli(Path(tempfile.mkdtemp()) / "config.toml")
    member_token = login.invoke("tokens", "create", MEMBER).stdout.strip()
    drop = Path(tempfile.mkdtemp(prefix="corral-evil-"))
    drop.chmod(0o777)  # the workload may run as the project's own OS user
    shutil.copy(EVIL, drop / "evil.py")
    reports = drop / "reports.jsonl"
    urls = f"{corral},{world.url}"
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {member_token}"}) as member:
        created = member.post("/api/v1/workloads", json={
            "type": "workspace", "name": "innocent-notebook", "project": "default", "cluster": "local",
            "command": f"{sys.executable} {drop / 'evil.py'} {{port}} {reports} {urls} {job_id}",
            "resources": {"cpu": "100m", "memory": "256Mi"}})
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    detail = _wait_for(lambda: (d := world.detail(wid))["status"] in ("Running", "Failed") and d, 60, "the workspace")
    assert detail["status"] == "Running", (detail["status_reason"], detail["components"])
    tokens_before = {t["name"] for t in admin.get("/api/v1/tokens").json()}

    # The admin signs in to Corral and opens the workspace from the Workloads page.
    password = (world.server.database.data_dir / "admin-password").read_text().strip()
    sign_in(page, corral, "admin@localhost", password, next_path="/workloads?project=default")
    session_before = [c for c in context.cookies(corral) if c["name"] == "corral_session"]
    assert len(session_before) == 1 and session_before[0]["httpOnly"] and session_before[0]["sameSite"] == "Lax"
    set_cookies: list[str] = []  # what reached the browser from the workload's service

    def seen(response) -> None:  # type: ignore[no-untyped-def]
        url = urlsplit(response.url)
        if url.hostname == f"w{wid}.localhost" and not url.path.startswith("/__corral/"):  # not Corral's sign-in
            set_cookies.extend(h["value"] for h in response.headers_array() if h["name"].lower() == "set-cookie")

    context.on("response", seen)
    row(page, "innocent-notebook").get_by_role("button", name="Actions for innocent-notebook").click()
    with context.expect_page() as opened:
        page.get_by_role("menuitem", name="Open workspace").click()
    evil = opened.value
    expect(evil.locator("p")).to_have_text("done", timeout=30_000)
    assert urlsplit(evil.url).netloc == f"w{wid}.localhost:{port}"
    got = {}
    for line in _wait_for(lambda: reports.exists() and '"done"' in reports.read_text() and reports.read_text(),
                          15, "the page's report").splitlines():
        entry = json.loads(line)
        got[entry["k"]] = entry["v"]

    # It read none of Corral's cookies, tokens, pages or data.
    session_value = session_before[0]["value"]
    everything = json.dumps(got)
    for leaked in (session_value, secret, "csrf-token", "admin@localhost", "corral_app"):
        assert leaked not in everything, (leaked, got)
    assert "corral_session" not in got["document.cookie"]
    for base in (corral, world.url):
        assert got[f"GET tokens {base}"].startswith("error: TypeError"), got  # the browser kept the answer
        assert got[f"POST tokens no-cors {base}"].startswith("0 opaque"), got
    # No token was minted for the admin, by any of the tries.
    assert {t["name"] for t in admin.get("/api/v1/tokens").json()} == tokens_before

    # Its server's cookies lost their Domain (host-only on the workload's own name) and
    # Corral's name was refused; the admin's session is untouched and still works.
    assert set_cookies and all("domain" not in c.lower() for c in set_cookies), set_cookies
    assert not any(c.lower().startswith("corral_") for c in set_cookies), set_cookies
    assert [(c["name"], c["value"]) for c in context.cookies(corral) if "corral_session" in c["name"]] == [
        ("corral_session", session_value)]
    workload_cookies = context.cookies(f"http://w{wid}.localhost:{port}")
    assert {c["domain"] for c in workload_cookies} == {f"w{wid}.localhost"}  # host-only, all of them
    credential = next(c for c in workload_cookies if c["name"] == "corral_app")
    assert credential["httpOnly"] and credential["value"] != session_value
    page.goto(f"{corral}/tokens")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    for done in (wid, job_id):
        assert admin.delete(f"/api/v1/workloads/{done}").status_code == 202
    shutil.rmtree(drop, ignore_errors=True)
