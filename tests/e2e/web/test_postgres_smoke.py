"""The product runs on PostgreSQL too: sign in and see the table, on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import stop_server
from tests.e2e.web.conftest import World, make_world, screenshot, sign_in

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ExitStack() as databases:
        world, server = make_world("postgres", tmp_path_factory.mktemp("web-postgres"), databases)
        yield world
        world.admin.close()
        world.agent.close()
        stop_server(server)


def test_sign_in_and_the_workloads_table_on_postgres(page: Page, pg_world: World):
    project = pg_world.project("pg", pg_world.user("pat@example.com"))
    running = pg_world.submit(project, "on-postgres", "training")
    pg_world.submit(project, "also-on-postgres", "inference")
    pg_world.report(running, "Running")
    sign_in(page, pg_world.url, "pat@example.com")
    rows = page.locator("table.workloads tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#summary")).to_contain_text("Showing 1 to 2 of 2")
    page.get_by_label("Name").fill("also")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Inference")
    page.get_by_label("Name").fill("")
    page.get_by_role("link", name="Name", exact=True).click()
    expect(rows.first).to_contain_text("also-on-postgres")
    expect(page.locator("tr", has_text="on-postgres").last.locator(".st")).to_have_text("Running")
    screenshot(page, "workloads-postgres")
