"""The scheduler's inputs and outputs: what one admission pass decides on (``Snapshot``)
and what it decides (``Decisions``). ``domain.scheduling`` holds the rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from corral.domain.resources import Limit, Resources

POLICY_NEVER = "never"
POLICY_LOWER_PRIORITY = "lower_priority"
PREEMPTION_POLICIES = (POLICY_NEVER, POLICY_LOWER_PRIORITY)


@dataclass(frozen=True, slots=True)
class QueuedWorkload:
    id: int
    project_id: int
    cluster_id: int
    priority: int
    request: Resources
    preemptible: bool
    queued_since: datetime  # submission (or requeue) time
    # It named no cluster: it may be placed on any of these (rule 10), ``cluster_id`` being
    # the one whose queue position it reports. Empty: only ``cluster_id``.
    clusters: tuple[int, ...] = ()
    # The request split into ``units`` equal parts, each on one node (``spread``: each on a
    # node of its own): a multi-node job or a service's replicas (``domain.node_fit``).
    units: int = 1
    spread: bool = False


@dataclass(frozen=True, slots=True)
class AdmittedWorkload:
    id: int
    project_id: int
    cluster_id: int
    priority: int
    request: Resources
    preemptible: bool
    admitted_at: datetime
    discovered: bool = False  # found on the cluster: counts as usage, never preempted
    units: int = 1  # as in QueuedWorkload: kept for when it is requeued
    spread: bool = False


@dataclass(frozen=True, slots=True)
class ProjectQuota:
    guaranteed: Resources
    limit: Limit

    @classmethod
    def hard(cls, guaranteed: Resources) -> ProjectQuota:
        """The default: limit equal to the guarantee."""
        return cls(guaranteed, Limit.from_resources(guaranteed))


@dataclass(frozen=True)
class Snapshot:
    """Everything one pass decides on. ``queue`` and ``admitted`` must be disjoint."""

    now: datetime
    capacity: dict[int, Resources]  # cluster_id -> capacity
    quotas: dict[tuple[int, int], ProjectQuota]  # (project_id, cluster_id) -> quota; none: nothing allowed
    admitted: list[AdmittedWorkload]  # what holds resources now (usage is derived from these)
    queue: list[QueuedWorkload]  # pending workloads, any order
    preemption_policy: dict[int, str] = field(default_factory=dict)  # project_id -> never | lower_priority
    starvation_after_s: float = 300.0
    project_names: dict[int, str] = field(default_factory=dict)
    cluster_names: dict[int, str] = field(default_factory=dict)
    # What ``admitted`` adds up to per (project, cluster), when the caller keeps that total
    # itself (an incremental scheduler): the pass then skips summing ``admitted``, which it
    # reads only to pick preemption victims. Must equal the sum of ``admitted``.
    usage: dict[tuple[int, int], tuple[int, int, int, int]] | None = None
    # cluster_id -> what each of its nodes has (gpu, cpu, memory, ephemeral storage), where
    # its agent reports nodes: a request no node can hold never fits (rule 3).
    nodes: dict[int, tuple[tuple[int, int, int, int], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Admission:
    workload_id: int
    cluster_id: int | None = None  # where it is placed


@dataclass(frozen=True, slots=True)
class Preemption:
    workload_id: int
    for_workload_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    workload_id: int
    reason: str
    position: int  # 1-based, in its project's queue on its cluster
    queue_length: int
    # Why, in one word: no_quota, never_fits (rule 3; never a queue head), blocked (rule 4),
    # quota (its project's limit or guarantee), capacity (the cluster's, and it would borrow),
    # reclaim (the cluster's, and too little borrowed capacity to take back).
    cause: str = "quota"


@dataclass(frozen=True)
class Decisions:
    """What one pass decided, each list in the order the decisions were taken (queue order);
    a preemption comes before the admission it made room for."""

    admissions: list[Admission]
    preemptions: list[Preemption]
    waiting: list[Waiting]


def queue_key(w: QueuedWorkload) -> tuple:
    """Queue order: priority descending, then queued_since, then id."""
    return (-w.priority, w.queued_since, w.id)


def queue_order(queue: list[QueuedWorkload]) -> list[QueuedWorkload]:
    """``sorted(queue, key=queue_key)``, done as three stable sorts on C-level keys."""
    order = sorted(queue, key=_BY_ID)
    order.sort(key=_BY_QUEUED)
    order.sort(key=_BY_PRIORITY, reverse=True)  # a reverse sort keeps equal items in their order
    return order


_BY_QUEUED = attrgetter("queued_since")
_BY_PRIORITY = attrgetter("priority")
_BY_ADMITTED = attrgetter("admitted_at")
_BY_ID = attrgetter("id")
