"""/metrics of a real `corral serve`, scraped as Prometheus does: the admissions its
scheduler process made show up as counters, next to the kept counts and the latency of
the submissions that caused them."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.web.conftest import CLUSTER, World


def _samples(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{world.url}/metrics", headers={"Authorization": f"Bearer {world.server.admin_token}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_a_live_server_reports_its_schedulers_admissions(world: World):
    project = world.project("scraped")
    for i in range(2):
        world.admitted(world.submit(project, f"scraped-{i}"))
    deadline = time.monotonic() + 20  # events are counted once 5 s old
    while True:
        samples = _samples(world)
        if samples.get(("corral_admissions_total", (("project", project),))) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert samples.get(("corral_admissions_total", (("project", project),))) == 2
    assert samples.get(("corral_submissions_total", (("project", project),))) == 2
    assert samples[("corral_workloads", (("cluster", CLUSTER), ("project", project), ("status", "Pending"),
                                         ("type", "custom")))] == 2
    assert samples[("corral_resources_used", (("cluster", CLUSTER), ("project", project), ("resource", "gpu")))] == 2
    assert samples[("corral_http_request_duration_seconds_count",
                    (("method", "POST"), ("route", "/api/v1/workloads"), ("status", "201")))] >= 2
