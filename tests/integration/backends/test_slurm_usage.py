"""Use over time on real Slurm daemons (scripts/slurm-test-cluster gathers job accounting
with jobacct_gather/linux every 5 s): a running job's CPU and memory come from ``sstat``,
and a job that is over, or still waiting, reports nothing."""

from __future__ import annotations

import time

from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from .test_local_usage import BURN  # a core burnt in a child process, 200 MiB held
from .slurm_support import job, make_slurm, slurm_cluster  # noqa: F401 - fixtures

def test_a_running_slurm_job_reports_its_cpu_and_memory_and_an_ended_one_nothing(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(job(1, f"exec python3 -c '{BURN}'", cpu=2000, memory=1 << 30))
    backend.start(job(2, "true"))
    watcher.wait(1, S.RUNNING, timeout=30)
    watcher.wait(2, S.COMPLETED, timeout=30)
    deadline = time.monotonic() + 30
    while not (first := backend.usage()) or first[0].memory_bytes < 200 << 20:
        assert time.monotonic() < deadline, f"no sample of the running job: {first}"  # sstat sees it within 5 s
        time.sleep(1)
    assert [u.component_id for u in first] == [1]  # the finished one reports nothing
    time.sleep(6.5)  # past the next accounting gather (every 5 s)
    [burn] = backend.usage()
    assert burn.component_id == 1
    # A busy loop gets at most a core (two cores on this host, shared with the tests):
    # what Slurm counted over these 6.5 s, as a rate.
    assert burn.cpu_millicores is not None and 250 <= burn.cpu_millicores <= 1300, burn
    assert burn.memory_bytes is not None and 200 << 20 <= burn.memory_bytes <= 600 << 20, burn
    assert burn.gpu_utilization is None and burn.gpu_memory_bytes is None  # no NVML here
    backend.stop(1)
    watcher.wait(1, lambda o: o.status in (S.DELETED, S.FAILED), timeout=30)
    assert backend.usage() == []
