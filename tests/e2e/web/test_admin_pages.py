"""Projects, members, quotas and clusters: the quota view for members, the admin pages for admins."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import CLUSTER, World, screenshot, sign_in


def _admin_password(world: World) -> str:
    return (world.server.database.data_dir / "admin-password").read_text().strip()


def test_admin_creates_a_project_adds_a_member_and_sets_a_quota(page: Page, world: World):
    member = world.user("judy@example.com")
    name = world.unique("made-in-ui")
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.get_by_role("link", name="Projects & quotas").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Description").fill("made by a browser")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()

    page.get_by_label("Add a member by email").fill("nobody@example.com")
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("alert")).to_contain_text("not found")
    page.get_by_label("Add a member by email").fill(member)
    page.get_by_role("button", name="Add").click()
    expect(page.locator("ul.members")).to_contain_text(member)

    page.get_by_label("Cluster").select_option(CLUSTER)
    # Choosing a cluster shows its quota (the page reloads for it, unless it was shown already).
    expect(page.locator("#q-cluster")).to_have_attribute("data-shown", CLUSTER)
    page.locator("#q-g-gpu").fill("4")
    page.locator("#q-g-cpu").fill("lots")
    page.get_by_role("button", name="Set quota").click()
    expect(page.get_by_role("alert")).to_contain_text("not a CPU quantity")
    page.locator("#q-g-cpu").fill("16")
    page.locator("#q-g-memory").fill("128Gi")
    page.get_by_label("GPU limit").fill("unbounded")
    page.get_by_role("button", name="Set quota").click()
    expect(page.get_by_role("status")).to_contain_text(f"Quota of {name} on {CLUSTER} set")
    quota = world.admin.get(f"/api/v1/projects/{name}/quotas/{CLUSTER}").json()
    assert quota["guaranteed"]["gpu"] == 4 and quota["guaranteed"]["cpu"] == 16
    assert quota["limit"]["gpu"] is None and quota["limit"]["memory"] == 128 * 2**30
    screenshot(page, "project-admin")


def test_members_see_their_project_quota(page: Page, world: World):
    project = world.project("quota-view", world.user("ken@example.com"), gpu=2)
    running = world.submit(project, "uses-one", resources={"gpu": 1, "cpu": 1, "memory": "1Gi"})
    world.report(running, "Running")
    world.submit(project, "big", resources={"gpu": 2, "cpu": 1, "memory": "1Gi"})  # waits: 1 of 2 in use
    sign_in(page, world.url, "ken@example.com")
    page.goto(f"{world.url}/projects/{project}")
    table = page.locator("table.quotas")
    gpu = table.get_by_role("row", name=re.compile(r"^(gpu-a )?GPU"))
    expect(gpu.locator("td").nth(1)).to_have_text("2")  # guaranteed
    expect(gpu.locator("td").nth(2)).to_have_text("2")  # limit
    expect(gpu.locator("td").nth(3)).to_have_text("1")  # used
    expect(table.locator("td[rowspan]").first).to_have_text("1")  # queued
    expect(page.get_by_role("button", name="Set quota")).to_have_count(0)  # admins only
    screenshot(page, "project-quota")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(f"{world.url}/projects/{project}/quotas",
                                form={"csrf_token": csrf, "cluster": CLUSTER, "guaranteed_gpu": "100"})
    assert refused.status == 403


def test_clusters_page_shows_health(page: Page, world: World):
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/clusters")
    world.heartbeat()
    page.reload()
    expect(page.get_by_role("row", name=re.compile(CLUSTER)).locator(".st")).to_have_text("healthy")
    page.get_by_label("Name").fill(world.unique("far-away"))
    page.get_by_label("Kind").select_option("slurm")
    page.get_by_label("GPUs", exact=True).fill("8")  # not the allocation chart "GPUs, latest: ..."
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#agent-token")).to_contain_text("crla_")
    expect(page.locator(".st-verifying").first).to_have_text("verifying")
    screenshot(page, "clusters")


def test_admin_removes_a_cluster_and_one_with_workloads_is_refused(page: Page, world: World):
    spare = world.unique("spare")
    assert world.admin.post("/api/v1/clusters", json={"name": spare, "kind": "slurm"}).status_code == 201
    busy = world.project("busy")
    world.submit(busy, "keeps-it")  # a workload on the tests' cluster: that one cannot go
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/clusters")
    page.once("dialog", lambda dialog: dialog.accept())  # "Remove cluster ...?"
    page.get_by_role("button", name=f"Remove cluster {spare}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Cluster {spare} removed.")
    expect(page.get_by_role("button", name=f"Remove cluster {spare}")).to_have_count(0)
    assert world.admin.get(f"/api/v1/clusters/{spare}").status_code == 404
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Remove cluster {CLUSTER}").click()
    expect(page.get_by_role("alert")).to_contain_text("still has workloads")
    expect(page.get_by_role("button", name=f"Remove cluster {CLUSTER}")).to_be_visible()
    assert world.admin.get(f"/api/v1/clusters/{CLUSTER}").status_code == 200
    # Dismissing the question removes nothing.
    other = world.unique("kept")
    assert world.admin.post("/api/v1/clusters", json={"name": other, "kind": "slurm"}).status_code == 201
    page.goto(f"{world.url}/clusters")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name=f"Remove cluster {other}").click()
    expect(page.get_by_role("button", name=f"Remove cluster {other}")).to_be_visible()
    assert world.admin.get(f"/api/v1/clusters/{other}").status_code == 200
