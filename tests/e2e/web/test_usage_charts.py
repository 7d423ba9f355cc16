"""Use over time in the pages (issue 14), in a real Chromium: the workload details draw CPU,
memory and GPU charts per component, the project page its quota use per cluster, the
clusters page each cluster's allocation; uPlot comes from Corral's own origin, and the
pages log no error. Samples go in the way clusters send them: through the agent endpoint.

Screenshots: test-artifacts/screenshots/; with CORRAL_UPDATE_DOCS_SCREENSHOTS=1 also
docs/screenshots/ (the README shows those, checked by a person before they land)."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import stop_server
from tests.e2e.web.conftest import SCREENSHOTS, World, make_world, sign_in

DOCS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def charts_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 _databases: ExitStack) -> Iterator[World]:
    """Its own server: quota use and allocation sampled on every heartbeat a second apart."""
    world, server = make_world(request.param, tmp_path_factory.mktemp(f"charts-{request.param}"), _databases,
                               env_extra={"CORRAL_HISTORY_INTERVAL_S": "1"})
    yield world
    world.admin.close()
    world.agent.close()
    stop_server(server)


def _watch_page(page: Page) -> tuple[list[str], list[str]]:
    """Errors the page logs or meets (scripts, failed loads other than the logs panel's: a
    cluster played by the test has no log API), and the scripts and stylesheets it loads."""
    errors: list[str] = []
    loaded: list[str] = []
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/logs" not in r.url and not r.url.endswith("favicon.ico") else None)
    page.on("request", lambda r: loaded.append(r.url) if r.resource_type in ("script", "stylesheet") else None)
    return errors, loaded


def _shot(page: Page, selector: str, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.locator(selector).screenshot(path=str(path))
    # The quota and allocation ones in the docs come from a real run (make_usage_screenshots.py).
    if os.environ.get("CORRAL_UPDATE_DOCS_SCREENSHOTS") == "1" and name == "workload-usage":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{name}.png")


def _usage(component_id: int, minutes: int = 30) -> list[dict]:
    """A training step's shape: CPU busy with spikes, memory climbing, GPUs near full."""
    now = datetime.now(UTC)
    out = []
    for i in range(minutes * 2):
        x = i / (minutes * 2)
        out.append({"component_id": component_id, "at": (now - timedelta(seconds=30 * (minutes * 2 - i))).isoformat(),
                    "cpu": int(1800 + 900 * math.sin(i / 3) ** 2), "memory": int((2 + 5 * x) * 2**30),
                    "gpu_utilization": round(70 + 25 * math.sin(i / 5) ** 2, 1),
                    "gpu_memory": int((30 + 40 * x) * 2**30)})
    return out


