"""Whether a request can ever be held by a cluster's nodes, not only by its total capacity.

A cluster of two 4-GPU nodes has 8 GPUs, yet no node can hold a job that asks for 8 on one
node; a job spanning 3 nodes never starts on a cluster of 2. A workload's request is split
into ``units`` equal parts (``domain.workloads.placement_units``): a multi-node job one
part per node, each on a node of its own (``spread``); a service one part per replica,
which may share a node. Admission (rule 3 of ``domain.scheduling``) keeps such a workload
waiting with the reason this returns, instead of admitting what the engine would hold
pending for ever.

The check is static (against what each node has, not what is free on it): which node
each part lands on is the engine's business (Slurm, Kubernetes).
"""

from __future__ import annotations

from corral.domain.schedule_reasons import _amounts

Amounts = tuple[int, int, int, int]  # gpu, cpu millicores, memory bytes, ephemeral storage bytes
_DIMS = (0, 1, 2, 3)


def unit_of(request: Amounts, units: int) -> Amounts:
    """One part of ``request`` split into ``units`` (rounded up)."""
    if units <= 1:
        return request
    return tuple(-(-x // units) for x in request)  # type: ignore[return-value]


def node_shortfall(request: Amounts, units: int, spread: bool, nodes: tuple[Amounts, ...]) -> str | None:
    """None when ``nodes`` can hold the request's parts; else why not, in words. An empty
    ``nodes`` (a cluster that reports no nodes) is not checked."""
    if not nodes:
        return None
    unit = unit_of(request, units)
    need = [i for i in _DIMS if unit[i] > 0]
    fitting = [n for n in nodes if all(unit[i] <= n[i] for i in need)]
    where = "1 node" if len(nodes) == 1 else f"{len(nodes)} nodes"
    if spread and units > 1:
        if len(fitting) >= units:
            return None
        return (f"needs {units} nodes with {_amounts(need, unit)} each; the cluster has {len(fitting)} such "
                f"(of {where})")
    if not fitting:
        what = f"each replica needs {_amounts(need, unit)}" if units > 1 else f"needs {_amounts(need, unit)} on one node"
        return f"{what}; no node of the cluster has that much (it has {where})"
    if units > 1 and need:
        # Replicas may share a node: how many parts the fitting nodes can hold in all.
        room = sum(min(n[i] // unit[i] for i in need) for n in fitting)
        if room < units:
            return (f"{units} replicas of {_amounts(need, unit)} do not fit on the cluster's nodes "
                    f"(room for {room})")
    return None
