"""Fixtures for the Slurm backend's tests: a real Slurm cluster on this host
(``scripts/slurm-test-cluster``, started for the session if it is not running) and
backends whose jobs carry a name prefix of their own, so tests never see each other's.

Missing Slurm packages fail the tests (never skip them): install with
``apt-get install -y --no-install-recommends slurm-wlm slurmctld slurmd slurm-client munge``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.slurm import SlurmBackend, SlurmSite
from corral.backends.slurm.commands import SlurmCommands
from tests.conftest import work_root_for

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "slurm-test-cluster"
STATE = Path(os.environ.get("CORRAL_SLURM_STATE", "/tmp/corral-slurm"))
PACKAGES = "slurm-wlm slurmctld slurmd slurm-client munge"


@dataclass
class SlurmCluster:
    env: dict[str, str]

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(args, input=input, capture_output=True, text=True, env={**os.environ, **self.env},
                                timeout=30, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def sbatch(self, *options: str, script: str = "#!/bin/sh\nsleep 60\n") -> int:
        return int(self.run("sbatch", "--parsable", *options, input=script).strip().split(";")[0])

    def scancel(self, *job_ids: int) -> None:
        if job_ids:
            self.run("scancel", *map(str, job_ids), check=False)

    def jobs(self, prefix: str) -> list[tuple[int, str, str]]:
        """(id, name, state) of every job whose name starts with ``prefix``."""
        out = self.run("squeue", "-h", "-a", "-t", "all", "-o", "%i|%j|%T")
        rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
        return [(int(i), n, s) for i, n, s in rows if n.startswith(prefix)]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = [c for c in ("sbatch", "squeue", "scontrol", "munge") if shutil.which(c) is None]
    missing += [c for c in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd") if not os.path.exists(c)]
    if missing:
        pytest.fail(f"the Slurm tests need a real Slurm ({', '.join(missing)} missing): "
                    f"apt-get install -y --no-install-recommends {PACKAGES}")
    if os.geteuid() != 0:
        pytest.fail("the Slurm tests start slurmd, which runs jobs as their users: run them as root")
    env = {"CORRAL_SLURM_STATE": str(STATE), "SLURM_CONF": str(STATE / "slurm.conf")}
    running = subprocess.run([str(SCRIPT), "status"], env={**os.environ, **env}, capture_output=True,
                             check=False).returncode == 0
    if not running:
        started = subprocess.run([str(SCRIPT), "start"], env={**os.environ, **env}, capture_output=True, text=True,
                                 timeout=120, check=False)
        if started.returncode != 0:
            pytest.fail(f"cannot start the Slurm test cluster: {started.stderr or started.stdout}")
    cluster = SlurmCluster({"SLURM_CONF": env["SLURM_CONF"]})
    yield cluster
    if not running:
        subprocess.run([str(SCRIPT), "stop"], env={**os.environ, **env}, capture_output=True, check=False)


@pytest.fixture
def make_slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Callable[..., SlurmBackend]]:
    """Builds SlurmBackends on this test's state directory (a second one: the agent
    restarted); their jobs are named ``t<random>-c<component id>`` and cancelled after."""
    prefix = f"t{uuid.uuid4().hex[:8]}-c"
    made: list[SlurmBackend] = []

    def make(state: str = "slurm", work: str | None = None, **site: object) -> SlurmBackend:
        """``state``: the state directory's name; ``work``: the work area's (default: the same)."""
        backend = SlurmBackend(tmp_path / state, site=SlurmSite(job_prefix=prefix, **site),  # type: ignore[arg-type]
                               work_root=work_root_for(tmp_path / (work or state)), slurm_env=dict(slurm_cluster.env),
                               poll_interval_s=0.1)
        made.append(backend)
        return backend

    make.prefix = prefix  # type: ignore[attr-defined]
    yield make
    slurm_cluster.scancel(*(job_id for job_id, _, state in slurm_cluster.jobs(prefix)))
    for backend in made:
        try:
            backend.close()
        except OSError:
            pass


@pytest.fixture
def blocker(slurm_cluster: SlurmCluster) -> Iterator[Callable[[], int]]:
    """Submits a job outside Corral that holds every GPU of every node until cancelled."""
    ids: list[int] = []

    def block() -> int:
        job_id = slurm_cluster.sbatch("-J", f"blocker-{uuid.uuid4().hex[:6]}", "-N4", "--gres=gpu:8", "-c1",
                                      "--mem=100M", "-o", "/dev/null")
        ids.append(job_id)
        wait_for(lambda: any(s == "RUNNING" for i, _, s in slurm_cluster.jobs("blocker-") if i == job_id))
        return job_id

    yield block
    slurm_cluster.scancel(*ids)


def wait_for(condition: Callable[[], object], timeout: float = 20.0, poll: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(poll)


def job(component_id: int, command: str, *, project: str = "proj", gpu: int = 0, cpu: int = 1000,
        memory: int = 256 << 20, **extra: object) -> Launch:
    return Launch(component_id=component_id, workload_id=component_id * 10, project=project, workload_type="custom",
                  native_name=f"{project}-w{component_id * 10}-job", command=("/bin/sh", "-c", command), gpu=gpu,
                  cpu_millicores=cpu, memory_bytes=memory, **extra)  # type: ignore[arg-type]
