"""The UI at 400 px wide (a phone), in Chromium: no page is wider than the screen; on the
Workloads page each workload is a card whose status, reason and ⋮ menu are on screen, and
the table can still be sorted (issue 14 item 9)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.web.conftest import World, screenshot, sign_in

WIDTH = 400


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": WIDTH, "height": 800}, locale="en-GB", timezone_id="UTC",
                                  is_mobile=True, has_touch=True, device_scale_factor=2)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def _admin_password(world: World) -> str:
    return (world.server.database.data_dir / "admin-password").read_text().strip()


def _page_width(page: Page) -> int:
    return page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")


def _wide(page: Page) -> list[str]:
    """The elements that reach past the screen's right edge (for the failure message)."""
    return page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > %d.5)
        .map(e => `${e.tagName.toLowerCase()}.${e.className}#${e.id}: ${Math.round(e.getBoundingClientRect().right)}`)
        .slice(0, 10)""" % WIDTH)


def _on_screen(page: Page, locator) -> None:  # type: ignore[no-untyped-def]
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    assert 0 <= box["x"] and box["x"] + box["width"] <= WIDTH + 0.5, f"{locator} is off-screen: {box}"


def test_every_page_fits_400px_and_the_workloads_are_cards(phone: Page, world: World):
    page = phone
    project = world.project("phone")
    # A cluster never heard from: the submit form's cluster list says so at length.
    created = world.admin.post("/api/v1/clusters", json={"name": world.unique("quiet-cluster"), "kind": "slurm",
                                                         "capacity": {"gpu": 8, "cpu": 64, "memory": "1Ti"}})
    assert created.status_code == 201, created.text
    long_name = "fine-tune-llama-3.1-70b-instruct-on-the-whole-support-archive-v2"
    ids = [world.submit(project, long_name, type="fine_tuning"), world.submit(project, "Alpha"),
           world.submit(project, "small-job")]
    world.report(ids[1], "Running")
    sign_in(page, world.url, "admin@localhost", _admin_password(world))

    page.goto(f"{world.url}/workloads?project={project}")
    expect(page.locator("table.workloads tbody tr")).to_have_count(3)
    assert _page_width(page) <= WIDTH, _wide(page)
    # The main navigation: every link on screen.
    for label in ("Workloads", "Submit", "Projects & quotas", "Clusters", "API tokens"):
        _on_screen(page, page.get_by_role("navigation", name="Main").get_by_role("link", name=label))
    row = page.locator("table.workloads tbody tr", has_text=long_name)
    _on_screen(page, row)
    _on_screen(page, row.get_by_role("link", name=long_name))
    _on_screen(page, row.locator("td.status .st"))
    _on_screen(page, row.locator("td.status .why"))
    menu = row.get_by_role("button", name=f"Actions for {long_name}")
    _on_screen(page, menu)
    # What the columns say is on the card, the numbers labelled.
    expect(row).to_contain_text("Fine-Tuning")
    labels = row.locator("td").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content).filter(c => c !== 'none')")
    assert labels == ['"GPU "', '"CPU "', '"Memory "', '"by "'], labels
    screenshot(page, "workloads-400px")
    # The ⋮ menu opens on screen.
    menu.click()
    _on_screen(page, row.get_by_role("menuitem", name="Show details"))
    _on_screen(page, row.get_by_role("menuitem", name="Delete"))
    screenshot(page, "workloads-400px-menu")
    page.keyboard.press("Escape")
    # Sorting still works: the headers are a row of sort links.
    sort_by_name = page.get_by_role("link", name="Name", exact=True)
    _on_screen(page, sort_by_name)
    sort_by_name.click()
    expect(page.locator("th[aria-sort]")).to_contain_text("Name")
    expect(page.locator("table.workloads tbody tr").first).to_contain_text("Alpha")
    assert _page_width(page) <= WIDTH

    # Every other page fits too.
    for path in (f"/workloads/{ids[0]}", "/workloads/new", f"/workloads/new?type=raw&project={project}",
                 "/projects", f"/projects/{project}", "/clusters", "/tokens", "/models"):
        page.goto(world.url + path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert _page_width(page) <= WIDTH, f"{path} is {_page_width(page)} px wide at {WIDTH} px: {_wide(page)}"
    page.goto(f"{world.url}/projects/{project}")
    screenshot(page, "project-400px")


@pytest.mark.parametrize("width", [1024, 800])
def test_the_workloads_page_fits_a_laptop_with_status_and_menu_on_screen(browser: Browser, world: World, width: int):
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        project = world.project("laptop")
        long_name = "fine-tune-llama-3.1-70b-instruct-on-the-whole-support-archive-v2"
        long_id = world.submit(project, long_name, type="fine_tuning")
        world.submit(project, "small-job")
        world.report(long_id, "Running", "training: step 1200 of 50000, loss 1.93, 2.1 steps/s, about 6 hours left "
                                          "at this rate on 8 GPUs")
        sign_in(page, world.url, "admin@localhost", _admin_password(world))
        page.goto(f"{world.url}/workloads?project={project}")
        expect(page.locator("table.workloads tbody tr")).to_have_count(2)
        wide = page.evaluate("""(w) => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > w + .5)
            .map(e => `${e.tagName.toLowerCase()}.${e.className}: ${Math.round(e.getBoundingClientRect().right)}`)
            .slice(0, 10)""", width)
        assert _page_width(page) <= width, wide
        row = page.locator("table.workloads tbody tr", has_text=long_name)
        for part in (row.get_by_role("link", name=long_name), row.locator("td.status .st"), row.locator("td.status .why"),
                     row.locator("td time"), row.get_by_role("button", name=f"Actions for {long_name}")):
            expect(part).to_be_visible()
            box = part.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (part, box)
        if width == 1024:
            screenshot(page, "workloads-1024px")
    finally:
        context.close()
