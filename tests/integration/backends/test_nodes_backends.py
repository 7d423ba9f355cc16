"""A training job spanning nodes (``Launch.nodes``): refused by the local cluster (one host),
run with srun on that many nodes of a real Slurm cluster, one node's share on each."""

from __future__ import annotations

import re

from corral.backends.base import Launch
from corral.backends.local import LocalBackend
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from .slurm_support import make_slurm, slurm_cluster  # noqa: F401 - fixtures


def _span(nodes: int, **kw) -> Launch:  # type: ignore[no-untyped-def]
    show = 'echo "rank=$NODE_RANK of $NNODES on $SLURMD_NODENAME cpus=$SLURM_CPUS_PER_TASK"'
    return Launch(1, 10, "train", "training", "train-w10-job", command=("/bin/sh", "-c", show), nodes=nodes, **kw)


def test_the_local_cluster_refuses_a_job_spanning_nodes(backend: LocalBackend, watcher: Watcher):
    backend.start(_span(2))
    failed = watcher.wait(1, S.FAILED)
    assert failed.reason == ("asks for 2 nodes; the local cluster is one host: run it on a slurm or kubernetes "
                             "cluster, or without nodes")
    assert backend.logs(1) == ""  # nothing ran


def test_slurm_runs_a_job_on_the_nodes_it_asks_for(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(_span(3, cpu_millicores=3000, memory_bytes=384 << 20))  # no GPU: nodes come from the spec alone
    detail = backend.inspect(1)["job"]
    assert detail["NumNodes"].split("-")[0] == "3", detail
    watcher.wait(1, S.COMPLETED, timeout=30)
    lines = sorted(backend.logs(1).splitlines())
    found = [re.fullmatch(r"rank=(\d) of 3 on (n\d) cpus=1", line) for line in lines]
    assert len(lines) == 3 and all(found), lines
    assert [m.group(1) for m in found] == ["0", "1", "2"]  # type: ignore[union-attr]
    assert len({m.group(2) for m in found}) == 3  # type: ignore[union-attr]
