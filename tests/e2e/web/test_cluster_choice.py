"""The submit form's cluster choice says each cluster's health: a silent cluster cannot be
picked, and one never heard from is said so when Corral (or the user) picks it (issue 14 item 2)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import stop_server
from tests.e2e.web.conftest import World, make_world, screenshot, sign_in

UNHEALTHY_AFTER_S = 4
ZOE = "zoe@example.com"


@pytest.fixture(scope="module")
def quick_world(tmp_path_factory: pytest.TempPathFactory, _databases) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """A server that calls a cluster unhealthy after 4 s of silence (instead of 90 s)."""
    world, server = make_world("sqlite", tmp_path_factory.mktemp("web-health"), _databases,
                               env_extra={"CORRAL_CLUSTER_UNHEALTHY_AFTER_S": str(UNHEALTHY_AFTER_S)})
    yield world
    world.admin.close()
    world.agent.close()
    stop_server(server)


def _cluster(world: World, name: str) -> str:
    created = world.admin.post("/api/v1/clusters", json={"name": name, "kind": "kubernetes",
                                                          "capacity": {"gpu": 8, "cpu": 64, "memory": "256Gi"}})
    assert created.status_code == 201, created.text
    return created.json()["agent_token"]


def _heartbeat(world: World, token: str) -> None:
    response = world.admin.post("/api/v1/agent/heartbeat", json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def test_the_cluster_select_shows_health_and_a_never_heard_from_choice_is_said(page: Page, quick_world: World):
    world = quick_world
    silent, new, fine = "alpha-silent", "beta-new", "gamma-fine"
    tokens = {name: _cluster(world, name) for name in (silent, new, fine)}
    project = world.unique("health")
    assert world.admin.post("/api/v1/projects", json={"name": project}).status_code == 201
    assert world.admin.post(f"/api/v1/projects/{project}/members",
                            json={"email": world.user(ZOE)}).status_code == 201
    for name in tokens:
        quota = world.admin.put(f"/api/v1/projects/{project}/quotas/{name}",
                                json={"guaranteed": {"gpu": 2, "cpu": 8, "memory": "32Gi"}})
        assert quota.status_code == 200, quota.text
    sign_in(page, world.url, ZOE)
    _heartbeat(world, tokens[silent])
    time.sleep(UNHEALTHY_AFTER_S + 0.5)  # alpha-silent's agent has now been silent too long
    _heartbeat(world, tokens[fine])
    page.goto(f"{world.url}/workloads/new?project={project}")

    # The page opens on Custom, the most general type (the one the quick start submits).
    expect(page.get_by_role("navigation", name="Workload type").get_by_role("link", name="Custom")) \
        .to_have_attribute("aria-current", "page")
    select = page.get_by_label("Cluster")
    options = select.locator("option")
    expect(options.filter(has_text=silent)).to_have_text(
        re.compile(rf"^{silent} \(unhealthy: agent silent since .+ UTC; submissions refused\)$"))
    expect(options.filter(has_text=silent)).to_be_disabled()
    expect(options.filter(has_text=new)).to_have_text(
        f"{new} (never heard from: workloads wait until its agent reports)")
    expect(options.filter(has_text=new)).to_be_enabled()
    expect(options.filter(has_text=fine)).to_have_text(f"{fine} (healthy)")
    expect(select).to_have_value("")  # left to Corral
    screenshot(page, "submit-cluster-health")

    # Left to Corral: placed at admission where it fits (never on the silent cluster);
    # the confirmation names the project, not a cluster.
    page.get_by_role("textbox", name="Name", exact=True).fill("auto-placed")
    page.get_by_role("textbox", name="Command", exact=True).fill("echo hi")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/workloads/\d+$"))
    flash = page.get_by_role("status")
    expect(flash).to_contain_text(f"Submitted Custom workload 'auto-placed' in project {project}")
    expect(flash).not_to_contain_text("never been heard from")
    assert world.detail(int(page.url.rsplit("/", 1)[1]))["cluster"] != silent

    # The cluster never heard from, chosen by hand: the confirmation says what that means.
    page.goto(f"{world.url}/workloads/new?project={project}")
    page.get_by_label("Cluster").select_option(new)
    page.get_by_role("textbox", name="Name", exact=True).fill("on-new")
    page.get_by_role("textbox", name="Command", exact=True).fill("echo hi")
    page.get_by_role("button", name="Submit").click()
    flash = page.get_by_role("status")
    expect(flash).to_contain_text(f"to cluster {new}")
    expect(flash).to_contain_text(f"Cluster {new} has never been heard from: the workload waits until its agent "
                                  "reports.")

    # A healthy cluster, chosen by hand: no warning.
    page.goto(f"{world.url}/workloads/new?project={project}")
    page.get_by_label("Cluster").select_option(fine)
    page.get_by_role("textbox", name="Name", exact=True).fill("on-fine")
    page.get_by_role("textbox", name="Command", exact=True).fill("echo hi")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_contain_text(f"to cluster {fine}")
    expect(page.get_by_role("status")).not_to_contain_text("never been heard from")
