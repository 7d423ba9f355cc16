"""The Workloads page's multi-select: "Delete selected" with one confirmation, in real Chromium."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import World, screenshot, sign_in
from tests.e2e.web.test_workloads_page import row

ALICE = "alice@example.com"


def test_delete_selected_asks_once_then_shows_each_result(page: Page, world: World):
    project = world.project("bulk", world.user(ALICE))
    first, second = world.submit(project, "first"), world.submit(project, "second")
    kept = world.submit(project, "kept")
    world.report(first, "Running")
    world.report(second, "Running")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")

    delete = page.get_by_role("button", name="Delete selected")
    expect(delete).to_be_disabled()
    page.get_by_label("Select first").check()
    page.get_by_label("Select second").check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    delete.click()

    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_have_text("Delete 2 workloads?")
    expect(dialog.locator("tbody tr td:first-child")).to_have_text(["second", "first"])  # as in the table
    expect(dialog.locator("tbody tr td:last-child")).to_have_text(["deleted", "deleted"])
    screenshot(page, "workloads-delete-selected-confirmation")
    assert {world.detail(w)["status"] for w in (first, second)} == {"Running"}  # asking changed nothing

    dialog.get_by_role("button", name="Delete 2 workloads").click()
    expect(dialog.get_by_role("heading")).to_have_text("Deleted 2 workloads")
    expect(dialog.locator("tbody tr td:last-child")).to_have_text(["queued for deletion"] * 2)
    expect(dialog.locator("tbody tr td:nth-child(2)")).to_have_text(["Deleting", "Deleting"])
    screenshot(page, "workloads-delete-selected-results")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(row(page, "first").locator(".st")).to_have_text("Deleting")
    expect(row(page, "second").locator(".st")).to_have_text("Deleting")
    expect(row(page, "kept").locator(".st")).to_have_text("Pending")
    expect(page.get_by_label("Select first")).to_be_disabled()
    assert {world.detail(w)["status"] for w in (first, second)} == {"Deleting"}
    assert world.detail(kept)["status"] == "Pending"

    # "Select every workload on this page" ticks what may still be deleted; Cancel deletes nothing.
    page.get_by_label("Select every workload on this page").check()
    expect(page.get_by_label("Select kept")).to_be_checked()
    expect(page.locator("#bulk-count")).to_have_text("1 selected")
    delete.click()
    expect(dialog.get_by_role("heading")).to_have_text("Delete 1 workload?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert world.detail(kept)["status"] == "Pending"
    # The selection survives the table being read again.
    page.get_by_role("link", name="Refresh").click()
    expect(page.locator("#summary")).to_be_visible()
    expect(page.get_by_label("Select kept")).to_be_checked()


def test_delete_selected_without_javascript(browser, world: World):  # type: ignore[no-untyped-def]
    project = world.project("bulk-nojs", world.user(ALICE))
    one, two = world.submit(project, "one"), world.submit(project, "two")
    world.report(one, "Running")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
        page.get_by_label("Select one").check()
        page.get_by_label("Select two").check()
        page.get_by_role("button", name="Delete selected").click()
        expect(page.get_by_role("heading", name="Delete 2 workloads?")).to_be_visible()
        assert {world.detail(w)["status"] for w in (one, two)} == {"Running", "Pending"}
        page.get_by_role("button", name="Delete 2 workloads").click()
        expect(page.get_by_role("heading", name="Deleted 2 workloads")).to_be_visible()
        expect(page.locator("tbody tr td:last-child")).to_have_text(["queued for deletion"] * 2)
        assert world.detail(one)["status"] == "Deleting"
        assert world.detail(two)["status"] == "Deleted"  # never placed: deleted at once
        page.get_by_role("link", name="Back to the workloads").click()
        expect(row(page, "one").locator(".st")).to_have_text("Deleting")
    finally:
        context.close()
