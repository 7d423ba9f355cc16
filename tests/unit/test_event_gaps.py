"""Skipped event ids (PostgreSQL) kept as ranges: added, split as ids arrive late, expired."""

from __future__ import annotations

from sqlalchemy import column
from sqlalchemy.dialects import postgresql

from corral.services.event_gaps import EventGaps


def test_ranges_split_as_ids_arrive_and_expire():
    gaps = EventGaps(window_s=30)
    gaps.add(10, 67_009, since=0.0)  # a rolled-back batch of 67,000
    gaps.add(5, 4, since=0.0)  # nothing missing
    gaps.add(70_000, 70_000, since=20.0)
    assert len(gaps) == 67_001
    gaps.found([10, 11, 500, 67_009, 70_000, 99])
    assert [(a, b) for a, b, _ in gaps.ranges] == [(12, 98), (100, 499), (501, 67_008)]
    gaps.expire(now=29.9)
    assert gaps
    gaps.expire(now=30.0)
    assert not gaps and len(gaps) == 0


def test_the_query_is_one_range_per_run_not_one_value_per_id():
    gaps = EventGaps(window_s=30)
    gaps.add(10, 67_009, since=0.0)
    gaps.add(70_000, 70_000, since=0.0)
    sql = str(gaps.condition(column("id")).compile(dialect=postgresql.dialect(),
                                                   compile_kwargs={"literal_binds": True}))
    assert sql == "id BETWEEN 10 AND 67009 OR id = 70000"
