"""Placement at admission (rule 10 of domain.scheduling, quotas.md "Placement"): a workload
that named no cluster is placed where it fits now, preferring its project's guarantee, then
the most free capacity; it may preempt where it could; else it waits on every cluster."""

from __future__ import annotations

from dataclasses import replace

from corral.domain.resources import Limit, Resources
from corral.domain.scheduling import ProjectQuota, Snapshot, schedule
from tests.unit.test_scheduling import C1, C2, HIGH, NAMES, NLP, NOW, VISION, a, q, quota

CLUSTER_NAMES = {C1: "a", C2: "b"}


def anywhere(w, *clusters):
    return replace(w, clusters=clusters or (C1, C2))


def decide(quotas, queue, admitted=(), capacities=None, policy=None):
    return schedule(Snapshot(
        now=NOW, capacity=capacities or {C1: Resources(gpu=8), C2: Resources(gpu=8)}, quotas=quotas,
        admitted=list(admitted), queue=list(queue), preemption_policy=policy or {}, project_names=NAMES,
        cluster_names=CLUSTER_NAMES))


def placed(d):
    return {x.workload_id: x.cluster_id for x in d.admissions}


def test_placed_on_the_cluster_where_its_project_has_room_now():
    quotas = {(VISION, C1): quota(4), (VISION, C2): quota(4)}
    d = decide(quotas, [anywhere(q(10, gpu=4))], admitted=[a(1, gpu=4, cluster=C1)])
    assert placed(d) == {10: C2}


def test_a_named_cluster_is_never_left():
    quotas = {(VISION, C1): quota(4), (VISION, C2): quota(4)}
    d = decide(quotas, [q(10, gpu=4, cluster=C1)], admitted=[a(1, gpu=4, cluster=C1)])
    assert placed(d) == {} and [w.workload_id for w in d.waiting] == [10]


def test_within_the_guarantee_is_preferred_to_borrowing_even_with_less_free_capacity():
    quotas = {(VISION, C1): quota(0, None), (VISION, C2): quota(4)}
    capacities = {C1: Resources(gpu=16), C2: Resources(gpu=4)}
    d = decide(quotas, [anywhere(q(10, gpu=2))], capacities=capacities)
    assert placed(d) == {10: C2}


def test_then_the_cluster_with_the_most_free_capacity():
    quotas = {(VISION, C1): quota(8), (VISION, C2): quota(8), (NLP, C1): quota(8)}
    d = decide(quotas, [anywhere(q(10, gpu=2)), anywhere(q(11, gpu=2, age=5))],
               admitted=[a(1, project=NLP, gpu=5, cluster=C1)], capacities={C1: Resources(gpu=16), C2: Resources(gpu=8)})
    # a: 11 free, b: 8 free -> a; then a: 9 free, b: 8 free -> a again
    assert placed(d) == {10: C1, 11: C1}


def test_a_workload_that_fits_nowhere_waits_with_a_reason_for_every_cluster():
    quotas = {(VISION, C1): quota(4), (VISION, C2): quota(8)}
    found = a(2, project=NLP, gpu=6, cluster=C2, discovered=True)  # never a victim
    d = decide(quotas, [anywhere(q(10, gpu=4))], admitted=[a(1, gpu=4, cluster=C1), found])
    [waiting] = d.waiting
    assert waiting.reason == (
        "cluster a: waiting for quota: gpu 4/4 in use in project vision (limit 4), 4 requested; "
        "cluster b: waiting for cluster capacity: gpu 2 free, 4 requested (not enough borrowed capacity to reclaim)")
    assert (waiting.position, waiting.queue_length) == (1, 1)


def test_where_it_fits_nowhere_now_it_may_preempt():
    # b is full of nlp's borrowed GPUs; vision's guarantee on b lets it reclaim them.
    quotas = {(VISION, C1): quota(2), (VISION, C2): quota(4), (NLP, C2): quota(4, None)}
    d = decide(quotas, [anywhere(q(10, gpu=4))], admitted=[a(1, project=NLP, gpu=8, cluster=C2)])
    assert placed(d) == {10: C2}
    assert [(p.workload_id, p.for_workload_id) for p in d.preemptions] == [(1, 10)]


def test_priority_order_holds_across_clusters():
    quotas = {(VISION, C1): quota(4), (VISION, C2): quota(4)}
    low = anywhere(q(10, gpu=4, age=60))
    high = anywhere(q(11, gpu=4, prio=HIGH, age=1))
    d = decide(quotas, [low, high], capacities={C1: Resources(gpu=4), C2: Resources(gpu=8)})
    assert placed(d) == {11: C2, 10: C1}  # the first decided takes the most free capacity


def test_unbounded_limit_counts_as_fitting():
    quotas = {(VISION, C1): ProjectQuota(Resources(gpu=1), Limit()), (VISION, C2): quota(0)}
    d = decide(quotas, [anywhere(q(10, gpu=3))])
    assert placed(d) == {10: C1}
