"""A request must fit the cluster's nodes, not only its total (rule 3 of domain.scheduling,
``domain.node_fit``): a job asking 8 GPUs on a cluster of two 4-GPU nodes, or 3 nodes of a
2-node cluster, waits with a reason instead of being admitted to pend in the engine for ever."""

from __future__ import annotations

from dataclasses import replace

from corral.domain.node_fit import node_shortfall, unit_of
from corral.domain.resources import Resources
from corral.domain.scheduling import Snapshot, schedule
from corral.domain.workloads import WorkloadSpec, placement_units
from pydantic import TypeAdapter
from tests.unit.test_scheduling import C1, C2, NAMES, NOW, VISION, q, quota

GIB = 2**30
FOUR_GPU = (4, 32_000, 256 * GIB, 0)
TWO_NODES = (FOUR_GPU, FOUR_GPU)


def test_one_part_must_fit_one_node():
    assert node_shortfall((4, 8000, 64 * GIB, 0), 1, False, TWO_NODES) is None
    assert node_shortfall((8, 0, 0, 0), 1, False, TWO_NODES) == (
        "needs gpu 8 on one node; no node of the cluster has that much (it has 2 nodes)")
    # a dimension no node has enough of, with GPUs that would fit
    assert "memory 300Gi" in node_shortfall((1, 0, 300 * GIB, 0), 1, False, TWO_NODES)


def test_a_multi_node_job_needs_that_many_nodes_each_holding_a_part():
    assert node_shortfall((8, 0, 0, 0), 2, True, TWO_NODES) is None  # 4 on each
    assert node_shortfall((12, 0, 0, 0), 3, True, TWO_NODES) == (
        "needs 3 nodes with gpu 4 each; the cluster has 2 such (of 2 nodes)")
    small = (2, 32_000, 256 * GIB, 0)
    assert node_shortfall((8, 0, 0, 0), 2, True, (FOUR_GPU, small)) == (
        "needs 2 nodes with gpu 4 each; the cluster has 1 such (of 2 nodes)")


def test_replicas_may_share_a_node():
    one_big = ((8, 64_000, 512 * GIB, 0),)
    assert node_shortfall((8, 0, 0, 0), 4, False, one_big) is None  # 4 replicas of 2 on one node
    assert node_shortfall((10, 0, 0, 0), 5, False, TWO_NODES) == (
        "5 replicas of gpu 2 do not fit on the cluster's nodes (room for 4)")
    assert node_shortfall((10, 0, 0, 0), 2, False, TWO_NODES) == (
        "each replica needs gpu 5; no node of the cluster has that much (it has 2 nodes)")


def test_no_nodes_reported_and_empty_requests_are_not_checked():
    assert node_shortfall((64, 0, 0, 0), 1, False, ()) is None
    assert node_shortfall((0, 0, 0, 0), 3, True, TWO_NODES) is not None  # 3 nodes asked, 2 exist
    assert node_shortfall((0, 0, 0, 0), 2, True, TWO_NODES) is None
    assert unit_of((9, 1000, 3, 0), 2) == (5, 500, 2, 0)  # rounded up


def test_how_specs_split_their_request():
    spec = TypeAdapter(WorkloadSpec).validate_python
    assert placement_units(spec({"type": "training", "name": "t", "project": "p", "command": "x", "dataset": "d", "nodes": 3})) == (3, True)
    assert placement_units(spec({"type": "training", "name": "t", "project": "p", "command": "x", "dataset": "d"})) == (1, False)
    assert placement_units(spec({"type": "inference", "name": "i", "project": "p", "model": "m", "replicas": 2})) == (2, False)


def test_admission_passes_over_what_no_node_holds_and_places_where_nodes_do():
    quotas = {(VISION, C1): quota(16), (VISION, C2): quota(16)}
    capacities = {C1: Resources(gpu=8), C2: Resources(gpu=8)}
    big = replace(q(10, gpu=8, age=20), units=1)  # 8 on one node: C1 has two 4-GPU nodes
    behind = q(11, gpu=2, age=10)
    d = schedule(Snapshot(now=NOW, capacity=capacities, quotas=quotas, admitted=[], queue=[big, behind],
                          project_names=NAMES, cluster_names={C1: "a", C2: "b"},
                          nodes={C1: ((4, 0, 0, 0), (4, 0, 0, 0)), C2: ((8, 0, 0, 0),)}))
    assert [x.workload_id for x in d.admissions] == [11]  # not blocked by a workload that can never fit
    (waiting,) = d.waiting
    assert waiting.workload_id == 10 and waiting.cause == "never_fits"
    assert waiting.reason.startswith("needs gpu 8 on one node; no node of the cluster has that much")

    # Named no cluster: placed on b, whose one node holds it, though a has as much free in all.
    d = schedule(Snapshot(now=NOW, capacity=capacities, quotas=quotas, admitted=[],
                          queue=[replace(big, clusters=(C1, C2))], project_names=NAMES,
                          cluster_names={C1: "a", C2: "b"},
                          nodes={C1: ((4, 0, 0, 0), (4, 0, 0, 0)), C2: ((8, 0, 0, 0),)}))
    assert [(x.workload_id, x.cluster_id) for x in d.admissions] == [(10, C2)]

    # A 3-node job on a 2-node cluster, wherever it may go.
    three = replace(q(12, gpu=6, age=5), units=3, spread=True, clusters=(C1, C2))
    d = schedule(Snapshot(now=NOW, capacity=capacities, quotas=quotas, admitted=[], queue=[three],
                          project_names=NAMES, cluster_names={C1: "a", C2: "b"},
                          nodes={C1: ((4, 0, 0, 0), (4, 0, 0, 0)), C2: ((8, 0, 0, 0),)}))
    assert d.admissions == []
    assert d.waiting[0].reason == ("cluster a: needs 3 nodes with gpu 2 each; the cluster has 2 such (of 2 nodes); "
                                   "cluster b: needs 3 nodes with gpu 2 each; the cluster has 1 such (of 1 node)")
