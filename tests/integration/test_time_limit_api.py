"""A workload's time limit through the API: validated with a 422 naming the field, stored as
whole seconds, shown in the workload's detail as people write it."""

from __future__ import annotations

import pytest

from tests.integration.conftest import submit


@pytest.mark.parametrize(("value", "needle"), [
    ("forever", "'forever' is not a duration (examples: 2h, 90m"),
    (0, "must be at least 1 second"),
    ("400d", "must be at most 365 days"),
    ("1.5s", "whole number of seconds"),
    ([2], "expected a duration"),
])
def test_a_bad_time_limit_is_refused_naming_the_field(world, value, needle):
    response = submit(world.alice, time_limit=value)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "time_limit", error
    assert needle in error["message"], error


def test_the_time_limit_is_stored_in_seconds_and_shown_in_the_detail(world):
    wid = submit(world.alice, name="limited", time_limit="1h30m").json()["id"]
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["spec"]["time_limit"] == 5400
    assert detail["time_limit"] == "1h30m"
    unlimited = submit(world.alice, name="unlimited").json()["id"]
    detail = world.alice.get(f"/api/v1/workloads/{unlimited}").json()
    assert "time_limit" not in detail["spec"] and detail["time_limit"] is None
