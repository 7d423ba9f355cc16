"""What running Slurm jobs use, from ``sstat`` (``Backend.usage`` on Slurm).

One ``sstat -a`` call per sample lists every running step of the jobs asked about, each
with ``TresUsageInTot`` (CPU time so far, resident memory now, and, where the site gathers
GPU accounting through NVML, ``gres/gpumem`` and ``gres/gpuutil``). A component's figures
are its job's steps added up: the batch step and every ``srun`` step, on every node.

It needs the site to gather job accounting (``JobAcctGatherType=jobacct_gather/linux`` or
``cgroup``; slurmdbd is not needed). Without it sstat's fields are empty and the backend
reports no samples: the charts say "no samples", nothing breaks.

sstat asks each job's node in turn (about 12 ms a job here: 0.4 s for 32 jobs), so one
sample asks about ``MAX_JOBS_PER_SAMPLE`` jobs at most, those asked longest ago first: with
more running, each job's samples come further apart (1,000 jobs: every 100 s at the agent's
10 s). The agent samples in a thread of its own, so no observation waits for sstat.

CPU is Slurm's cumulative CPU time, so a sample's ``cpu_millicores`` is the CPU time used
between two samples over the wall time between them (the first: since the job started),
as the local backend reports it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.backends.base import Usage

SSTAT_FIELDS = "JobID,TresUsageInTot,TresUsageInAve"
MAX_JOBS_PER_SAMPLE = 100
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_CPU_TIME = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")  # [D-][HH:]MM:SS[.fff]


def cpu_seconds(text: str) -> float | None:
    """Slurm's CPU time ("00:00:07", "1-02:03:04", "05:03.120") in seconds."""
    match = _CPU_TIME.match(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def size_bytes(text: str) -> int | None:
    """Slurm's sizes ("323788K", "1.50G", "0") in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text.strip())
    return int(float(match.group(1)) * _UNITS[match.group(2)]) if match else None


def tres(text: str) -> dict[str, str]:
    """``cpu=00:00:07,mem=323788K,gres/gpuutil=40`` as a dict (empty for "" or "N/A")."""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


@dataclass
class JobTotals:
    """One job's running steps, added up. None: no step reported it."""

    cpu_s: float | None = None
    memory_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    gpu_utilization: float | None = None  # percent: the mean of its steps' per-task means
    _gpu_steps: int = 0

    def add(self, total: dict[str, str], average: dict[str, str]) -> None:
        cpu = cpu_seconds(total["cpu"]) if "cpu" in total else None
        if cpu is not None:
            self.cpu_s = (self.cpu_s or 0.0) + cpu
        memory = size_bytes(total["mem"]) if "mem" in total else None
        if memory is not None:
            self.memory_bytes = (self.memory_bytes or 0) + memory
        gpu_memory = size_bytes(total["gres/gpumem"]) if "gres/gpumem" in total else None
        if gpu_memory is not None:
            self.gpu_memory_bytes = (self.gpu_memory_bytes or 0) + gpu_memory
        try:
            utilization = float(average["gres/gpuutil"]) if "gres/gpuutil" in average else None
        except ValueError:
            utilization = None
        if utilization is not None:
            steps = self._gpu_steps
            self.gpu_utilization = ((self.gpu_utilization or 0.0) * steps + utilization) / (steps + 1)
            self._gpu_steps = steps + 1


def parse_sstat(text: str) -> dict[int, JobTotals]:
    """``sstat -a -n -P -o JobID,TresUsageInTot,TresUsageInAve`` output, by job id."""
    jobs: dict[int, JobTotals] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 3:
            continue
        job = fields[0].split(".", 1)[0]
        if not job.isdigit():
            continue
        jobs.setdefault(int(job), JobTotals()).add(tres(fields[1]), tres(fields[2]))
    return jobs


@dataclass(frozen=True, slots=True)
class Running:
    component_id: int
    job_id: int
    started_at: datetime  # when Slurm started the job (the first sample's CPU is since then)


class UsageSampler:
    """Turns successive sstat readings into samples (CPU as a rate between readings)."""

    def __init__(self, max_jobs: int = MAX_JOBS_PER_SAMPLE) -> None:
        self.max_jobs = max_jobs
        self._last_cpu: dict[int, tuple[float, datetime]] = {}  # component -> (CPU s, when)
        self._asked: dict[int, int] = {}  # component -> the sample that last asked about it
        self._samples = 0
        self._lock = threading.Lock()

    def due(self, running: list[Running]) -> list[Running]:
        """The jobs to ask about this time: at most ``max_jobs``, those asked longest ago
        (or never) first."""
        with self._lock:
            self._samples += 1
            chosen = sorted(running, key=lambda item: self._asked.get(item.component_id, 0))[:self.max_jobs]
            for item in chosen:
                self._asked[item.component_id] = self._samples
            return chosen

    def samples(self, running: list[Running], totals: dict[int, JobTotals], at: datetime | None = None,
                still_running: set[int] | None = None) -> list[Usage]:
        """Samples of ``running`` from sstat's ``totals``; what is remembered of components
        no longer in ``still_running`` (default: ``running``) is forgotten."""
        at = at or datetime.now(UTC)
        out = []
        with self._lock:
            for item in running:
                job = totals.get(item.job_id)
                if job is None or (job.cpu_s is None and job.memory_bytes is None):
                    continue  # no step running yet, or the site gathers no accounting
                millicores = None
                if job.cpu_s is not None:
                    before_s, before_at = self._last_cpu.get(item.component_id, (0.0, item.started_at))
                    wall = (at - before_at).total_seconds()
                    if wall > 0 and job.cpu_s >= before_s:
                        millicores = round((job.cpu_s - before_s) / wall * 1000)
                    self._last_cpu[item.component_id] = (job.cpu_s, at)
                out.append(Usage(item.component_id, at, millicores, job.memory_bytes, job.gpu_utilization,
                                 job.gpu_memory_bytes))
            keep = {item.component_id for item in running} if still_running is None else still_running
            for component_id in [c for c in self._last_cpu if c not in keep]:
                del self._last_cpu[component_id]
            for component_id in [c for c in self._asked if c not in keep]:
                del self._asked[component_id]
        return out
