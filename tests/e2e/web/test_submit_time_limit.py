"""A time limit and nodes from the submit form (real Chromium): refused beside their field with the
API's message, then stored and shown on the workload's page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import World, sign_in

IVAN = "ivan@example.com"


def field(page: Page, label: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("textbox", name=label, exact=True)


def test_a_time_limit_from_the_form(page: Page, world: World):
    project = world.project("limits", world.user(IVAN))
    sign_in(page, world.url, IVAN)
    page.goto(f"{world.url}/workloads/new?type=training&project={project}")
    field(page, "Name").fill("limited")
    field(page, "Dataset").fill("s3://data/d")
    field(page, "Command").fill("python train.py")
    page.get_by_text("Scheduling and advanced options").click()
    field(page, "Time limit").fill("soon")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#e-time_limit")).to_contain_text("'soon' is not a duration")
    expect(field(page, "Time limit")).to_be_visible()  # its section opens on its error
    expect(field(page, "Time limit")).to_have_value("soon")
    field(page, "Time limit").fill("1h30m")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/workloads/\d+$"))
    expect(page.locator("#time-limit")).to_have_text("1h30m")
    wid = int(page.url.rsplit("/", 1)[1])
    assert world.detail(wid)["spec"]["time_limit"] == 5400


def test_nodes_from_the_form(page: Page, world: World):
    project = world.project("wide", world.user(IVAN))
    sign_in(page, world.url, IVAN)
    page.goto(f"{world.url}/workloads/new?type=pre_training&project={project}")
    field(page, "Name").fill("wide")
    field(page, "Dataset").fill("web")
    field(page, "Command").fill("torchrun train.py")
    nodes = page.get_by_label("Nodes", exact=True)
    nodes.fill("0")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#e-nodes")).to_contain_text("greater than or equal to 1")
    page.get_by_label("Nodes", exact=True).fill("2")
    page.get_by_label("GPUs").fill("1")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/workloads/\d+$"))
    detail = world.detail(int(page.url.rsplit("/", 1)[1]))
    assert detail["spec"]["nodes"] == 2 and detail["resources"]["gpu"] == 2
