"""The Slurm commands the backend runs, and what it reads from their output.

Why the CLI and not slurmrestd: the commands are on every login node of every Slurm site
(slurmrestd is often not deployed, needs JWT or a local socket, and its API version
changes with each release: v0.0.36-38 on 22.05, v0.0.39+ on 23.x), they authenticate
with munge like any user's ``sbatch``, and root may submit for another user
(``sbatch --uid``). Their formatted output (``squeue -o``, ``scontrol show ... -o``,
``sacct -P``) is stable from 20.x to 24.x, while ``--json`` is partial on 22.05 and
changed shape in 23.x; so formatted output it is.

One ``squeue`` call per poll lists the jobs waiting or running (not the finished ones
the controller keeps for MinJobAge, which would make every poll several times slower);
a job that left that list ended: its state and exit code come from one ``scontrol show
job`` while the controller still knows it, else from ``sacct -c`` (the jobcomp file,
which needs no slurmdbd) or ``sacct`` (with slurmdbd).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.backends.base import BackendError, BackendUnavailable
from corral.backends.slurm.states import parse_kv
from corral.backends.slurm.usage import SSTAT_FIELDS

SEP = "\x1f"  # between squeue's fields: no job name or comment holds it
# id, name, state, reason, user, account, partition, batch host, submit, start, end, time limit,
# comment (free text: last)
SQUEUE_FORMAT = SEP.join(["%i", "%j", "%T", "%r", "%u", "%a", "%P", "%B", "%V", "%S", "%e", "%l", "%k"])
SACCT_FIELDS = "JobID,JobName,State,ExitCode,Start,End"
SCANCEL_BATCH = 1000  # job ids per scancel call (one call for a bulk delete)
_UNREACHABLE = ("contact slurm controller", "timed out", "Connection refused", "Unable to establish")


class SlurmUnavailable(BackendUnavailable):
    """A Slurm command could not run or reach the controller (see ``BackendUnavailable``:
    the agent's step is tried again, so nothing is lost while slurmctld is away)."""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as ``squeue`` lists it."""

    job_id: int
    name: str
    state: str
    reason: str
    user: str
    account: str
    partition: str
    batch_host: str
    submitted: datetime | None
    started: datetime | None
    ended: datetime | None
    time_limit: str  # "1:00:00", "2-00:00:00", "UNLIMITED"
    comment: str


def parse_time(text: str | None) -> datetime | None:
    """Slurm prints local time without a zone ("2026-12-06T12:03:49"); None for N/A, Unknown, None."""
    if not text or not text[:1].isdigit():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_squeue(text: str, known: dict[str, JobRow] | None = None) -> list[JobRow]:
    """``known``: rows parsed before, by their line; a line seen last time (most are, from
    one poll to the next) is not parsed again. It is updated to this text's lines."""
    rows, seen = [], {}
    for line in text.splitlines():
        if known is not None and line in known:
            rows.append(known[line])
            seen[line] = known[line]
            continue
        parts = line.split(SEP)
        if len(parts) < 13 or not parts[0].strip().isdigit():
            continue  # array or het jobs ("12_3", "12+1") are not Corral's and not parsed here
        p = [x.strip() for x in parts[:12]] + [SEP.join(parts[12:]).strip()]
        rows.append(JobRow(int(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], p[7], parse_time(p[8]),
                           parse_time(p[9]), parse_time(p[10]), p[11], p[12]))
        seen[line] = rows[-1]
    if known is not None:
        known.clear()
        known.update(seen)
    return rows


class SlurmCommands:
    """Runs Slurm's commands (``env`` adds to the environment, e.g. ``SLURM_CONF``).

    Backing off: once a command finds the controller unreachable (or cannot run at all),
    no command runs until ``backoff_s`` has passed (1 s, doubling up to ``max_backoff_s``);
    meanwhile every call fails at once with the same ``SlurmUnavailable``. So an agent
    polling every 0.1 s does not start a command (each waiting up to Slurm's
    MessageTimeout) per poll while slurmctld is away; the first command that gets an
    answer ends the backing off. ``runs`` counts the commands started."""

    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 30.0, bin_dir: str = "",
                 max_backoff_s: float = 30.0) -> None:
        self.env = {**os.environ, **(env or {})}
        self.timeout_s = timeout_s
        self.bin_dir = bin_dir
        self.max_backoff_s = max_backoff_s
        self.backoff_s = 0.0  # the current wait between tries (0: the controller answers)
        self.runs = 0
        self._retry_at = 0.0
        self._failure: SlurmUnavailable | None = None
        self._lock = threading.Lock()
        self._polled: dict[str, JobRow] = {}  # the last poll's rows, by their line (parse_squeue)

    def _away(self, message: str) -> SlurmUnavailable:
        """The controller did not answer: back off (see the class docstring)."""
        with self._lock:
            self.backoff_s = min(self.max_backoff_s, self.backoff_s * 2) if self.backoff_s else min(
                1.0, self.max_backoff_s)
            self._retry_at = time.monotonic() + self.backoff_s
            self._failure = SlurmUnavailable(message)
            return self._failure

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        with self._lock:
            if self._failure is not None and time.monotonic() < self._retry_at:
                raise self._failure  # the same words each time: a component's reason does not churn
            self.runs += 1
        command = [os.path.join(self.bin_dir, args[0]) if self.bin_dir else args[0], *args[1:]]
        try:
            result = subprocess.run(command, input=input, capture_output=True, text=True, env=self.env,
                                    timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self._away(f"{args[0]}: {exc}") from exc
        if result.returncode != 0 and any(sign in result.stderr for sign in _UNREACHABLE):
            lines = result.stderr.strip().splitlines()
            raise self._away(f"{args[0]}: {lines[-1]}")
        with self._lock:
            self.backoff_s, self._failure = 0.0, None
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise SlurmUnavailable(f"{args[0]}: {message[-1] if message else f'exit code {result.returncode}'}")
        return result

    # --- jobs ---------------------------------------------------------------------------

    def squeue(self, *, name: str | None = None, finished: bool = False) -> list[JobRow]:
        """The jobs waiting or running (``finished``: also those that ended less than
        MinJobAge ago), or only those named ``name``."""
        args = ["squeue", "-h", "-a", *(["-t", "all"] if finished else []), "-o", SQUEUE_FORMAT]
        if name is not None:
            args += ["--name", name]
        polled = name is None and not finished  # the backend's poll: mostly the same lines each time
        return parse_squeue(self.run(*args).stdout, self._polled if polled else None)

    def show_job(self, job_id: int) -> dict[str, str] | None:
        """``scontrol show job -o``; None once the controller has forgotten the job."""
        result = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return None
            raise SlurmUnavailable(f"scontrol show job {job_id}: {result.stderr.strip()}")
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        return parse_kv(lines[0]) if lines else None

    def show_jobs(self) -> list[dict[str, str]]:
        """Every job in the controller's memory, all fields (``scontrol show job -o``)."""
        result = self.run("scontrol", "show", "job", "-o", check=False)
        if result.returncode != 0 and "No jobs" not in (result.stdout + result.stderr):
            raise SlurmUnavailable(f"scontrol show job: {result.stderr.strip()}")
        return [parse_kv(line) for line in result.stdout.splitlines() if line.startswith("JobId=")]

    def accounting(self, job_id: int) -> dict[str, str] | None:
        """How a job the controller has forgotten ended: ``sacct -c`` (the jobcomp file)
        first, then ``sacct`` (slurmdbd). None when neither knows it."""
        for extra in (["-c"], []):
            result = self.run("sacct", *extra, "-n", "-P", "-X", "-j", str(job_id), "-o", SACCT_FIELDS, check=False)
            for line in result.stdout.splitlines():
                fields = dict(zip(SACCT_FIELDS.split(","), line.split("|"), strict=False))
                if fields.get("JobID") == str(job_id):
                    return fields
        return None

    def sbatch(self, script: str, options: Sequence[str]) -> int:
        """Submit ``script`` (on stdin) with ``options``; the new job's id."""
        result = self.run("sbatch", "--parsable", *options, input=script, check=False)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            last = message[-1] if message else f"exit code {result.returncode}"
            if any(sign in last for sign in _UNREACHABLE):
                raise SlurmUnavailable(f"sbatch: {last}")
            raise BackendError(f"sbatch refused the job: {last}")
        first = result.stdout.strip().split(";")[0]
        if not first.isdigit():
            raise BackendError(f"sbatch answered {result.stdout.strip()!r}, not a job id")
        return int(first)

    def scancel(self, *job_ids: int) -> None:
        """Cancel jobs, up to ``SCANCEL_BATCH`` in one call; one already gone or ending is
        not an error."""
        for start in range(0, len(job_ids), SCANCEL_BATCH):
            batch = [str(job_id) for job_id in job_ids[start:start + SCANCEL_BATCH]]
            result = self.run("scancel", *batch, check=False)
            if result.returncode == 0:
                continue
            errors = [line for line in result.stderr.strip().splitlines()
                      if "Invalid job id" not in line and "already completing or completed" not in line]
            if errors:
                raise SlurmUnavailable(f"scancel {' '.join(batch) if len(batch) < 4 else f'of {len(batch)} jobs'}: "
                                       f"{'; '.join(errors)}")

    def sstat(self, job_ids: Sequence[int]) -> str:
        """What the running steps of these jobs use so far (``usage.parse_sstat`` reads it),
        up to ``SCANCEL_BATCH`` jobs a call. A job with no running step is left out."""
        out = []
        for start in range(0, len(job_ids), SCANCEL_BATCH):
            ids = ",".join(str(job_id) for job_id in job_ids[start:start + SCANCEL_BATCH])
            # rc 0 even when some jobs have no step; only the controller being away fails it
            out.append(self.run("sstat", "-a", "-n", "-P", "-j", ids, "-o", SSTAT_FIELDS, check=False).stdout)
        return "".join(out)

    # --- nodes --------------------------------------------------------------------------

    def show_nodes(self) -> list[dict[str, str]]:
        result = self.run("scontrol", "show", "node", "-o")
        return [parse_kv(line) for line in result.stdout.splitlines() if line.startswith("NodeName=")]
