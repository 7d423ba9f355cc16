"""Time limits as people write them: parsing, bounds, the spec field and the Launch."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.backends.base import BackendError, Launch
from corral.backends.recipes import RecipeError, time_limit_of
from corral.domain.durations import MAX_TIME_LIMIT_S, format_duration, parse_duration
from corral.domain.workloads import WorkloadSpec, error_field

GOOD = [
    ("2h", 7200), ("90m", 5400), ("3600s", 3600), ("3600", 3600), (3600, 3600), (90.0, 90), ("1h30m", 5400),
    ("1d", 86400), ("1d12h", 129600), (" 2 H ", 7200), ("45 min", 2700), ("2hours", 7200), ("1.5h", 5400),
    ("10 seconds", 10), ("1:30:00", 5400), ("30:00", 1800), ("1-12:00:00", 129600), ("2-0", 172800),
    ("1h 30m 15s", 5415), ("365d", MAX_TIME_LIMIT_S),
]
BAD = [
    ("", "not a duration"), ("soon", "not a duration"), ("2 parsecs", "not a duration"), ("30m2h", "not a duration"),
    ("2h2h", "not a duration"), ("h", "not a duration"), ("-5", "not a duration"), ("1:75:00", "not a duration"),
    (0, "at least 1 second"), ("0s", "at least 1 second"), (-1, "at least 1 second"), (0.5, "whole number"),
    ("1.5s", "whole number"), ("366d", "at most 365 days"), (10**12, "at most 365 days"), (True, "duration"),
    (None, "duration"), ([1], "duration"), (float("inf"), "whole number"), ("1e9", "not a duration"),
]


@pytest.mark.parametrize(("text", "seconds"), GOOD, ids=[repr(g[0]) for g in GOOD])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "needle"), BAD, ids=[repr(b[0]) for b in BAD])
def test_bad_durations_say_why(value, needle):
    with pytest.raises(ValueError, match=needle):
        parse_duration(value)


@pytest.mark.parametrize(("seconds", "text"), [(7200, "2h"), (5400, "1h30m"), (90, "1m30s"), (2, "2s"),
                                               (86400 + 61, "1d1m1s")])
def test_durations_format_back(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


SPEC = TypeAdapter(WorkloadSpec)


def test_the_spec_stores_whole_seconds_and_refuses_bad_limits_naming_the_field():
    spec = SPEC.validate_python({"type": "training", "name": "t", "project": "p", "dataset": "d", "command": "x",
                                 "time_limit": "2h"})
    assert spec.time_limit == 7200
    assert spec.model_dump(mode="json", exclude_none=True)["time_limit"] == 7200
    assert SPEC.validate_python({"type": "custom", "name": "t", "project": "p", "command": "x"}).time_limit is None
    with pytest.raises(ValidationError) as caught:
        SPEC.validate_python({"type": "custom", "name": "t", "project": "p", "command": "x", "time_limit": "forever"})
    (error,) = caught.value.errors()
    assert error_field(error) == "time_limit" and "not a duration" in error["msg"]


def test_the_launch_carries_the_limit_and_its_reason():
    launch = Launch(1, 1, "p", "training", "n", command=("true",), time_limit_s=5400)
    assert launch.time_limit_text == "1h30m" and launch.time_limit_reason() == "time limit of 1h30m reached"
    assert Launch.from_dict(launch.to_dict()) == launch
    for bad in (0, -3, 1.5, True):
        with pytest.raises(BackendError, match="time limit"):
            Launch(1, 1, "p", "training", "n", command=("true",), time_limit_s=bad)
    assert time_limit_of({"time_limit": 60}) == 60 and time_limit_of({"time_limit": "2h"}) == 7200
    assert time_limit_of({}) is None
    with pytest.raises(RecipeError, match="time_limit: "):
        time_limit_of({"time_limit": "whenever"})
