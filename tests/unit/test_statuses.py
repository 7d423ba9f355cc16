"""The status contract (shared/spec/statuses.md), row by row of the seed's status table
and pair by pair of the precedence it leaves open."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from corral.domain.statuses import (
    DEFAULT_VISIBLE_STATUSES,
    ComponentState,
    ComponentStatus as C,
    WorkloadClock,
    WorkloadStatus as W,
    advance_clock,
    aggregate_status,
    component_update_allowed,
    elapsed_times,
    is_stale,
)


def agg(*statuses: C, deleting: bool = False) -> W:
    return aggregate_status([ComponentState(s, f"{s.value} reason") for s in statuses], deleting)[0]


# Each row of the seed's status table, with the condition it states.
SEED_TABLE = [
    ("Added: component creation has not started", [], False, W.ADDED),
    ("Pending: all components are Pending", [C.PENDING, C.PENDING], False, W.PENDING),
    ("Running: any component is Running", [C.RUNNING, C.PENDING], False, W.RUNNING),
    ("Complete: all components are Completed", [C.COMPLETED, C.COMPLETED], False, W.COMPLETE),
    ("Failed: any component is Failed", [C.FAILED, C.COMPLETED], False, W.FAILED),
    ("Deleting: delete started, not all components Deleted", [C.DELETED, C.RUNNING], True, W.DELETING),
    ("Deleted: all components are Deleted", [C.DELETED, C.DELETED], True, W.DELETED),
    ("Delete Failed: any component is Delete Failed", [C.DELETE_FAILED, C.DELETED], True, W.DELETE_FAILED),
    ("Terminated: all components Completed or Deleted", [C.COMPLETED, C.DELETED], False, W.TERMINATED),
    ("Unknown: status cannot be determined", [C.UNKNOWN, C.UNKNOWN], False, W.UNKNOWN),
]


@pytest.mark.parametrize(("statement", "components", "deleting", "expected"), SEED_TABLE,
                         ids=[row[0].split(":")[0] for row in SEED_TABLE])
def test_seed_status_table(statement, components, deleting, expected):
    assert agg(*components, deleting=deleting) is expected, statement


def test_every_seed_status_is_reachable():
    assert {row[3] for row in SEED_TABLE} == set(W)


# Precedence: for two components in every pair of statuses (and with or without a
# delete request) the first matching rule of statuses.md decides.
def expected_by_rules(a: C, b: C, deleting: bool) -> W:
    both = {a, b}
    if both == {C.DELETED}:
        return W.DELETED
    if C.DELETE_FAILED in both:
        return W.DELETE_FAILED
    if deleting:
        return W.DELETING
    if both == {C.COMPLETED}:
        return W.COMPLETE
    if both <= {C.COMPLETED, C.DELETED}:
        return W.TERMINATED
    if C.FAILED in both:
        return W.FAILED
    if C.RUNNING in both:
        return W.RUNNING
    if both <= {C.PENDING, C.COMPLETED}:
        return W.PENDING
    return W.UNKNOWN


PAIRS = [(a, b, d) for a, b in itertools.combinations_with_replacement(C, 2) for d in (False, True)]


@pytest.mark.parametrize(("a", "b", "deleting"), PAIRS, ids=[f"{a}+{b}{'+delete' if d else ''}" for a, b, d in PAIRS])
def test_precedence_of_every_pair(a, b, deleting):
    assert agg(a, b, deleting=deleting) is expected_by_rules(a, b, deleting)
    assert agg(b, a, deleting=deleting) is expected_by_rules(a, b, deleting), "order of components must not matter"


@pytest.mark.parametrize(("components", "expected"), [
    # The cases the seed leaves open, decided by statuses.md.
    ([C.RUNNING, C.FAILED], W.FAILED),  # rule 7 before rule 8
    ([C.RUNNING, C.PENDING], W.RUNNING),  # a service scaling up stays Running
    ([C.PENDING, C.COMPLETED], W.PENDING),  # a passive object exists, the server waits
    ([C.RUNNING, C.COMPLETED], W.RUNNING),
    ([C.COMPLETED, C.DELETED], W.TERMINATED),
    ([C.FAILED, C.DELETED], W.FAILED),
    ([C.RUNNING, C.UNKNOWN], W.RUNNING),
    ([C.PENDING, C.UNKNOWN], W.UNKNOWN),
    ([C.DELETED, C.PENDING], W.UNKNOWN),
])
def test_open_cases_decided_by_the_contract(components, expected):
    assert agg(*components) is expected


def test_deleting_is_sticky_whatever_the_components_do():
    for status in (C.RUNNING, C.PENDING, C.COMPLETED, C.FAILED, C.UNKNOWN):
        assert agg(status, C.DELETED, deleting=True) is W.DELETING


def test_reason_comes_from_the_deciding_component():
    status, reason = aggregate_status(
        [ComponentState(C.RUNNING, "serving"), ComponentState(C.FAILED, "exit code 3")], False)
    assert (status, reason) == (W.FAILED, "exit code 3")


def test_default_view_is_every_status_but_deleted():
    assert set(DEFAULT_VISIBLE_STATUSES) == set(W) - {W.DELETED}


@pytest.mark.parametrize("text", ["Delete Failed", "deletefailed", "DeleteFailed", "delete-failed"])
def test_status_accepts_the_seed_label(text):
    assert W.parse(text) is W.DELETE_FAILED
    assert W.DELETE_FAILED.label == "Delete Failed"


def test_unknown_status_names_the_valid_ones():
    with pytest.raises(ValueError, match="expected one of: Added, Pending"):
        W.parse("Exploded")


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_stale_updates_are_ignored_by_observation_time():
    assert is_stale(T0, T0 - timedelta(seconds=1))
    assert not is_stale(T0, T0)
    assert not is_stale(None, T0)


def test_deleted_component_is_never_revived():
    assert not component_update_allowed(C.DELETED, C.RUNNING)
    assert component_update_allowed(C.DELETED, C.DELETED)
    assert component_update_allowed(C.RUNNING, C.DELETED)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_time_waiting_then_running_then_complete():
    clock = WorkloadClock(created_at=T0)
    clock = advance_clock(clock, W.PENDING, at(1))
    assert elapsed_times(clock, at(10)) == (10.0, 0.0)  # still waiting
    clock = advance_clock(clock, W.RUNNING, at(30))
    assert elapsed_times(clock, at(45)) == (30.0, 15.0)
    clock = advance_clock(clock, W.COMPLETE, at(90))
    assert elapsed_times(clock, at(1000)) == (30.0, 60.0)  # frozen once finished
    assert clock.finished_at == at(90)


def test_running_time_accumulates_across_interruptions():
    clock = WorkloadClock(created_at=T0)
    clock = advance_clock(clock, W.RUNNING, at(10))
    clock = advance_clock(clock, W.RUNNING, at(15))  # no change: still running since 10
    clock = advance_clock(clock, W.PENDING, at(20))  # e.g. preempted back to the queue
    clock = advance_clock(clock, W.RUNNING, at(50))
    clock = advance_clock(clock, W.FAILED, at(60))
    waiting, running = elapsed_times(clock, at(100))
    assert waiting == 10.0  # queue time counts until it first ran
    assert running == 20.0


def test_never_ran_waits_until_it_finished():
    clock = advance_clock(WorkloadClock(created_at=T0), W.DELETED, at(42))
    assert elapsed_times(clock, at(100)) == (42.0, 0.0)
