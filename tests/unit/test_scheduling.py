"""The admission decision (corral.domain.scheduling): one rule per test, tables where natural."""

from __future__ import annotations

import ast
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.domain import schedule_model, schedule_reasons, schedule_victims, scheduling
from corral.domain.resources import Limit, Resources
from corral.domain.scheduling import (
    AdmittedWorkload,
    Decisions,
    ProjectQuota,
    QueuedWorkload,
    Snapshot,
    schedule,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
LOW, MEDIUM, HIGH = -100, 0, 100
VISION, NLP, AUDIO = 1, 2, 3
NAMES = {VISION: "vision", NLP: "nlp", AUDIO: "audio"}
C1, C2 = 1, 2


def q(id, project=VISION, gpu=1, prio=MEDIUM, age=10.0, preemptible=True, cluster=C1, cpu=0, memory=0):
    return QueuedWorkload(
        id=id, project_id=project, cluster_id=cluster, priority=prio,
        request=Resources(gpu=gpu, cpu=cpu, memory=memory), preemptible=preemptible,
        queued_since=NOW - timedelta(seconds=age),
    )


def a(id, project=VISION, gpu=1, prio=MEDIUM, ago=100.0, preemptible=True, discovered=False, cluster=C1,
      cpu=0, memory=0):
    return AdmittedWorkload(
        id=id, project_id=project, cluster_id=cluster, priority=prio,
        request=Resources(gpu=gpu, cpu=cpu, memory=memory), preemptible=preemptible,
        admitted_at=NOW - timedelta(seconds=ago), discovered=discovered,
    )


def quota(guaranteed, limit="hard"):
    """guaranteed GPUs; limit: "hard" (= guaranteed), None (unbounded) or a GPU count."""
    g = Resources(gpu=guaranteed)
    if limit == "hard":
        return ProjectQuota.hard(g)
    return ProjectQuota(g, Limit(gpu=limit))


def run(quotas, queue, admitted=(), capacity=8, policy=None, starvation=300.0, capacities=None) -> Decisions:
    quotas = {(k if isinstance(k, tuple) else (k, C1)): v for k, v in quotas.items()}
    return schedule(Snapshot(
        now=NOW,
        capacity=capacities or {C1: Resources(gpu=capacity)},
        quotas=quotas,
        admitted=list(admitted),
        queue=list(queue),
        preemption_policy=policy or {},
        starvation_after_s=starvation,
        project_names=NAMES,
    ))


def admitted_ids(d: Decisions) -> list[int]:
    return [x.workload_id for x in d.admissions]


def preempted(d: Decisions) -> list[int]:
    return [x.workload_id for x in d.preemptions]


def waits(d: Decisions) -> dict[int, str]:
    return {x.workload_id: x.reason for x in d.waiting}


# --- rule 2: fit, borrowing, limits, capacity ------------------------------------------------

FIT_CASES = [
    # id, quotas, admitted, queue, capacity, admitted ids, {id: reason}
    ("fits within the guarantee", {VISION: quota(4)}, [], [q(10, gpu=4)], 8, [10], {}),
    ("borrows up to the limit", {VISION: quota(4, 8)}, [a(1, gpu=4)], [q(10, gpu=4)], 8, [10], {}),
    ("unbounded limit borrows idle capacity", {VISION: quota(0, None)}, [], [q(10, gpu=8)], 8, [10], {}),
    ("not beyond the limit", {VISION: quota(4, 8)}, [a(1, gpu=6)], [q(10, gpu=4)], 16, [],
     {10: "waiting for quota: gpu 6/8 in use in project vision (limit 8), 4 requested"}),
    ("limit defaults to the guarantee (hard)", {VISION: quota(4)}, [a(1, gpu=4)], [q(10, gpu=1)], 8, [],
     {10: "waiting for quota: gpu 4/4 in use in project vision (limit 4), 1 requested"}),
    ("not beyond cluster capacity even within the limit", {VISION: quota(0, None), NLP: quota(0, None)},
     [a(1, project=NLP, gpu=6)], [q(10, gpu=4)], 8, [],
     {10: "waiting for cluster capacity: gpu 2 free, 4 requested "
          "(above the guarantee of project vision: waits for idle capacity)"}),
    ("each admission uses up quota for the next", {VISION: quota(4)}, [], [q(10, gpu=3, age=20), q(11, gpu=3)], 8,
     [10], {11: "waiting for quota: gpu 3/4 in use in project vision (limit 4), 3 requested"}),
    ("each admission uses up capacity for the next", {VISION: quota(0, None), NLP: quota(0, None)}, [],
     [q(10, gpu=5, age=20), q(11, project=NLP, gpu=5)], 8, [10],
     {11: "waiting for cluster capacity: gpu 3 free, 5 requested "
          "(above the guarantee of project nlp: waits for idle capacity)"}),
    ("no quota entry: nothing allowed", {NLP: quota(4)}, [], [q(10, gpu=1)], 8, [],
     {10: "no quota for project vision on this cluster"}),
    ("zero request fits a full quota", {VISION: quota(2)}, [a(1, gpu=2)], [q(10, gpu=0)], 8, [10], {}),
]


@pytest.mark.parametrize(("quotas", "admitted", "queue", "capacity", "expected", "reasons"),
                         [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit(quotas, admitted, queue, capacity, expected, reasons):
    d = run(quotas, queue, admitted, capacity=capacity)
    assert admitted_ids(d) == expected
    assert waits(d) == reasons
    assert d.preemptions == []


def test_no_quota_on_this_cluster_although_on_another():
    d = run({(VISION, C1): quota(4)}, [q(10, cluster=C2)],
            capacities={C1: Resources(gpu=8), C2: Resources(gpu=8)})
    assert waits(d) == {10: "no quota for project vision on this cluster"}


def test_unknown_project_name_falls_back_to_its_id():
    d = run({}, [q(10, project=42)])
    assert waits(d) == {10: "no quota for project project 42 on this cluster"}


NEVER_FITS = [
    ("request over the limit", {VISION: quota(4, 6)}, q(10, gpu=7), 8,
     "request exceeds the limit of project vision on this cluster: gpu 7 requested (limit 6)"),
    ("request over the capacity", {VISION: quota(0, None)}, q(10, gpu=9), 8,
     "request exceeds the cluster's capacity: gpu 9 requested (capacity 8)"),
    ("non-preemptible over the guarantee", {VISION: quota(2, 8)}, q(10, gpu=4, preemptible=False), 8,
     "non-preemptible request exceeds the guarantee of project vision on this cluster: gpu 4 requested "
     "(guarantee 2)"),
]


@pytest.mark.parametrize(("quotas", "workload", "capacity", "reason"), [c[1:] for c in NEVER_FITS],
                         ids=[c[0] for c in NEVER_FITS])
def test_never_fits_says_so(quotas, workload, capacity, reason):
    d = run(quotas, [workload], capacity=capacity)
    assert admitted_ids(d) == [] and waits(d) == {10: reason}


def test_reasons_name_every_short_dimension_with_units():
    quotas = {(VISION, C1): ProjectQuota(Resources(gpu=4, cpu=8000, memory=32 * 2**30),
                                         Limit(gpu=4, cpu=8000, memory=32 * 2**30))}
    used = AdmittedWorkload(1, VISION, C1, MEDIUM, Resources(gpu=4, cpu=7000, memory=30 * 2**30), True,
                            NOW - timedelta(hours=1))
    want = q(10, gpu=1, cpu=2000, memory=4 * 2**30)
    d = schedule(Snapshot(NOW, {C1: Resources(gpu=8, cpu=64000, memory=256 * 2**30)}, quotas, [used], [want],
                          {}, project_names=NAMES))
    assert waits(d) == {10: "waiting for quota: gpu 4/4, cpu 7/8, memory 30Gi/32Gi in use in project vision "
                            "(limit gpu 4, cpu 8, memory 32Gi), gpu 1, cpu 2, memory 4Gi requested"}
    other = AdmittedWorkload(2, NLP, C1, MEDIUM, Resources(gpu=0, cpu=500, memory=255 * 2**30), True, NOW)
    quotas[(NLP, C1)] = ProjectQuota(Resources(), Limit())
    quotas[(VISION, C1)] = ProjectQuota(Resources(), Limit())
    d = schedule(Snapshot(NOW, {C1: Resources(gpu=8, cpu=64000, memory=256 * 2**30)}, quotas, [other],
                          [q(10, gpu=1, cpu=1500, memory=2 * 2**30)], {}, project_names=NAMES))
    assert waits(d) == {10: "waiting for cluster capacity: memory 1Gi free, 2Gi requested "
                            "(above the guarantee of project vision: waits for idle capacity)"}


def test_cluster_reason_names_every_short_dimension():
    quotas = {(VISION, C1): ProjectQuota(Resources(), Limit())}
    other = AdmittedWorkload(1, NLP, C1, MEDIUM, Resources(gpu=7, cpu=1500, memory=15 * 2**30), True, NOW)
    d = schedule(Snapshot(NOW, {C1: Resources(gpu=8, cpu=2000, memory=16 * 2**30)}, quotas, [other],
                          [q(10, gpu=2, cpu=1000, memory=2 * 2**30)], {}, project_names=NAMES))
    assert waits(d) == {10: "waiting for cluster capacity: gpu 1 free, 2 requested; cpu 500m free, 1 requested; "
                            "memory 1Gi free, 2Gi requested "
                            "(above the guarantee of project vision: waits for idle capacity)"}


# --- rule 1: order ------------------------------------------------------------------------

def test_queue_order_matches_the_documented_key():
    rng = random.Random(3)
    queue = [q(i, prio=rng.choice([LOW, MEDIUM, HIGH]), age=rng.choice([1, 2, 3])) for i in rng.sample(range(500), 200)]
    assert scheduling.queue_order(queue) == sorted(queue, key=lambda w: (-w.priority, w.queued_since, w.id))


def test_higher_priority_admitted_first_when_only_one_fits():
    d = run({VISION: quota(4)}, [q(10, gpu=4, prio=MEDIUM, age=600), q(11, gpu=4, prio=HIGH, age=1)])
    assert admitted_ids(d) == [11]
    assert waits(d)[10].startswith("waiting for quota: gpu 4/4")


def test_priority_order_holds_across_projects():
    d = run({VISION: quota(0, None), NLP: quota(0, None)},
            [q(10, project=VISION, gpu=8, prio=MEDIUM, age=100), q(11, project=NLP, gpu=8, prio=HIGH, age=1)])
    assert admitted_ids(d) == [11]
    assert 10 in waits(d)


@pytest.mark.parametrize(("queue", "first"), [
    ([q(10, gpu=4, age=5), q(11, gpu=4, age=50)], 11),  # older first
    ([q(11, gpu=4, age=5), q(10, gpu=4, age=5)], 10),  # same time: lower id first
    ([q(10, gpu=4, prio=LOW, age=500), q(11, gpu=4, age=5)], 11),  # priority before time
])
def test_queue_order(queue, first):
    assert admitted_ids(run({VISION: quota(4)}, queue)) == [first]


# --- rule 4: best-effort FIFO and anti-starvation ------------------------------------------

def test_small_workload_behind_a_big_one_is_admitted():
    d = run({VISION: quota(4)}, [q(10, gpu=4, age=100), q(11, gpu=2, age=50)], [a(1, gpu=1)])
    assert admitted_ids(d) == [11]
    assert [(w.workload_id, w.position, w.queue_length) for w in d.waiting] == [(10, 1, 1)]


def test_starving_head_blocks_its_project_on_that_cluster_only():
    quotas = {(VISION, C1): quota(4), (NLP, C1): quota(4), (VISION, C2): quota(4)}
    queue = [
        q(10, gpu=4, age=301),  # head of vision on C1, starving, does not fit (1 in use)
        q(11, gpu=1, age=100),  # would fit, but is behind a starving head
        q(12, gpu=1, age=50),
        q(20, project=NLP, gpu=1, age=5),  # another project: not blocked
        q(30, gpu=1, cluster=C2, age=5),  # same project, another cluster: not blocked
    ]
    d = run(quotas, queue, [a(1, gpu=1)], capacities={C1: Resources(gpu=8), C2: Resources(gpu=8)})
    assert sorted(admitted_ids(d)) == [20, 30]
    assert waits(d) == {
        10: "waiting for quota: gpu 1/4 in use in project vision (limit 4), 4 requested",
        11: "waiting behind workload 10, which has waited over 300s",
        12: "waiting behind workload 10, which has waited over 300s",
    }
    assert [(w.workload_id, w.position, w.queue_length) for w in d.waiting] == [(10, 1, 3), (11, 2, 3), (12, 3, 3)]


@pytest.mark.parametrize(("head_age", "starvation", "small_admitted"), [
    (300.0, 300.0, True),  # waited exactly the threshold: not yet starving
    (300.5, 300.0, False),
    (61.0, 60.0, False),
    (59.0, 60.0, True),
])
def test_starvation_threshold(head_age, starvation, small_admitted):
    d = run({VISION: quota(4)}, [q(10, gpu=4, age=head_age), q(11, gpu=1, age=1)], [a(1, gpu=1)],
            starvation=starvation)
    assert (admitted_ids(d) == [11]) is small_admitted


def test_head_is_the_first_workload_not_admitted():
    # 10 is admitted; 11 is then the head, starving, and blocks 12
    d = run({VISION: quota(4)}, [q(10, gpu=1, age=900), q(11, gpu=4, age=800), q(12, gpu=1, age=1)])
    assert admitted_ids(d) == [10]
    assert waits(d)[12] == "waiting behind workload 11, which has waited over 300s"


def test_only_the_head_blocks_not_a_starving_workload_behind_a_fresh_head():
    # the head (high, fresh) does not fit; 11 behind it is starving but is not the head
    d = run({VISION: quota(4)}, [q(10, gpu=4, prio=HIGH, age=1), q(11, gpu=4, age=900), q(12, gpu=1, age=1)],
            [a(1, gpu=1)], policy={VISION: "never"})
    assert admitted_ids(d) == [12]


def test_workload_that_can_never_fit_does_not_block_the_queue():
    d = run({VISION: quota(4)}, [q(10, gpu=5, age=9000), q(11, gpu=1, age=1)])
    assert admitted_ids(d) == [11]
    assert waits(d)[10].startswith("request exceeds the limit")


def test_starving_head_that_reclaims_is_admitted_and_blocks_nothing():
    d = run({VISION: quota(4), NLP: quota(4, None)},
            [q(10, gpu=4, age=900), q(11, gpu=1, age=1)],
            [a(1, project=NLP, gpu=4, ago=50), a(2, project=NLP, gpu=4, ago=40)])
    assert admitted_ids(d) == [10]
    assert preempted(d) == [2]
    assert waits(d)[11].startswith("waiting for quota: gpu 4/4")


# --- rule 5: reclaim ------------------------------------------------------------------------

def test_reclaim_takes_lowest_priority_then_most_recently_admitted():
    admitted = [
        a(1, project=NLP, gpu=2, prio=LOW, ago=300),
        a(2, project=NLP, gpu=2, prio=LOW, ago=100),
        a(3, project=NLP, gpu=2, prio=MEDIUM, ago=10),
        a(4, project=NLP, gpu=2, prio=HIGH, ago=5),
    ]
    d = run({VISION: quota(6), NLP: quota(2, None)}, [q(10, gpu=4)], admitted)
    assert admitted_ids(d) == [10]
    assert [(p.workload_id, p.for_workload_id, p.reason) for p in d.preemptions] == [
        (2, 10, "preempted by workload 10 of project vision to reclaim its guaranteed quota"),
        (1, 10, "preempted by workload 10 of project vision to reclaim its guaranteed quota"),
    ]


def test_reclaim_preempts_only_as_many_as_needed():
    admitted = [a(i, project=NLP, gpu=1, prio=LOW, ago=100 - i) for i in range(1, 9)]
    d = run({VISION: quota(4), NLP: quota(4, None)}, [q(10, gpu=3)], admitted)
    assert admitted_ids(d) == [10]
    assert preempted(d) == [8, 7, 6]  # newest first, exactly 3


def test_victim_project_stops_supplying_at_its_guarantee():
    admitted = [
        a(1, project=NLP, gpu=2, prio=LOW, ago=300),
        a(2, project=NLP, gpu=2, prio=LOW, ago=200),
        a(3, project=NLP, gpu=2, prio=LOW, ago=100),  # nlp: 6 used, guarantee 4
        a(4, project=AUDIO, gpu=2, prio=MEDIUM, ago=90),
        a(5, project=AUDIO, gpu=2, prio=MEDIUM, ago=80),  # audio: 4 used, guarantee 2
        a(6, project=VISION, gpu=2, ago=70),
    ]
    d = run({VISION: quota(6), NLP: quota(4, None), AUDIO: quota(2, None)}, [q(10, gpu=4)], admitted, capacity=12)
    assert admitted_ids(d) == [10]
    # nlp gives 3 (back at 4 = its guarantee) and stops, although its 2 and 1 are lower priority
    assert preempted(d) == [3, 5]


def test_reclaim_preempts_nothing_when_not_enough_can_be_reclaimed():
    admitted = [
        a(1, project=NLP, gpu=6, discovered=True),  # never a victim
        a(2, project=NLP, gpu=2, prio=LOW),  # nlp borrows 4, only 2 of it preemptible
    ]
    d = run({VISION: quota(4), NLP: quota(4, None)}, [q(10, gpu=4)], admitted)
    assert admitted_ids(d) == [] and d.preemptions == []
    assert waits(d) == {10: "waiting for cluster capacity: gpu 0 free, 4 requested "
                            "(not enough borrowed capacity to reclaim)"}


def test_projects_within_their_guarantee_are_not_reclaimed_from():
    admitted = [
        a(1, project=AUDIO, gpu=2, prio=LOW, ago=1),  # audio at its guarantee: not a victim
        a(2, project=NLP, gpu=2, prio=HIGH, ago=500),
        a(3, project=NLP, gpu=2, prio=HIGH, ago=400),
        a(4, project=NLP, gpu=2, prio=HIGH, ago=300),  # nlp borrows 4
    ]
    d = run({VISION: quota(4), NLP: quota(2, None), AUDIO: quota(2)}, [q(10, gpu=2)], admitted)
    assert admitted_ids(d) == [10]
    assert preempted(d) == [4]


def test_reclaim_only_takes_what_the_victim_borrows_in_the_short_dimension():
    # nlp borrows CPU but is within its GPU guarantee: its GPU workload is not taken for GPU
    capacity = {C1: Resources(gpu=4, cpu=16000)}
    quotas = {
        (VISION, C1): ProjectQuota(Resources(gpu=2, cpu=4000), Limit()),
        (NLP, C1): ProjectQuota(Resources(gpu=2, cpu=4000), Limit()),
        (AUDIO, C1): ProjectQuota(Resources(gpu=0, cpu=0), Limit()),
    }
    admitted = [
        a(1, project=NLP, gpu=2, cpu=8000, prio=LOW),
        a(2, project=AUDIO, gpu=2, cpu=100, prio=HIGH),
    ]
    d = schedule(Snapshot(NOW, capacity, quotas, admitted, [q(10, gpu=2, cpu=1000)], {}, project_names=NAMES))
    assert admitted_ids(d) == [10]
    assert preempted(d) == [2]


def test_a_reclaimed_victim_frees_its_whole_request():
    # nlp borrows memory but is within its GPU guarantee; vision is short of both: nlp's workload
    # qualifies (it frees borrowed memory) and its GPUs come with it
    capacity = {C1: Resources(gpu=4, memory=16)}
    quotas = {
        (VISION, C1): ProjectQuota(Resources(gpu=2, memory=8), Limit()),
        (NLP, C1): ProjectQuota(Resources(gpu=2, memory=4), Limit()),
        (AUDIO, C1): ProjectQuota(Resources(), Limit()),
    }
    admitted = [a(1, project=NLP, gpu=2, memory=12, prio=LOW), a(2, gpu=1, memory=4),
                a(3, project=AUDIO, gpu=1, discovered=True)]
    d = schedule(Snapshot(NOW, capacity, quotas, admitted, [q(10, gpu=1, memory=2)], {}, project_names=NAMES))
    assert preempted(d) == [1]
    assert admitted_ids(d) == [10]


def test_borrowing_workload_does_not_reclaim():
    admitted = [a(1, gpu=2), a(2, project=NLP, gpu=6, prio=LOW)]  # nlp borrows 4
    d = run({VISION: quota(2, 8), NLP: quota(2, None)}, [q(10, gpu=2, prio=HIGH)], admitted)
    assert admitted_ids(d) == [] and d.preemptions == []
    assert waits(d) == {10: "waiting for cluster capacity: gpu 0 free, 2 requested "
                            "(above the guarantee of project vision: waits for idle capacity)"}


def test_workloads_admitted_in_the_same_pass_are_not_reclaimed():
    # nlp's high-priority workload is admitted first (borrowing); vision cannot take it back in this pass
    d = run({VISION: quota(4), NLP: quota(4, None)}, [q(10, gpu=4), q(20, project=NLP, gpu=8, prio=HIGH)])
    assert admitted_ids(d) == [20]
    assert d.preemptions == []
    assert waits(d)[10].endswith("(not enough borrowed capacity to reclaim)")


# --- rule 6: priority preemption inside a project -----------------------------------------

OWN = [a(1, gpu=1, prio=LOW, ago=300), a(2, gpu=1, prio=LOW, ago=100), a(3, gpu=2, prio=MEDIUM, ago=50)]

PRIORITY_CASES = [
    # id, queued, policy, victims, admitted
    ("high takes lows, newest first", q(10, gpu=2, prio=HIGH), None, [2, 1], [10]),
    ("only as many as needed", q(10, gpu=1, prio=HIGH), None, [2], [10]),
    ("high takes mediums after lows", q(10, gpu=4, prio=HIGH), None, [2, 1, 3], [10]),
    ("medium takes lows only", q(10, gpu=2, prio=MEDIUM), None, [2, 1], [10]),
    ("equal priority never preempts", q(10, gpu=3, prio=MEDIUM), None, [], []),
    ("low preempts nothing", q(10, gpu=1, prio=LOW), None, [], []),
    ("policy never disables it", q(10, gpu=1, prio=HIGH), {VISION: "never"}, [], []),
    ("explicit lower_priority", q(10, gpu=1, prio=HIGH), {VISION: "lower_priority"}, [2], [10]),
    ("an unknown policy acts as the default", q(10, gpu=1, prio=HIGH), {VISION: "sometimes"}, [2], [10]),
]


@pytest.mark.parametrize(("workload", "policy", "victims", "expected"), [c[1:] for c in PRIORITY_CASES],
                         ids=[c[0] for c in PRIORITY_CASES])
def test_priority_preemption_within_a_project(workload, policy, victims, expected):
    d = run({VISION: quota(4)}, [workload], OWN, policy=policy)
    assert preempted(d) == victims
    assert admitted_ids(d) == expected
    if victims:
        assert {p.reason for p in d.preemptions} == {"preempted by higher-priority workload 10 of project vision"}
        assert {p.for_workload_id for p in d.preemptions} == {10}
    else:
        assert waits(d) == {10: f"waiting for quota: gpu 4/4 in use in project vision (limit 4), "
                                f"{workload.request.gpu} requested"}


def test_priority_preemption_never_touches_other_projects():
    d = run({VISION: quota(2), NLP: quota(2)}, [q(10, gpu=1, prio=HIGH)],
            [a(1, gpu=2, prio=HIGH), a(2, project=NLP, gpu=1, prio=LOW)], capacity=4)
    assert d.preemptions == [] and admitted_ids(d) == []


def test_priority_preemption_also_frees_cluster_capacity_when_needed():
    # vision: limit 6, uses 4 (two lows); the cluster is full; the high one needs 4:
    # quota needs 2 freed, the cluster needs all 4
    admitted = [a(1, gpu=2, prio=LOW, ago=100), a(2, gpu=2, prio=LOW, ago=50), a(3, project=NLP, gpu=4)]
    d = run({VISION: quota(4, 6), NLP: quota(4)}, [q(10, gpu=4, prio=HIGH)], admitted)
    assert preempted(d) == [2, 1]
    assert admitted_ids(d) == [10]


def test_priority_preemption_that_cannot_make_it_fit_preempts_nothing():
    admitted = [a(1, gpu=1, prio=LOW), a(2, gpu=3, prio=HIGH)]
    d = run({VISION: quota(4)}, [q(10, gpu=3, prio=HIGH)], admitted)
    assert d.preemptions == [] and admitted_ids(d) == []


# --- non-preemptible ------------------------------------------------------------------------

def test_non_preemptible_admitted_only_within_the_guarantee():
    d = run({VISION: quota(4, 8)}, [q(10, gpu=3, preemptible=False)], [a(1, gpu=2)])
    assert admitted_ids(d) == []
    assert waits(d) == {10: "non-preemptible: needs gpu 3 within the guarantee of project vision, 2 left"}
    d = run({VISION: quota(4, 8)}, [q(10, gpu=2, preemptible=False)], [a(1, gpu=2)])
    assert admitted_ids(d) == [10]


def test_preemptible_one_may_borrow_where_non_preemptible_may_not():
    d = run({VISION: quota(4, 8)}, [q(10, gpu=3, preemptible=True)], [a(1, gpu=2)])
    assert admitted_ids(d) == [10]


def test_non_preemptible_preempts_lower_priority_to_fit_its_guarantee():
    d = run({VISION: quota(4, 8)}, [q(10, gpu=3, prio=HIGH, preemptible=False)],
            [a(1, gpu=1, prio=LOW), a(2, gpu=1, prio=LOW)])
    assert preempted(d) == [2]  # same priority and admission time: the higher id goes first
    assert admitted_ids(d) == [10]


@pytest.mark.parametrize("case", ["reclaim", "priority"])
def test_non_preemptible_is_never_a_victim(case):
    if case == "reclaim":
        d = run({VISION: quota(4), NLP: quota(2, None)}, [q(10, gpu=2)],
                [a(1, project=NLP, gpu=2, preemptible=False), a(2, project=NLP, gpu=6, prio=LOW, preemptible=False)])
    else:
        d = run({VISION: quota(4)}, [q(10, gpu=2, prio=HIGH)], [a(1, gpu=4, prio=LOW, preemptible=False)])
    assert d.preemptions == [] and admitted_ids(d) == []


# --- discovered workloads --------------------------------------------------------------------

def test_discovered_workloads_count_as_usage():
    d = run({VISION: quota(4)}, [q(10, gpu=2)], [a(1, gpu=3, discovered=True)])
    assert waits(d) == {10: "waiting for quota: gpu 3/4 in use in project vision (limit 4), 2 requested"}


def test_discovered_workloads_can_put_a_project_over_its_limit():
    d = run({VISION: quota(4)}, [q(10, gpu=1, prio=HIGH)], [a(1, gpu=6, prio=LOW, discovered=True)])
    assert d.preemptions == []
    assert waits(d) == {10: "waiting for quota: gpu 6/4 in use in project vision (limit 4), 1 requested"}


def test_discovered_workloads_use_cluster_capacity_and_are_never_reclaimed():
    d = run({VISION: quota(4), NLP: quota(4)}, [q(10, gpu=4)], [a(1, project=NLP, gpu=8, prio=LOW, discovered=True)])
    assert d.preemptions == [] and admitted_ids(d) == []
    assert waits(d)[10].startswith("waiting for cluster capacity: gpu 0 free, 4 requested")


def test_discovered_workloads_on_a_cluster_without_known_capacity():
    d = run({VISION: quota(4)}, [q(10, gpu=1)], [a(1, gpu=1, discovered=True, cluster=C2)])
    assert admitted_ids(d) == [10]  # the usage is on C2, not C1


# --- rule 7: preempted workloads ------------------------------------------------------------

def test_preempted_workloads_are_not_readmitted_and_their_capacity_goes_on():
    # 10 (high, 1 gpu) preempts 1 (low, 3 gpu); 11 then takes 2 of the 3 freed; 1 is not readmitted
    d = run({VISION: quota(4)}, [q(10, gpu=1, prio=HIGH), q(11, gpu=2, prio=MEDIUM)],
            [a(1, gpu=3, prio=LOW), a(2, gpu=1, prio=MEDIUM)])
    assert preempted(d) == [1]
    assert admitted_ids(d) == [10, 11]
    assert 1 not in admitted_ids(d) and 1 not in waits(d)


def test_a_workload_is_preempted_at_most_once():
    admitted = [a(1, gpu=2, prio=LOW, ago=100), a(2, gpu=2, prio=LOW, ago=50)]
    d = run({VISION: quota(4)}, [q(10, gpu=2, prio=HIGH, age=20), q(11, gpu=2, prio=HIGH, age=10)], admitted)
    assert preempted(d) == [2, 1]
    assert [p.for_workload_id for p in d.preemptions] == [10, 11]
    assert admitted_ids(d) == [10, 11]


# --- rule 9: positions ----------------------------------------------------------------------

def test_positions_per_project_and_cluster_count_only_workloads_still_waiting():
    quotas = {(VISION, C1): quota(2), (NLP, C1): quota(2), (VISION, C2): quota(1)}
    queue = [
        q(10, gpu=2, age=50),  # does not fit beside 12
        q(11, gpu=2, age=40),
        q(12, gpu=1, prio=HIGH, age=1),  # fits first
        q(13, gpu=1, age=30),
        q(14, gpu=2, prio=LOW, age=60),
        q(20, project=NLP, gpu=3),
        q(30, gpu=2, cluster=C2),
    ]
    d = run(quotas, queue, capacities={C1: Resources(gpu=8), C2: Resources(gpu=8)})
    assert admitted_ids(d) == [12, 13]  # high first; 13 (1) fits beside it, 10 and 11 (2) do not
    got = {w.workload_id: (w.position, w.queue_length) for w in d.waiting}
    assert got == {10: (1, 3), 11: (2, 3), 14: (3, 3), 20: (1, 1), 30: (1, 1)}
    assert [w.workload_id for w in d.waiting] == [10, 11, 20, 30, 14]  # in the order considered
    assert waits(d)[10] == "waiting for quota: gpu 1/2 in use in project vision (limit 2), 2 requested"


def test_every_queued_workload_gets_exactly_one_decision():
    d = run({VISION: quota(2), NLP: quota(2)}, [q(i, project=VISION if i % 2 else NLP) for i in range(10, 20)])
    ids = admitted_ids(d) + [w.workload_id for w in d.waiting]
    assert sorted(ids) == list(range(10, 20))
    assert len(admitted_ids(d)) == 4


# --- properties on random snapshots ---------------------------------------------------------

def _random_snapshot(rng: random.Random, n_projects=6, n_clusters=2, n_admitted=40, n_queued=60) -> Snapshot:
    capacity = {c: Resources(gpu=rng.choice([8, 16, 24]), cpu=64000) for c in range(1, n_clusters + 1)}
    quotas = {}
    for c, cap in capacity.items():
        for p in range(1, n_projects + 1):
            if rng.random() < 0.85:
                g = rng.randint(0, cap.gpu // n_projects)
                limit = rng.choice([g, g * 2, None, g + 3])
                quotas[(p, c)] = ProjectQuota(Resources(gpu=g, cpu=g * 4000), Limit(gpu=limit, cpu=None))
    ids = iter(range(1, 10**6))
    admitted = [
        AdmittedWorkload(next(ids), rng.randint(1, n_projects), rng.randint(1, n_clusters),
                         rng.choice([LOW, MEDIUM, HIGH]), Resources(gpu=rng.randint(0, 3), cpu=rng.randint(0, 4000)),
                         rng.random() < 0.8, NOW - timedelta(seconds=rng.randint(1, 5000)),
                         discovered=rng.random() < 0.1)
        for _ in range(n_admitted)
    ]
    queue = [
        QueuedWorkload(next(ids), rng.randint(1, n_projects), rng.randint(1, n_clusters),
                       rng.choice([LOW, MEDIUM, HIGH]), Resources(gpu=rng.randint(0, 4), cpu=rng.randint(0, 4000)),
                       rng.random() < 0.8, NOW - timedelta(seconds=rng.randint(1, 900)))
        for _ in range(n_queued)
    ]
    policy = {p: rng.choice(["never", "lower_priority"]) for p in range(1, n_projects + 1) if rng.random() < 0.5}
    return Snapshot(NOW, capacity, quotas, admitted, queue, policy, project_names={})


@pytest.mark.parametrize("seed", range(40))
def test_invariants_on_random_snapshots(seed):
    s = _random_snapshot(random.Random(seed))
    d = schedule(s)
    by_id = {w.id: w for w in s.admitted}
    queued = {w.id: w for w in s.queue}
    admitted_now = [queued[x.workload_id] for x in d.admissions]
    victims = [by_id[p.workload_id] for p in d.preemptions]
    # one decision per queued workload; victims are distinct, preemptible, not discovered
    assert sorted(admitted_ids(d) + [w.workload_id for w in d.waiting]) == sorted(queued)
    assert len({v.id for v in victims}) == len(victims)
    assert all(v.preemptible and not v.discovered for v in victims)
    # after applying: usage and free as the rules require for each admitted workload's project
    after = [w for w in s.admitted if w not in victims]
    for w in admitted_now:
        key = (w.project_id, w.cluster_id)
        quota = s.quotas[key]
        used = Resources.total([x.request for x in after if (x.project_id, x.cluster_id) == key]
                               + [x.request for x in admitted_now if (x.project_id, x.cluster_id) == key])
        assert quota.limit.admits(used)
        on_cluster = Resources.total([x.request for x in after if x.cluster_id == w.cluster_id]
                                     + [x.request for x in admitted_now if x.cluster_id == w.cluster_id])
        assert on_cluster.fits_within(s.capacity[w.cluster_id])
    # positions: 1..n per (project, cluster) in queue order
    groups: dict = {}
    for w in sorted(d.waiting, key=lambda w: scheduling.queue_key(queued[w.workload_id])):
        groups.setdefault((queued[w.workload_id].project_id, queued[w.workload_id].cluster_id), []).append(w)
    for ws in groups.values():
        assert [w.position for w in ws] == list(range(1, len(ws) + 1))
        assert {w.queue_length for w in ws} == {len(ws)}
    # every reclaim victim's project was borrowing, every priority victim is of the workload's project
    for p in d.preemptions:
        victim, for_w = by_id[p.workload_id], queued[p.for_workload_id]
        if p.reason.startswith("preempted by higher-priority"):
            assert victim.project_id == for_w.project_id and victim.priority < for_w.priority
        else:
            assert victim.project_id != for_w.project_id


def test_deterministic_whatever_the_input_order():
    s = _random_snapshot(random.Random(7), n_admitted=80, n_queued=120)
    d1 = schedule(s)
    shuffled = Snapshot(s.now, s.capacity, s.quotas, list(reversed(s.admitted)), list(reversed(s.queue)),
                        s.preemption_policy)
    d2 = schedule(shuffled)
    assert admitted_ids(d1) == admitted_ids(d2) and d1.waiting == d2.waiting
    assert sorted(preempted(d1)) == sorted(preempted(d2))


# --- purity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [scheduling, schedule_model, schedule_reasons, schedule_victims])
def test_module_imports_only_the_standard_library_and_the_domain(module):
    tree = ast.parse(Path(module.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    stdlib = {"__future__", "gc", "heapq", "dataclasses", "datetime", "itertools", "operator"}
    assert all(m in stdlib or m.startswith("corral.domain") for m in modules), modules


# --- the optimised pass against a naive reading of the rules ---------------------------------

def _reference(s: Snapshot) -> tuple[list[int], list[tuple[int, int, str]], dict[int, str]]:
    """The rules, written the slow and obvious way: rescan everything for every decision."""
    inf = float("inf")
    vec = lambda r: [r.gpu, r.cpu, r.memory, r.ephemeral_storage]  # noqa: E731
    usage: dict = {}
    free = {c: vec(r) for c, r in s.capacity.items()}
    for x in s.admitted:
        u = usage.setdefault((x.project_id, x.cluster_id), [0] * 4)
        f = free.setdefault(x.cluster_id, [0] * 4)
        for i, v in enumerate(vec(x.request)):
            u[i] += v
            f[i] -= v
    alive = {x.id: x for x in s.admitted if x.preemptible and not x.discovered}
    order_key = lambda v: (v.priority, -v.admitted_at.timestamp(), -v.id)  # noqa: E731
    admitted, preemptions, reasons = [], [], {}
    head_seen, blocked = set(), {}
    for w in sorted(s.queue, key=lambda w: (-w.priority, w.queued_since, w.id)):
        p, c = key = (w.project_id, w.cluster_id)
        if key not in s.quotas:
            reasons[w.id] = "no quota"
            continue
        quota = s.quotas[key]
        g = vec(quota.guaranteed)
        lim = [inf if x is None else x for x in (quota.limit.gpu, quota.limit.cpu, quota.limit.memory,
                                                 quota.limit.ephemeral_storage)]
        bound = lim if w.preemptible else [min(a, b) for a, b in zip(g, lim)]
        cap = vec(s.capacity[c]) if c in s.capacity else [0] * 4
        r = vec(w.request)
        if any(r[i] > bound[i] or r[i] > cap[i] for i in range(4)):
            reasons[w.id] = "never fits"
            continue
        if key in blocked:
            reasons[w.id] = "blocked"
            continue
        u, f = usage.setdefault(key, [0] * 4), free.setdefault(c, [0] * 4)
        tu, tf = list(u), list(f)
        victims, ok = [], True
        over = [i for i in range(4) if u[i] + r[i] > bound[i]]
        if over:
            ok = s.preemption_policy.get(p) != "never"
            own = sorted((v for v in alive.values() if (v.project_id, v.cluster_id) == key
                          and v.priority < w.priority), key=order_key)
            for v in own:
                if not over:
                    break
                vr = vec(v.request)
                if any(vr[i] > 0 for i in over):
                    victims.append(v)
                    tu, tf = [tu[i] - vr[i] for i in range(4)], [tf[i] + vr[i] for i in range(4)]
                    over = [i for i in over if tu[i] + r[i] > bound[i]]
            ok = ok and not over
            if ok:
                for v in own:
                    short = [i for i in range(4) if tf[i] < r[i]]
                    if not short:
                        break
                    vr = vec(v.request)
                    if v not in victims and any(vr[i] > 0 for i in short):
                        victims.append(v)
                        tu, tf = [tu[i] - vr[i] for i in range(4)], [tf[i] + vr[i] for i in range(4)]
        if ok and any(tf[i] < r[i] for i in range(4)):
            ok = all(tu[i] + r[i] <= g[i] for i in range(4))
            if ok:
                tusage: dict = {}
                for v in sorted((v for v in alive.values() if v.cluster_id == c and v.project_id != p),
                                key=order_key):
                    short = [i for i in range(4) if tf[i] < r[i]]
                    if not short:
                        break
                    qkey = (v.project_id, c)
                    uq = tusage.setdefault(v.project_id, list(usage[qkey]))
                    gq = vec(s.quotas[qkey].guaranteed) if qkey in s.quotas else [0] * 4
                    vr = vec(v.request)
                    if any(vr[i] > 0 and uq[i] > gq[i] for i in short):
                        victims.append(v)
                        for i in range(4):
                            uq[i] -= vr[i]
                            tf[i] += vr[i]
                ok = all(tf[i] >= r[i] for i in range(4))
        if ok:
            for v in victims:
                del alive[v.id]
                vu = usage[(v.project_id, c)]
                for i, x in enumerate(vec(v.request)):
                    vu[i] -= x
                    f[i] += x
                preemptions.append((v.id, w.id, "by" if v.project_id == p else "reclaim"))
            for i in range(4):
                u[i] += r[i]
                f[i] -= r[i]
            admitted.append(w.id)
        else:
            reasons[w.id] = "waits"
            if key not in head_seen:
                head_seen.add(key)
                if (s.now - w.queued_since).total_seconds() > s.starvation_after_s:
                    blocked[key] = w.id
    return admitted, preemptions, reasons


def _contended_snapshot(rng: random.Random) -> Snapshot:
    n_projects, n_clusters = rng.randint(2, 8), rng.randint(1, 3)
    capacity = {c: Resources(gpu=rng.randint(4, 32), cpu=rng.randint(8, 64) * 1000, memory=rng.randint(8, 40))
                for c in range(1, n_clusters + 1)}
    quotas = {}
    for c, cap in capacity.items():
        for p in range(1, n_projects + 1):
            if rng.random() < 0.9:
                g = Resources(gpu=rng.randint(0, 2 * cap.gpu // n_projects), cpu=rng.randint(0, cap.cpu // n_projects),
                              memory=rng.randint(0, 2 * cap.memory // n_projects))
                limit = rng.choice([Limit.from_resources(g), Limit(), Limit(gpu=g.gpu * 2, cpu=None),
                                    Limit(gpu=None, cpu=g.cpu * 3, memory=g.memory * 2)])
                quotas[(p, c)] = ProjectQuota(g, limit)
    ids = iter(range(1, 10**6))
    prios = [LOW, MEDIUM, HIGH, 50]
    admitted = []
    for c, cap in capacity.items():  # fill each cluster to about its capacity, mostly by borrowers
        used = 0
        while used < cap.gpu * rng.uniform(0.7, 1.1):
            gpu = rng.randint(0, 3)
            used += gpu
            admitted.append(AdmittedWorkload(
                next(ids), rng.randint(1, n_projects), c, rng.choice(prios),
                Resources(gpu=gpu, cpu=rng.randint(0, 3000), memory=rng.randint(0, 4)), rng.random() < 0.85,
                NOW - timedelta(seconds=rng.choice([10, 20, 30, rng.randint(1, 5000)])),
                discovered=rng.random() < 0.05))
    queue = [
        QueuedWorkload(next(ids), rng.randint(1, n_projects), rng.randint(1, n_clusters), rng.choice(prios),
                       Resources(gpu=rng.randint(0, 4), cpu=rng.randint(0, 4000), memory=rng.randint(0, 5)),
                       rng.random() < 0.8,
                       NOW - timedelta(seconds=rng.choice([5, rng.randint(1, 900)])))
        for _ in range(rng.randint(1, 120))
    ]
    policy = {p: rng.choice(["never", "lower_priority"]) for p in range(1, n_projects + 1) if rng.random() < 0.3}
    return Snapshot(NOW, capacity, quotas, admitted, queue, policy, starvation_after_s=rng.choice([300.0, 1e9]))


@pytest.mark.parametrize("seed", range(300))
def test_same_decisions_as_the_naive_reading(seed):
    s = _contended_snapshot(random.Random(seed))
    d = schedule(s)
    want_admitted, want_preemptions, want_waiting = _reference(s)
    assert admitted_ids(d) == want_admitted
    assert [(p.workload_id, p.for_workload_id, "reclaim" if p.reason.endswith("to reclaim its guaranteed quota") else "by")
            for p in d.preemptions] == want_preemptions
    assert sorted(waits(d)) == sorted(want_waiting)
    blocked = {w for w, why in want_waiting.items() if why == "blocked"}
    assert {w for w, why in waits(d).items() if why.startswith("waiting behind")} == blocked


@pytest.mark.parametrize("seed", range(40))
def test_same_decisions_when_stale_heap_entries_are_compacted_on_every_change(seed, monkeypatch):
    monkeypatch.setattr(schedule_victims, "_HEAP_SLACK", -10**9)
    s = _contended_snapshot(random.Random(1000 + seed))
    d = schedule(s)
    want_admitted, want_preemptions, _ = _reference(s)
    assert admitted_ids(d) == want_admitted
    assert [p.workload_id for p in d.preemptions] == [p[0] for p in want_preemptions]
