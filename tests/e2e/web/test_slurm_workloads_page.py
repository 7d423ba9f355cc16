"""The Workloads page (real Chromium) following a workload that runs as a job on a real
Slurm cluster: submitted through the API, its status changes as Slurm runs it (the Slurm
world of tests/e2e/test_slurm_e2e.py: `corral serve`, `corral agent --backend slurm`,
slurmctld and four slurmd nodes)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Cli, ok
from tests.e2e.test_slurm_e2e import SlurmWorld, _submit, world  # noqa: F401 - the Slurm world fixture
from tests.e2e.web.conftest import PASSWORD, screenshot, sign_in
from tests.integration.backends.slurm_support import slurm_cluster  # noqa: F401 - fixture

VIEWER = "slurm-viewer@example.com"


def test_the_workloads_page_shows_a_slurm_jobs_statuses_as_they_change(page: Page, world: SlurmWorld):  # noqa: F811
    created = world.client.post("/api/v1/users", json={"email": VIEWER, "role": "member"})
    assert created.status_code == 201, created.text
    added = world.client.post("/api/v1/projects/default/members", json={"email": VIEWER})
    assert added.status_code == 201, added.text
    password = world.server.database.data_dir / "viewer-password"
    password.write_text(PASSWORD + "\n")
    ok(Cli(dict(world.server.database.env)).invoke("users", "set-password", VIEWER, "--password-file", str(password)))
    password.unlink()

    sign_in(page, world.server.url, VIEWER, next_path="/workloads?project=default")
    page.get_by_label("Live").check()  # the table is read again every 5 s
    _submit(world.client, name="on-slurm-in-browser", command="sleep 12; echo done")
    row = page.locator("table.workloads tbody tr",
                       has=page.get_by_role("link", name="on-slurm-in-browser", exact=True))
    status = row.locator(".st")
    expect(status).to_have_text("Running", timeout=30_000)
    screenshot(page, "workloads-slurm-running")
    expect(status).to_have_text("Complete", timeout=30_000)
