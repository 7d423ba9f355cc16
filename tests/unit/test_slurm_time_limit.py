"""A workload's time limit on Slurm: ``--time`` on the job, and a TIMEOUT end worded as on
every cluster (pure functions; tests/integration/backends/test_slurm_time_limit.py runs a job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.slurm.ended import timeout_reason
from corral.backends.slurm.jobs import JobRecord
from corral.backends.slurm.script import SlurmSite, sbatch_options, slurm_time
from corral.backends.slurm.states import map_state
from corral.domain.statuses import ComponentStatus as S


def _launch(**kw) -> Launch:  # type: ignore[no-untyped-def]
    return Launch(1, 2, "p", "training", "p-w2-job", command=("python", "train.py"), **kw)


@pytest.mark.parametrize(("seconds", "text"), [(60, "0-00:01:00"), (90, "0-00:01:30"), (7200, "0-02:00:00"),
                                               (129600 + 61, "1-12:01:01"), (1, "0-00:00:01")])
def test_slurm_time(seconds: int, text: str):
    assert slurm_time(seconds) == text


def test_the_workloads_limit_is_the_jobs_time_and_wins_over_the_sites_default():
    options = sbatch_options(_launch(time_limit_s=5400), SlurmSite(time_limit="10"), Path("/w/1"), None)
    assert [o for o in options if o.startswith("--time")] == ["--time=0-01:30:00"]
    options = sbatch_options(_launch(), SlurmSite(time_limit="10"), Path("/w/1"), None)
    assert [o for o in options if o.startswith("--time")] == ["--time=10"]
    assert not [o for o in sbatch_options(_launch(), SlurmSite(), Path("/w/1"), None) if o.startswith("--time")]


def test_a_timeout_end_says_which_limit_was_reached():
    limited = JobRecord.for_launch(_launch(time_limit_s=7200), None)
    limited.job_id = 12
    status, text = map_state("TIMEOUT", "TimeLimit", -15, job_id=12)
    assert status is S.FAILED
    assert timeout_reason(limited, "TIMEOUT", text) == "time limit of 2h reached (Slurm job 12 ended in state TIMEOUT)"
    assert timeout_reason(limited, "FAILED", "Slurm job 12 failed") == "Slurm job 12 failed"
    unlimited = JobRecord.for_launch(_launch(), None)  # the site's or partition's limit: Slurm's words
    assert timeout_reason(unlimited, "TIMEOUT", text) == text and text.startswith("Slurm job 12 reached its time limit")
    assert JobRecord(**{k: v for k, v in vars(limited).items()}).time_limit_reason == "time limit of 2h reached"
