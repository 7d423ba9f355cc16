"""A workload's time limit on a real Slurm cluster: the job carries it as its TimeLimit
(Slurm counts minutes: 90 s is 2 minutes). The TIMEOUT end itself takes Slurm a minute or
more to reach, so its wording is tested on Slurm's own state text in
tests/unit/test_slurm_time_limit.py."""

from __future__ import annotations

from corral.backends.slurm.states import parse_kv
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from .slurm_support import job, make_slurm, slurm_cluster  # noqa: F401 - fixtures


def test_the_job_runs_under_the_workloads_time_limit(make_slurm, slurm_cluster):
    backend = make_slurm(time_limit="30")  # the site's default, which the workload's limit replaces
    watcher = Watcher(backend)
    backend.start(job(1, "sleep 300", time_limit_s=90))
    backend.start(job(2, "sleep 300"))
    running = watcher.wait(1, S.RUNNING)
    assert running.reason.endswith(", time limit 2:00"), running.reason
    assert watcher.wait(2, S.RUNNING).reason.endswith(", time limit 30:00")
    detail = parse_kv(slurm_cluster.run("scontrol", "show", "job", "-o", str(backend._jobs[1].job_id)))
    assert detail["TimeLimit"] == "00:02:00"
    assert backend._jobs[1].time_limit_reason == "time limit of 1m30s reached"
    for cid in (1, 2):
        backend.stop(cid, grace_s=0)
        watcher.wait(cid, S.DELETED)
