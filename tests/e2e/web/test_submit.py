"""Submitting from the browser: a form per type with the API's validation messages, and a raw spec."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from corral.domain.names import WORKLOAD_NAME_HTML_PATTERN, WORKLOAD_NAME_RULE
from tests.e2e.web.conftest import World, screenshot, sign_in

IVAN = "ivan@example.com"


def field(page: Page, label: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("textbox", name=label, exact=True)


def test_submit_from_a_form_shows_validation_errors_then_submits(page: Page, world: World):
    project = world.project("submit", world.user(IVAN))
    sign_in(page, world.url, IVAN, next_path=f"/workloads?project={project}")
    page.get_by_role("link", name="Submit a workload").first.click()
    page.get_by_role("navigation", name="Workload type").get_by_role("link", name="Fine-Tuning").click()
    expect(page.get_by_label("Project")).to_have_value(project)

    field(page, "Name").fill("tune-llama")
    # A combobox: it suggests the project's models (a datalist), and takes any other name.
    page.get_by_role("combobox", name="Base model").fill("meta-llama/Llama-3.1-8B")
    field(page, "Dataset").fill("s3://data/alpaca")
    field(page, "Memory").fill("lots")
    page.get_by_role("button", name="Submit").click()

    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("The workload was not submitted")
    expect(summary).to_contain_text("'lots' is not a byte quantity")
    expect(page.locator("#e-memory")).to_contain_text("not a byte quantity")
    expect(field(page, "Memory")).to_have_attribute("aria-invalid", "true")
    expect(field(page, "Name")).to_have_value("tune-llama")  # what was typed stays
    screenshot(page, "submit-validation-error")

    # Each field valid: the type's own rule speaks next, about the form as a whole.
    field(page, "Memory").fill("16Gi")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("alert")).to_contain_text("give an image or a command to run")
    expect(field(page, "Memory")).to_have_value("16Gi")
    field(page, "Command").fill("python finetune.py")
    page.get_by_label("GPUs").fill("2")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/workloads/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("Submitted Fine-Tuning workload 'tune-llama'")
    expect(page.get_by_role("heading", name="tune-llama")).to_be_visible()
    wid = int(page.url.rsplit("/", 1)[1])
    detail = world.detail(wid)
    assert detail["type"] == "fine_tuning" and detail["project"] == project and detail["created_by"] == IVAN
    assert detail["resources"]["gpu"] == 2 and detail["resources"]["memory"] == 16 * 2**30
    assert detail["spec"]["command"] == "python finetune.py"


def test_quota_errors_from_the_api_show_beside_the_resources(page: Page, world: World):
    project = world.project("toolarge", world.user(IVAN), gpu=2)
    sign_in(page, world.url, IVAN)
    page.goto(f"{world.url}/workloads/new?type=workspace&project={project}")
    field(page, "Name").fill("huge")
    page.get_by_label("GPUs").fill("64")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#e-resources")).to_contain_text("exceeds the quota limit")


def test_raw_custom_submission(page: Page, world: World):
    project = world.project("raw", world.user(IVAN))
    sign_in(page, world.url, IVAN)
    page.goto(f"{world.url}/workloads/new?project={project}")
    page.get_by_role("link", name="Raw spec (YAML/JSON)").click()
    spec = page.get_by_label("Spec (YAML or JSON)")
    expect(spec).to_contain_text(f"project: {project}")
    spec.fill(f"type: custom\nname: raw-job\nproject: {project}\nmanifest: [\n")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid YAML or JSON")
    spec.fill(f'{{"type": "custom", "name": "raw-job", "project": "{project}", "batch_script": "#!/bin/sh\\nhostname",'
              ' "resources": {"cpu": "500m", "memory": "1Gi"}}')
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name="raw-job")).to_be_visible()
    expect(page.locator("dl.facts").first).to_contain_text("Custom")


def test_the_name_rule_is_the_apis_in_hint_pattern_and_message(page: Page, world: World):
    project = world.project("names", world.user(IVAN))
    sign_in(page, world.url, IVAN)
    page.goto(f"{world.url}/workloads/new?type=training&project={project}")
    name = field(page, "Name")
    expect(page.locator("#h-name")).to_have_text(WORKLOAD_NAME_RULE)
    expect(name).to_have_attribute("pattern", WORKLOAD_NAME_HTML_PATTERN)
    field(page, "Dataset").fill("s3://data/set")
    field(page, "Command").fill("python train.py")
    for bad in ("Hello World!", "a/b"):
        name.fill(bad)
        # The browser agrees with the server (the form is novalidate, so the server's message shows).
        assert name.evaluate("el => el.validity.patternMismatch") is True
        page.get_by_role("button", name="Submit").click()
        expect(page.get_by_role("alert")).to_contain_text(f"name: must be {WORKLOAD_NAME_RULE}")
        expect(page.locator("#e-name")).to_have_text(f"must be {WORKLOAD_NAME_RULE}")
        expect(name).to_have_attribute("aria-invalid", "true")
        expect(name).to_have_value(bad)
    screenshot(page, "submit-name-rule")
    name.fill("hello-world.v2_1")
    assert name.evaluate("el => el.validity.patternMismatch") is False
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name="hello-world.v2_1")).to_be_visible()
