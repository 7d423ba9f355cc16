"""The quota form in Chromium: filled in with the current quota, an empty field keeps its
value, another cluster's quota is one click (or choice) away; an administrator is not told
they are a member of projects (issue 14 item 10)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import CLUSTER, SCREENSHOTS, World, screenshot, sign_in


def _admin_password(world: World) -> str:
    return (world.server.database.data_dir / "admin-password").read_text().strip()


def _quota(world: World, project: str) -> dict:
    response = world.admin.get(f"/api/v1/projects/{project}/quotas/{CLUSTER}")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_quota_form_is_prefilled_and_an_empty_field_keeps_its_value(page: Page, world: World):
    project = world.unique("prefill")
    assert world.admin.post("/api/v1/projects", json={"name": project}).status_code == 201
    quota = world.admin.put(f"/api/v1/projects/{project}/quotas/{CLUSTER}", json={
        "guaranteed": {"gpu": 4, "cpu": "1500m", "memory": "48Gi", "ephemeral_storage": "1536Mi"},
        "limit": {"gpu": 6, "cpu": None}})
    assert quota.status_code == 200, quota.text
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/projects/{project}")

    # The form shows the quota as it is, in amounts it takes back unchanged.
    expect(page.get_by_label("Cluster", exact=True)).to_have_value(CLUSTER)
    expect(page.locator("#q-g-gpu")).to_have_value("4")
    expect(page.locator("#q-g-cpu")).to_have_value("1500m")
    expect(page.locator("#q-g-memory")).to_have_value("48Gi")
    expect(page.locator("#q-g-ephemeral_storage")).to_have_value("1536Mi")
    expect(page.get_by_label("GPU limit")).to_have_value("6")
    expect(page.get_by_label("CPU limit")).to_have_value("unbounded")
    expect(page.get_by_label("Memory limit")).to_have_value("")  # equal to the guarantee: follows it
    screenshot(page, "quota-form-prefilled")

    # Submitted as shown: nothing changes.
    before = _quota(world, project)
    page.get_by_role("button", name="Set quota").click()
    expect(page.get_by_role("status")).to_contain_text(f"Quota of {project} on {CLUSTER} set")
    after = _quota(world, project)
    assert (after["guaranteed"], after["limit"]) == (before["guaranteed"], before["limit"])

    # Emptied fields keep their value; a changed guarantee moves the limit that equalled it.
    page.locator("#q-g-gpu").fill("")
    page.locator("#q-g-cpu").fill("")
    page.get_by_label("GPU limit").fill("")
    page.locator("#q-g-memory").fill("64Gi")
    page.get_by_role("button", name="Set quota").click()
    expect(page.get_by_role("status")).to_contain_text("set")
    quota = _quota(world, project)
    assert quota["guaranteed"] == {"gpu": 4, "cpu": 1.5, "memory": 64 * 2**30, "ephemeral_storage": 1536 * 2**20}
    assert quota["limit"] == {"gpu": 6, "cpu": None, "memory": 64 * 2**30, "ephemeral_storage": 1536 * 2**20}
    expect(page.locator("#q-g-memory")).to_have_value("64Gi")  # the page shows the new quota

    # The table's Edit link fills the form in for that cluster.
    page.get_by_role("link", name=f"Edit the quota on {CLUSTER}").click()
    expect(page).to_have_url(re.compile(rf"\?cluster={CLUSTER}#set-quota$"))
    expect(page.locator("#q-g-gpu")).to_have_value("4")


def test_a_cluster_without_a_quota_shows_an_empty_form(page: Page, world: World):
    project = world.unique("noquota")
    assert world.admin.post("/api/v1/projects", json={"name": project}).status_code == 201
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/projects/{project}?cluster={CLUSTER}")
    for n in ("gpu", "cpu", "memory", "ephemeral_storage"):
        expect(page.locator(f"#q-g-{n}")).to_have_value("")
    page.locator("#q-g-gpu").fill("2")
    page.get_by_role("button", name="Set quota").click()
    expect(page.get_by_role("status")).to_contain_text("set")
    quota = _quota(world, project)
    assert quota["guaranteed"] == {"gpu": 2, "cpu": 0, "memory": 0, "ephemeral_storage": 0}
    assert quota["limit"] == quota["guaranteed"]


def test_an_administrator_is_not_told_they_are_a_member(page: Page, world: World):
    world.project("admin-sees-a")
    world.project("admin-sees-b")
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/workloads")
    expect(page.get_by_role("main")).to_contain_text(re.compile(r"As an administrator you see every project \(\d+\)"))
    expect(page.get_by_role("main")).not_to_contain_text("You are a member of")


def test_quota_use_is_drawn_as_bars(page: Page, world: World):
    project = world.unique("bars")
    assert world.admin.post("/api/v1/projects", json={"name": project}).status_code == 201
    quota = world.admin.put(f"/api/v1/projects/{project}/quotas/{CLUSTER}", json={
        "guaranteed": {"gpu": 2, "cpu": 16, "memory": "64Gi"}, "limit": {"gpu": 4, "cpu": None}})
    assert quota.status_code == 200, quota.text
    for i in range(3):  # 3 GPUs in use: 2 guaranteed, 1 borrowed
        world.admitted(world.submit(project, f"gpu-job-{i}"))
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/projects/{project}")
    gpu = page.get_by_role("img", name="GPU: 3 used of 2 guaranteed (1 borrowed), limit 4")
    expect(gpu).to_be_visible()
    # Scaled to the largest of guarantee, use and limit (4 GPUs).
    assert gpu.locator("rect.g").get_attribute("width") == "50.00%"
    assert gpu.locator("rect.u").get_attribute("width") == "50.00%"
    assert (gpu.locator("rect.b").get_attribute("x"), gpu.locator("rect.b").get_attribute("width")) == \
        ("50.00%", "25.00%")
    assert gpu.locator("rect.l").get_attribute("x") == "100.00%"
    cpu = page.get_by_role("img", name="CPU: 6 cores used of 16 cores guaranteed, limit unbounded")
    expect(cpu).to_be_visible()
    assert cpu.locator("rect.l").count() == 0 and cpu.locator("rect.u").get_attribute("width") == "37.50%"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("table.quotas").screenshot(path=str(SCREENSHOTS / "quota-bars.png"))


def test_choosing_another_cluster_shows_its_quota(page: Page, world: World):
    other = world.unique("zz-other")
    assert world.admin.post("/api/v1/clusters", json={"name": other, "kind": "slurm",
                                                      "capacity": {"gpu": 4}}).status_code == 201
    project = world.unique("switch")
    assert world.admin.post("/api/v1/projects", json={"name": project}).status_code == 201
    assert world.admin.put(f"/api/v1/projects/{project}/quotas/{CLUSTER}",
                           json={"guaranteed": {"gpu": 3}}).status_code == 200
    assert world.admin.put(f"/api/v1/projects/{project}/quotas/{other}",
                           json={"guaranteed": {"gpu": 1}}).status_code == 200
    sign_in(page, world.url, "admin@localhost", _admin_password(world))
    page.goto(f"{world.url}/projects/{project}")
    expect(page.locator("#q-g-gpu")).to_have_value("3")  # the first cluster with a quota
    page.get_by_label("Cluster", exact=True).select_option(other)
    expect(page).to_have_url(re.compile(rf"\?cluster={other}#set-quota$"))
    expect(page.locator("#q-g-gpu")).to_have_value("1")
