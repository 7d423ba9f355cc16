"""Export CSV on the Workloads page, in Chromium: the download holds every workload the
filters typed on the page match (the link follows filters applied in place)."""

from __future__ import annotations

import csv
import io
import re

from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import World, sign_in

KIM = "kim@example.com"


def test_export_csv_follows_the_filters(page: Page, world: World):
    project = world.project("export", world.user(KIM))
    for name in ("alpha-run", "beta-run", "alpha-eval"):
        world.submit(project, name)
    sign_in(page, world.url, KIM, next_path=f"/workloads?project={project}")
    expect(page.locator("table.workloads tbody tr")).to_have_count(3)
    page.get_by_label("Name").fill("alpha")
    expect(page.locator("table.workloads tbody tr")).to_have_count(2)
    link = page.get_by_role("link", name="Export CSV")
    expect(link).to_have_attribute("href", re.compile(r"^/workloads\.csv\?.*name=alpha"))
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"workloads-{project}.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert sorted(r["name"] for r in rows) == ["alpha-eval", "alpha-run"]
    assert {r["project"] for r in rows} == {project} and {r["status"] for r in rows} <= {"Pending", "Running"}
