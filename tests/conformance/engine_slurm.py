"""The Slurm backend against real Slurm daemons (``scripts/slurm-test-cluster``, started
for the session when not running): each component is a batch job; jobs of this test carry
a name prefix of their own and are cancelled after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from corral.backends.base import Backend
from tests.conformance.engines import Engine, Outsider


class SlurmEngine(Engine):
    name = "slurm"
    timeout = 30.0
    # Slurm counts time limits in whole minutes and looks for jobs past theirs every 30 s:
    # a TIMEOUT takes 1-1.5 minutes. tests/integration/backends/test_slurm_time_limit.py
    # checks a real job's TimeLimit, tests/unit/test_slurm_time_limit.py the TIMEOUT's reason.
    time_limit_s = None

    def __init__(self, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
        super().__init__(request, tmp_path)
        self.cluster = request.getfixturevalue("slurm_cluster")
        self.make = request.getfixturevalue("make_slurm")  # cancels the test's jobs after it
        self.submitted: list[int] = []

    def backend(self) -> Backend:
        return self.make()  # the same state directory each time: a second one is the agent restarted

    @contextmanager
    def outsider(self) -> Iterator[Outsider]:
        account = f"acct{uuid.uuid4().hex[:6]}"
        job_id = self.cluster.sbatch("-J", f"theirs-{uuid.uuid4().hex[:6]}", f"--account={account}",
                                     "--gres=gpu:1", "-c", "1", "--mem=100M", "-o", "/dev/null")
        self.submitted.append(job_id)
        try:
            yield Outsider(f"slurm-job-{job_id}", "job", account)
        finally:
            self.cluster.scancel(job_id)

    def cleanup(self) -> None:
        self.cluster.scancel(*self.submitted)
