"""The Workloads page of the seed documents, in a real browser against the real server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import World, screenshot, sign_in

ALICE = "alice@example.com"
BOB = "bob@example.com"


def names(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("table.workloads tbody tr td:first-child a")


def row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("table.workloads tbody tr", has=page.get_by_role("link", name=name, exact=True))


def open_filter(page: Page, which: str) -> None:
    summary = page.locator(f"#f-{which} summary")
    if page.locator(f"#f-{which}[open]").count() == 0:
        summary.click()


def set_checked(page: Page, which: str, values: set[str]) -> None:
    """Tick exactly these boxes of the Type or Status filter (by label)."""
    open_filter(page, which)
    for box in page.locator(f"#f-{which} input[type=checkbox]").all():
        label = box.locator("xpath=..").inner_text().strip()
        if box.is_checked() != (label in values):
            box.set_checked(label in values)


def test_project_selection_when_a_member_of_several(page: Page, world: World):
    first = world.project("sel", world.user(ALICE))
    second = world.project("sel", ALICE)
    world.submit(first, "only-in-first")
    world.submit(second, "only-in-second")
    sign_in(page, world.url, ALICE)

    expect(page.get_by_role("heading", name="Select a project")).to_be_visible()
    expect(page.locator("table.workloads")).to_have_count(0)
    screenshot(page, "workloads-select-project")
    page.get_by_label("Project").select_option(first)
    expect(page).to_have_url(re.compile(rf"/workloads\?project={first}$"))
    expect(names(page)).to_have_text(["only-in-first"])
    page.get_by_label("Project").select_option(second)
    expect(names(page)).to_have_text(["only-in-second"])
    page.reload()
    expect(page.get_by_label("Project")).to_have_value(second)
    expect(names(page)).to_have_text(["only-in-second"])


def test_a_single_project_is_shown_at_once(page: Page, world: World):
    only = world.project("solo", world.user("solo@example.com"))
    world.submit(only, "solo-job")
    sign_in(page, world.url, "solo@example.com")
    expect(page.get_by_text(f"Project {only}")).to_be_visible()
    expect(names(page)).to_have_text(["solo-job"])


def _filter_world(world: World) -> tuple[str, dict[str, int]]:
    project = world.project("filters", world.user(ALICE))
    ids = {
        "alpha-train": world.submit(project, "alpha-train", "training"),
        "alpha-eval": world.submit(project, "alpha-eval", "evaluation"),
        "beta-train": world.submit(project, "beta-train", "training"),
        "beta-serve": world.submit(project, "beta-serve", "inference"),
        "gamma-ws": world.submit(project, "gamma-ws", "workspace"),
        "gone": world.submit(project, "gone", "custom"),
    }
    world.report(ids["alpha-train"], "Running")
    world.report(ids["beta-serve"], "Running")
    world.report(ids["beta-train"], "Failed", "exit code 1")
    # Never started on its cluster: deleting it makes it Deleted at once.
    assert world.admin.delete(f"/api/v1/workloads/{ids['gone']}").json()["status"] == "Deleted"
    return project, ids


def test_each_filter_and_their_combination_live_in_the_url(page: Page, world: World):
    project, _ = _filter_world(world)
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    everything_but_deleted = ["gamma-ws", "beta-serve", "beta-train", "alpha-eval", "alpha-train"]
    expect(names(page)).to_have_text(everything_but_deleted)

    # Name contains, as you type (no Enter, no button).
    page.get_by_label("Name").press_sequentially("alph", delay=30)
    expect(names(page)).to_have_text(["alpha-eval", "alpha-train"])
    expect(page).to_have_url(re.compile(r"name=alph"))
    page.get_by_label("Name").fill("")
    expect(names(page)).to_have_text(everything_but_deleted)

    # Type: several at once.
    set_checked(page, "type", {"Training", "Inference"})
    expect(names(page)).to_have_text(["beta-serve", "beta-train", "alpha-train"])
    expect(page.locator("#f-type summary")).to_contain_text("2 types")
    set_checked(page, "type", set())

    # Status: several at once.
    set_checked(page, "status", {"Running", "Failed"})
    expect(names(page)).to_have_text(["beta-serve", "beta-train", "alpha-train"])
    set_checked(page, "status", {"Pending"})
    expect(names(page)).to_have_text(["gamma-ws", "alpha-eval"])

    # All three together, then a reload and a shared link show the same view.
    set_checked(page, "status", {"Running", "Pending"})
    set_checked(page, "type", {"Training", "Evaluation"})
    page.get_by_label("Name").fill("alpha")
    expect(names(page)).to_have_text(["alpha-eval", "alpha-train"])
    set_checked(page, "status", {"Running"})
    expect(names(page)).to_have_text(["alpha-train"])
    url = page.url
    assert "name=alpha" in url and "type=training" in url and "type=evaluation" in url and "status=Running" in url
    screenshot(page, "workloads-filtered")
    page.reload()
    expect(names(page)).to_have_text(["alpha-train"])
    expect(page.get_by_label("Name")).to_have_value("alpha")
    open_filter(page, "status")
    expect(page.locator("#f-status input[value=Running]")).to_be_checked()
    expect(page.locator("#f-status input[value=Pending]")).not_to_be_checked()
    shared = page.context.new_page()
    shared.goto(url)
    expect(names(shared)).to_have_text(["alpha-train"])
    shared.close()

    page.get_by_role("link", name="Reset filters").click()
    expect(names(page)).to_have_text(everything_but_deleted)


def test_deleted_workloads_are_hidden_by_default(page: Page, world: World):
    project, _ = _filter_world(world)
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    expect(page.locator("#f-status summary")).to_contain_text("all but Deleted")
    expect(names(page)).to_have_count(5)
    expect(row(page, "gone")).to_have_count(0)
    open_filter(page, "status")
    page.locator("#f-status input[value=Deleted]").check()
    expect(row(page, "gone")).to_have_count(1)
    expect(row(page, "gone").locator(".st")).to_have_text("Deleted")
    expect(names(page)).to_have_count(6)


def test_statuses_show_their_reason(page: Page, world: World):
    project, _ = _filter_world(world)
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    failed = row(page, "beta-train").locator("td.status")
    expect(failed.locator(".st")).to_have_text("Failed")
    expect(failed.locator(".why")).to_have_text("exit code 1")
    expect(failed.locator(".why")).to_have_attribute("title", "exit code 1")


def test_sort_by_columns(page: Page, world: World):
    project = world.project("sort", world.user(ALICE))
    for name, gpu in (("bravo", 4), ("alpha", 1), ("charlie", 2)):
        world.submit(project, name, resources={"gpu": gpu, "cpu": 1, "memory": "1Gi"})
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    expect(names(page)).to_have_text(["charlie", "alpha", "bravo"])  # newest first
    expect(page.get_by_role("columnheader", name="Created at")).to_have_attribute("aria-sort", "descending")

    page.get_by_role("link", name="Name", exact=True).click()
    expect(names(page)).to_have_text(["alpha", "bravo", "charlie"])
    expect(page).to_have_url(re.compile(r"sort=name"))
    expect(page.get_by_role("columnheader", name="Name")).to_have_attribute("aria-sort", "ascending")
    page.get_by_role("link", name="Name", exact=True).click()
    expect(names(page)).to_have_text(["charlie", "bravo", "alpha"])
    expect(page).to_have_url(re.compile(r"sort=-name"))

    page.get_by_role("link", name="GPU", exact=True).click()
    expect(names(page)).to_have_text(["bravo", "charlie", "alpha"])
    page.reload()
    expect(names(page)).to_have_text(["bravo", "charlie", "alpha"])
    page.go_back()
    expect(names(page)).to_have_text(["charlie", "bravo", "alpha"])


def test_paging_and_page_sizes(page: Page, world: World):
    project = world.project("paging", world.user(ALICE))
    for i in range(45):
        world.submit(project, f"job-{i:02d}")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    summary = page.locator("#summary")
    expect(summary).to_contain_text("Showing 1 to 45 of 45")
    expect(names(page)).to_have_count(45)

    page.get_by_label("Rows per page").select_option("20")
    expect(summary).to_contain_text("Showing 1 to 20 of 45")
    expect(names(page).first).to_have_text("job-44")
    page.get_by_role("link", name="Next").click()
    expect(summary).to_contain_text("Showing 21 to 40 of 45")
    expect(names(page).first).to_have_text("job-24")
    expect(page).to_have_url(re.compile(r"cursor="))  # Next starts after the last row shown, no OFFSET
    page.get_by_role("link", name="Page 3").click()
    expect(summary).to_contain_text("Showing 41 to 45 of 45")
    expect(names(page)).to_have_text(["job-04", "job-03", "job-02", "job-01", "job-00"])
    expect(page).to_have_url(re.compile(r"page_size=20.*page=3|page=3.*page_size=20"))
    screenshot(page, "workloads-paging")
    page.reload()
    expect(summary).to_contain_text("Showing 41 to 45 of 45")
    page.go_back()
    expect(summary).to_contain_text("Showing 21 to 40 of 45")
    # A workload submitted meanwhile lands on page 1; Next still follows job-05, repeating nothing.
    world.submit(project, "job-45")
    page.get_by_role("link", name="Next").click()
    expect(summary).to_contain_text("Showing 41 to 45 of 46")
    expect(names(page)).to_have_text(["job-04", "job-03", "job-02", "job-01", "job-00"])
    page.get_by_role("link", name="Previous").click()
    expect(names(page).first).to_have_text("job-24")
    expect(names(page).last).to_have_text("job-05")
    # The neighbouring page numbers carry the cursors Previous and Next carry.
    expect(page.get_by_role("link", name="Page 3")).to_have_attribute("href", re.compile(r"cursor="))
    expect(page.get_by_role("link", name="Page 1")).to_have_attribute("href", re.compile(r"cursor="))

    # A filter starts again at page 1 and keeps the page size.
    page.get_by_label("Name").fill("job-1")
    expect(summary).to_contain_text("Showing 1 to 10 of 10")
    expect(page).to_have_url(re.compile(r"page_size=20"))


def test_show_details(page: Page, world: World):
    project = world.project("details", world.user(ALICE), gpu=1)
    running = world.submit(project, "holds-the-gpu", "fine_tuning", resources={"gpu": 1, "cpu": "500m",
                                                                                "memory": "16Gi"})
    world.report(running, "Running", "training step 10")
    waiting = world.submit(project, "waits", resources={"gpu": 1, "cpu": 1, "memory": "1Gi"})
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")

    row(page, "holds-the-gpu").get_by_role("button", name="Actions for holds-the-gpu").click()
    page.get_by_role("menuitem", name="Show details").click()
    expect(page).to_have_url(f"{world.url}/workloads/{running}")
    expect(page.get_by_role("heading", name="holds-the-gpu")).to_be_visible()
    facts = page.locator("dl.facts").first
    expect(facts).to_contain_text("by admin@localhost")
    expect(facts).to_contain_text("Fine-Tuning")
    expect(facts).to_contain_text("gpu-a")
    expect(facts).to_contain_text(project)
    expect(page.locator("#status")).to_have_text("Running")
    expect(page.get_by_text("training step 10").first).to_be_visible()
    resources = page.locator("dl.facts").nth(1)
    expect(resources).to_contain_text("500m")
    expect(resources).to_contain_text("16Gi")
    expect(page.get_by_role("cell", name="job", exact=True)).to_be_visible()  # the component
    expect(page.locator("section", has=page.get_by_role("heading", name="Events"))).to_contain_text("submitted")
    expect(page.get_by_role("heading", name="Logs")).to_be_visible()
    screenshot(page, "workload-details")

    page.goto(f"{world.url}/workloads/{waiting}")
    expect(page.locator("#queue-position")).to_contain_text("1 of 1")
    expect(page.locator(".reason")).to_contain_text("waiting for quota")


def test_delete_with_confirmation_through_to_deleted(page: Page, world: World):
    project = world.project("delete", world.user(ALICE))
    wid = world.submit(project, "doomed")
    world.submit(project, "survivor")
    world.report(wid, "Running")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")

    # The row's menu, with the keyboard only.
    page.get_by_role("button", name="Actions for doomed").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Show details")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Delete")).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete workload “doomed”?")
    screenshot(page, "workloads-delete-confirmation")
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_hidden()
    expect(row(page, "doomed").locator(".st")).to_have_text("Deleting")
    expect(row(page, "doomed").get_by_role("menuitem", name="Delete", include_hidden=True)).to_have_count(0)
    assert world.detail(wid)["status"] == "Deleting"

    world.report(wid, "Deleted", "removed from the cluster")
    page.get_by_role("link", name="Refresh").click()
    expect(names(page)).to_have_text(["survivor"])
    open_filter(page, "status")
    page.locator("#f-status input[value=Deleted]").check()
    expect(row(page, "doomed").locator(".st")).to_have_text("Deleted")


def test_cancelling_the_confirmation_deletes_nothing(page: Page, world: World):
    project = world.project("cancel", world.user(ALICE))
    wid = world.submit(project, "kept")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    row(page, "kept").get_by_role("button", name="Actions for kept").click()
    page.get_by_role("menuitem", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="Actions for kept")).to_be_focused()
    assert world.detail(wid)["status"] == "Pending"


def test_menus_work_with_the_keyboard(page: Page, world: World):
    project = world.project("menus", world.user(ALICE))
    world.submit(project, "keyed")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    button = page.get_by_role("button", name="Actions for keyed")
    button.focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Show details")).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("menuitem", name="Delete")).to_be_focused()
    page.keyboard.press("Home")
    expect(page.get_by_role("menuitem", name="Show details")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("menu")).to_be_hidden()
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Enter")  # on "Show details"
    expect(page.get_by_role("heading", name="keyed")).to_be_visible()


def test_open_workspace_only_for_a_running_workspace(page: Page, world: World):
    project = world.project("spaces", world.user(ALICE))
    running = world.submit(project, "lab", "workspace")
    world.submit(project, "lab-pending", "workspace")
    job = world.submit(project, "job-running")
    world.report(running, "Running")
    world.report(job, "Running")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")

    row(page, "lab").get_by_role("button", name="Actions for lab").click()
    open_link = page.get_by_role("menuitem", name="Open workspace")
    expect(open_link).to_have_attribute("href", f"/workloads/{running}/open")
    expect(open_link).to_have_attribute("target", "_blank")
    screenshot(page, "workloads-actions-menu")
    page.keyboard.press("Escape")
    for other in ("lab-pending", "job-running"):
        row(page, other).get_by_role("button", name=f"Actions for {other}").click()
        expect(page.get_by_role("menuitem", name="Show details")).to_be_visible()
        expect(page.get_by_role("menuitem", name="Open workspace")).to_have_count(0)
        page.keyboard.press("Escape")


def test_refresh_and_live_mode_show_the_last_known_status(page: Page, world: World):
    project = world.project("live", world.user(ALICE))
    wid = world.submit(project, "changing")
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
    status = row(page, "changing").locator(".st")
    expect(status).to_have_text("Pending")
    world.report(wid, "Running")
    page.wait_for_timeout(500)
    expect(status).to_have_text("Pending")  # the last known status until asked
    page.get_by_role("link", name="Refresh").click()
    expect(status).to_have_text("Running")

    page.get_by_label("Live").check()
    world.report(wid, "Completed", "done")
    expect(status).to_have_text("Complete", timeout=12_000)


def test_empty_and_error_states_say_what_to_do(page: Page, world: World):
    empty = world.project("empty", world.user(ALICE))
    sign_in(page, world.url, ALICE, next_path=f"/workloads?project={empty}")
    expect(page.get_by_role("heading", name=f"No workloads in {empty} yet")).to_be_visible()
    expect(page.get_by_role("link", name="Submit a workload").first).to_be_visible()
    screenshot(page, "workloads-empty")

    world.submit(empty, "lonely")
    page.goto(f"{world.url}/workloads?project={empty}&name=nomatch")
    expect(page.get_by_role("heading", name="No workloads match these filters")).to_be_visible()
    page.locator("#results").get_by_role("link", name="Reset the filters").click()
    expect(names(page)).to_have_text(["lonely"])

    page.goto(f"{world.url}/workloads?project={empty}&sort=bogus")
    expect(page.get_by_role("heading", name="These filters cannot be applied")).to_be_visible()
    expect(page.locator("#results")).to_contain_text("cannot sort by 'bogus'")
    page.get_by_role("link", name="Reset the filters").click()
    expect(names(page)).to_have_text(["lonely"])

    page.goto(f"{world.url}/workloads?project={empty}&page=9")
    expect(page.get_by_role("heading", name="Page 9 is past the end")).to_be_visible()
    page.get_by_role("link", name="Go to the last page").click()
    expect(names(page)).to_have_text(["lonely"])


def test_a_member_cannot_see_another_projects_workloads(page: Page, world: World):
    theirs = world.project("private", world.user(ALICE))
    secret = world.submit(theirs, "secret-plan")
    mine = world.project("mine", world.user(BOB))
    world.submit(mine, "bobs-job")
    sign_in(page, world.url, BOB)

    expect(names(page)).to_have_text(["bobs-job"])
    expect(page.locator("body")).not_to_contain_text("secret-plan")
    expect(page.locator(f"option:text-is('{theirs}')")).to_have_count(0)

    response = page.goto(f"{world.url}/workloads?project={theirs}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name=f"Project {theirs} not found")).to_be_visible()
    expect(page.locator("table.workloads")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("secret-plan")

    for path in (f"/workloads/{secret}", f"/workloads/{secret}/delete", f"/projects/{theirs}"):
        response = page.goto(f"{world.url}{path}")
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("body")).not_to_contain_text("secret-plan")

    # Not through the table's fragment either, nor by posting a delete.
    fragment = page.request.get(f"{world.url}/workloads?project={theirs}", headers={"X-Requested-With": "fetch"})
    assert fragment.status == 404 and "secret-plan" not in fragment.text()
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    deleted = page.request.post(f"{world.url}/workloads/{secret}/delete", form={"csrf_token": csrf},
                                headers={"X-Requested-With": "fetch"})
    assert deleted.status == 404
    assert world.detail(secret)["status"] == "Pending"


def test_without_javascript_filters_and_delete_still_work(browser, world: World):  # type: ignore[no-untyped-def]
    project = world.project("nojs", world.user(ALICE))
    wid = world.submit(project, "plain-one", "training")
    world.submit(project, "plain-two", "inference")
    world.report(wid, "Running")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, world.url, ALICE, next_path=f"/workloads?project={project}")
        expect(names(page)).to_have_text(["plain-two", "plain-one"])
        page.locator("#f-type summary").click()
        page.get_by_label("Training", exact=True).check()
        page.get_by_role("button", name="Apply").click()
        expect(names(page)).to_have_text(["plain-one"])
        row(page, "plain-one").locator("summary").click()
        page.get_by_role("menuitem", name="Delete").click()
        expect(page.get_by_role("heading", name="Delete workload “plain-one”?")).to_be_visible()
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("status")).to_contain_text("queued for deletion")
        expect(row(page, "plain-one").locator(".st")).to_have_text("Deleting")
        assert "type=training" in page.url
    finally:
        context.close()
