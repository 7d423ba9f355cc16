"""The Clusters page shows administrators each cluster's allocation as bars: what admitted
workloads hold and what projects are guaranteed, against the capacity (issue 14, charts)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import SCREENSHOTS, World, sign_in


def _admin_password(world: World) -> str:
    return (world.server.database.data_dir / "admin-password").read_text().strip()


def test_cluster_allocation_bars(page: Page, world: World):
    cluster = world.unique("alloc")
    created = world.admin.post("/api/v1/clusters", json={"name": cluster, "kind": "kubernetes",
                                                          "capacity": {"gpu": 8, "cpu": 64, "memory": "256Gi"}})
    assert created.status_code == 201, created.text
    beat = world.admin.post("/api/v1/agent/heartbeat", json={},
                            headers={"Authorization": f"Bearer {created.json()['agent_token']}"})
    assert beat.status_code == 200, beat.text
    project = world.project("alloc-team")
    quota = world.admin.put(f"/api/v1/projects/{project}/quotas/{cluster}",
                            json={"guaranteed": {"gpu": 4, "cpu": 16, "memory": "64Gi"}})
    assert quota.status_code == 200, quota.text
    for i in range(2):
        world.admitted(world.submit(project, f"on-{cluster}-{i}", cluster=cluster))

    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/clusters")
    gpu = page.get_by_role("img", name=f"{cluster} GPU: 2 allocated of 8, 4 guaranteed to projects")
    expect(gpu).to_be_visible()
    assert [gpu.locator(f"rect.{k}").get_attribute("width") for k in ("track", "g", "u")] == \
        ["100.00%", "50.00%", "25.00%"]
    expect(page.get_by_role("img", name=f"{cluster} CPU: 4 cores allocated of 64 cores, 16 cores guaranteed to "
                                        "projects")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("table.allocation").screenshot(path=str(SCREENSHOTS / "cluster-allocation.png"))


def test_members_see_no_allocation(page: Page, world: World):
    world.project("alloc-member", world.user("lee@example.com"))
    sign_in(page, world.url, "lee@example.com")
    page.goto(f"{world.url}/clusters")
    expect(page.get_by_role("heading", name="Clusters")).to_be_visible()
    expect(page.get_by_role("heading", name="Allocation")).to_have_count(0)
