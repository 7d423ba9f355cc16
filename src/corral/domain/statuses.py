"""The status contract of shared/spec/statuses.md, as pure functions.

Component statuses come from the cluster; the workload status is derived from them
by the first matching rule of ``aggregate_status``. Nothing else decides a status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class ComponentStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    DELETED = "Deleted"
    DELETE_FAILED = "DeleteFailed"
    UNKNOWN = "Unknown"


class WorkloadStatus(StrEnum):
    ADDED = "Added"
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    DELETING = "Deleting"
    DELETED = "Deleted"
    DELETE_FAILED = "DeleteFailed"
    TERMINATED = "Terminated"
    UNKNOWN = "Unknown"

    @property
    def label(self) -> str:
        """The name the seed documents show ("Delete Failed")."""
        return "Delete Failed" if self is WorkloadStatus.DELETE_FAILED else self.value

    @classmethod
    def parse(cls, text: str) -> WorkloadStatus:
        """Accept the API value, the seed's label, any case: "Delete Failed", "deletefailed"."""
        key = _squash(text)
        for status in cls:
            if _squash(status.value) == key:
                return status
        raise ValueError(f"unknown status {text!r}; expected one of: {', '.join(s.value for s in cls)}")


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


# Statuses in which a workload holds no resources on a cluster and never changes again
# by itself: the end of its life as far as scheduling is concerned.
FINISHED_STATUSES = frozenset(
    {WorkloadStatus.COMPLETE, WorkloadStatus.FAILED, WorkloadStatus.TERMINATED, WorkloadStatus.DELETED}
)
# The default view of the Workloads page: every status but Deleted (seed).
DEFAULT_VISIBLE_STATUSES = tuple(s for s in WorkloadStatus if s is not WorkloadStatus.DELETED)


@dataclass(frozen=True, slots=True)
class ComponentState:
    status: ComponentStatus
    reason: str = ""


def aggregate_status(
    components: Sequence[ComponentState], delete_requested: bool
) -> tuple[WorkloadStatus, str]:
    """Workload status and reason from its components: first matching rule wins.

    The reason is taken from the component that decided the rule, so that a user sees
    why a workload failed or waits without opening each component.
    """
    if not components:
        return WorkloadStatus.ADDED, "no component registered yet"
    statuses = [c.status for c in components]

    def first(status: ComponentStatus) -> str:
        return next((c.reason for c in components if c.status is status and c.reason), "")

    S = ComponentStatus
    if all(s is S.DELETED for s in statuses):
        return WorkloadStatus.DELETED, first(S.DELETED) or "all components deleted"
    if S.DELETE_FAILED in statuses:
        return WorkloadStatus.DELETE_FAILED, first(S.DELETE_FAILED) or "a component could not be deleted"
    if delete_requested:
        return WorkloadStatus.DELETING, "deletion requested"
    if all(s is S.COMPLETED for s in statuses):
        return WorkloadStatus.COMPLETE, first(S.COMPLETED)
    if all(s in (S.COMPLETED, S.DELETED) for s in statuses):
        return WorkloadStatus.TERMINATED, first(S.DELETED) or "some components were removed before completing"
    if S.FAILED in statuses:
        return WorkloadStatus.FAILED, first(S.FAILED)
    if S.RUNNING in statuses:
        return WorkloadStatus.RUNNING, first(S.RUNNING)
    if all(s in (S.PENDING, S.COMPLETED) for s in statuses):
        return WorkloadStatus.PENDING, first(S.PENDING)
    return WorkloadStatus.UNKNOWN, first(S.UNKNOWN) or "status cannot be determined"


def is_stale(stored_observed_at: datetime | None, incoming_observed_at: datetime) -> bool:
    """Updates may arrive out of order: one observed before the stored one is ignored."""
    return stored_observed_at is not None and incoming_observed_at < stored_observed_at


def component_update_allowed(current: ComponentStatus, new: ComponentStatus) -> bool:
    """Deleted is final for a component: nothing the cluster says afterwards revives it."""
    return not (current is ComponentStatus.DELETED and new is not ComponentStatus.DELETED)


@dataclass(frozen=True, slots=True)
class WorkloadClock:
    """What the time accounting needs: when the workload was created, first ran, and so on."""

    created_at: datetime
    first_running_at: datetime | None = None
    running_since: datetime | None = None
    run_seconds: float = 0.0
    finished_at: datetime | None = None


def advance_clock(clock: WorkloadClock, new_status: WorkloadStatus, at: datetime) -> WorkloadClock:
    """The clock after a status change to ``new_status`` at ``at``."""
    if new_status is WorkloadStatus.RUNNING:
        if clock.running_since is not None:
            return clock
        return replace(clock, running_since=at, first_running_at=clock.first_running_at or at)
    if clock.running_since is not None:
        elapsed = max(0.0, (at - clock.running_since).total_seconds())
        clock = replace(clock, running_since=None, run_seconds=clock.run_seconds + elapsed)
    if new_status in FINISHED_STATUSES and clock.finished_at is None:
        clock = replace(clock, finished_at=at)
    return clock


def elapsed_times(clock: WorkloadClock, now: datetime) -> tuple[float, float]:
    """(seconds waiting before it first ran, seconds running so far)."""
    wait_end = clock.first_running_at or clock.finished_at or now
    waiting = max(0.0, (wait_end - clock.created_at).total_seconds())
    running = clock.run_seconds
    if clock.running_since is not None:
        running += max(0.0, (now - clock.running_since).total_seconds())
    return waiting, running