def test_charts_of_a_workload_a_project_and_the_clusters(page: Page, charts_world: World):
    world = charts_world
    member = world.user("ana@example.com")
    project = world.project("charts", member)
    # Quota use over time: a heartbeat a second apart while workloads come and go.
    world.heartbeat()
    first = world.submit(project, "prep")
    world.report(first, "Running")
    time.sleep(1.1)
    world.heartbeat()
    busy = world.submit(project, "train")
    world.report(busy, "Running")
    time.sleep(1.1)
    world.heartbeat()
    world.report(first, "Completed")
    time.sleep(1.1)
    world.heartbeat()
    [comp] = world.detail(busy)["components"]
    sent = world.agent.post("/api/v1/agent/usage", json={"samples": _usage(comp["id"])})
    assert sent.status_code == 200 and sent.json() == {"accepted": 60}, sent.text

    errors, loaded = _watch_page(page)
    sign_in(page, world.url, member)
    page.goto(f"{world.url}/workloads/{busy}")
    charts = page.locator("#usage-charts figure.chart")
    expect(charts).to_have_count(4)  # CPU, memory, GPU utilisation, GPU memory
    expect(page.locator("#usage-charts figure.chart canvas")).to_have_count(4)
    cpu_label = charts.first.get_attribute("aria-label") or ""
    assert cpu_label.startswith("CPU (cores), latest: ") and comp["name"] in cpu_label and " cores" in cpu_label
    expect(page.get_by_role("img", name="GPU utilisation, latest:", exact=False)).to_be_visible()
    # Another range: asked for from the API, drawn again (the same four charts, not eight).
    with page.expect_request(lambda r: "/usage?since=" in r.url) as asked:
        page.get_by_label("Show the last").select_option("1 hour")
    since = datetime.fromisoformat(parse_qs(urlsplit(asked.value.url).query)["since"][0])
    assert abs((datetime.now(UTC) - since).total_seconds() - 3600) < 60, since
    expect(page.locator("#usage-charts figure.chart canvas")).to_have_count(4)
    page.get_by_label("Show the last").select_option("6 hours")
    expect(page.locator("#usage-charts figure.chart canvas")).to_have_count(4)
    # Running: the charts follow new samples (every 10 s) without a reload.
    newer = {**_usage(comp["id"])[-1], "at": datetime.now(UTC).isoformat(), "cpu": 3456}
    assert world.agent.post("/api/v1/agent/usage", json={"samples": [newer]}).json() == {"accepted": 1}
    expect(charts.first).to_have_attribute("aria-label", f"CPU (cores), latest: {comp['name']} 3.46 cores",
                                           timeout=15_000)
    expect(page.locator("#usage-charts figure.chart canvas")).to_have_count(4)
    _shot(page, "#usage", "workload-usage")

    quiet = world.submit(project, "quiet")
    world.report(quiet, "Running")
    page.goto(f"{world.url}/workloads/{quiet}")  # running, nothing measured yet
    expect(page.locator("#usage-charts")).to_contain_text("No samples yet")
    page.goto(f"{world.url}/workloads/{first}")  # it ran, but its cluster sent no samples
    expect(page.locator("#usage-charts")).to_contain_text("No samples were recorded while it ran")
    expect(page.locator("#usage-charts canvas")).to_have_count(0)

    world.report(busy, "Completed")  # finished: the charts show the hours up to its end
    page.goto(f"{world.url}/workloads/{busy}")
    expect(page.locator("#usage-charts figure.chart canvas")).to_have_count(4)
    world.report(quiet, "Completed")

    page.goto(f"{world.url}/projects/{project}")
    expect(page.locator("#quota-charts figure.chart canvas")).to_have_count(3)  # gpu-a: GPUs, CPU, memory
    gpus = page.locator("#quota-charts figure.chart").first
    assert gpus.get_attribute("aria-label") == "gpu-a: GPUs, latest: used 1, borrowed 0, guaranteed 8, limit 8"
    page.locator("#quota-use").scroll_into_view_if_needed()
    _shot(page, "#quota-charts", "project-quota-use")

    # A member sees no allocation; the series of another project's workload is not theirs.
    other = world.project("elsewhere", world.user("bo@example.com"))
    hidden = world.submit(other, "hidden")
    assert errors == [], errors
    assert page.request.get(f"{world.url}/api/v1/workloads/{hidden}/usage").status == 404
    assert page.request.get(f"{world.url}/api/v1/projects/{other}/quota-history").status == 404

    page.context.clear_cookies()
    admin_password = (world.server.database.data_dir / "admin-password").read_text().strip()
    sign_in(page, world.url, "admin@localhost", admin_password)
    page.goto(f"{world.url}/clusters")
    expect(page.locator("#allocation-gpu-a figure.chart canvas")).to_have_count(3)
    _shot(page, "#allocation-gpu-a", "cluster-allocation-over-time")

    assert errors == [], errors
    assert any(u.startswith(f"{world.url}/static/vendor/uPlot.iife.min.js") for u in loaded), loaded
    assert all(u.startswith(world.url + "/") for u in loaded), loaded  # nothing from elsewhere
