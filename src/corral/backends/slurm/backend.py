"""The Slurm backend: each component is one Slurm batch job.

    backend = SlurmBackend(state_dir, site=SlurmSite(partition="gpu", account="ml"))
    backend.start(launch)            # sbatch (as the project's user), returns at once
    backend.start_many(launches)     # the agent's way: a few sbatch at once (see ``submit``)
    for obs in backend.observe():    # one squeue per poll_interval_s for every job
        ...
    backend.stop(component_id)       # scancel; Deleted once Slurm says the job ended
    backend.stop_many(component_ids) # one scancel for all their jobs

The agent runs on a login or head node with Slurm's commands (see ``commands`` for why
the CLI and not slurmrestd). Jobs are submitted by root for the project's OS user
(``sbatch --uid/--gid``, see ``corral.backends.identity``) and charged to the project's
account where one is configured; without root every job runs as the agent's user (the
isolation notice says so). The work area (``--workload-root``) must be on a filesystem
the compute nodes share: the job's script, output and service port live in its component
directory there (see ``local/workarea.py``).

Idempotency: the job name carries the component id (``corral-c<id>``). ``start`` looks
for a job of that name before submitting, so an agent that crashed between ``sbatch``
and writing down the job id, or a new backend on the same state directory, adopts the
job instead of submitting a second one.

Statuses come from ``squeue`` (one call per poll for every waiting or running job) and,
once a job has left that list, from ``scontrol show job`` or ``sacct -c`` (see
``states`` for the mapping, ``ended`` for how a job ended).
Observations are reported only on change; Deleted is final. ``stop`` cancels with
``scancel``: Slurm sends SIGTERM, then SIGKILL after the cluster's KillWait (so
``grace_s`` is Slurm's to decide). With the controller unreachable, each component keeps
its last status, with the reason saying since when Slurm has not answered.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.backends.base import (
    BackendError,
    Capacity,
    Discovered,
    Observation,
    OutputRead,
    UnknownComponent,
    Usage,
)
from corral.backends.identity import Identities
from corral.backends.progress import progress_reason
from corral.backends.local import modelstore
from corral.backends.local.workarea import WorkArea
from corral.backends.local.workarea import default_root as default_work_root
from corral.backends import output
from corral.backends.slurm import cluster, submit
from corral.backends.slurm import usage as slurm_usage
from corral.backends.slurm.commands import JobRow, SlurmCommands, SlurmUnavailable
from corral.backends.slurm.ended import how_it_ended
from corral.backends.slurm.jobs import JobRecord, JobStore
from corral.backends.slurm.script import OUTPUT, SlurmSite
from corral.backends.slurm.states import is_final, map_state
from corral.domain.statuses import ComponentStatus as S


_NO_LIMIT = frozenset({"", "UNLIMITED", "INFINITE", "NOT_SET", "N/A"})


def _now() -> datetime:
    return datetime.now(UTC)


class SlurmBackend(submit.Submitting):
    """Runs components as Slurm batch jobs. Thread-safe; see the module docstring.
    Starting and stopping: ``submit.Submitting``."""

    kind = "slurm"

    def __init__(self, state_dir: str | os.PathLike[str], *, site: SlurmSite | None = None,
                 identities: Identities | None = None, work_root: str | os.PathLike[str] | None = None,
                 slurm_env: Mapping[str, str] | None = None, poll_interval_s: float = 0.5,
                 commands: SlurmCommands | None = None, submit_concurrency: int = 4) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.site = site or SlurmSite()
        self.identities = identities or Identities.from_settings("auto")
        if os.geteuid() == 0 and not self.identities.isolated:
            raise BackendError("every Slurm job would run as root: use per-project users (CORRAL_WORKLOAD_USERS=auto "
                               "or per-project), or run the agent as an unprivileged Slurm user")
        work = Path(work_root) if work_root is not None else default_work_root(self.state_dir, self.identities.isolated)
        self.work = WorkArea(work, isolated=self.identities.isolated)
        self.slurm = commands or SlurmCommands(slurm_env)
        self.poll_interval_s = poll_interval_s
        self.submit_concurrency = max(1, submit_concurrency)  # sbatch processes at once (start_many)
        self.store = JobStore(self.state_dir / "jobs")
        self._lock = threading.RLock()
        self._jobs: dict[int, JobRecord] = self.store.load()
        self._last: dict[int, Observation] = {}
        self._changed: dict[int, Observation] = {}
        self._next_poll = 0.0
        self._unreachable_since: datetime | None = None
        self._nodes = cluster.NodeAddresses(self.slurm)
        self._earlier: dict[str, list[JobRow]] | None = None  # see _earlier_jobs
        self._rows: dict[int, JobRow] = {}  # component id -> its job's squeue row last time
        self._progress: dict[int, dict[str, Any] | None] = {}  # what running jobs last reported
        self._gpus_per_node: int | None = None  # the most GPUs a node that takes work has (capacity)
        self._usage = slurm_usage.UsageSampler()
        for record in self._jobs.values():
            if record.final:
                self._last[record.component_id] = record.final_observation()  # type: ignore[assignment]

    # --- observing -----------------------------------------------------------------------

    def observe(self) -> list[Observation]:
        with self._lock:
            self._poll()
            changed, self._changed = list(self._changed.values()), {}
            return changed

    def all_observations(self) -> list[Observation]:
        with self._lock:
            self._poll(force=True)
            self._changed = {}
            return list(self._last.values())

    def _poll(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_poll:
            return
        self._next_poll = now + self.poll_interval_s
        pending = [r for r in self._jobs.values() if not r.final and r.job_id is not None]
        if not pending:
            return
        try:
            rows = {row.job_id: row for row in self.slurm.squeue()}
            for cid in self.work.drain_events():  # jobs that reported progress since
                if cid in self._jobs:
                    self._progress[cid] = self._report(self._jobs[cid], "progress.json")
                    self._rows.pop(cid, None)
            for record in pending:
                row = rows.get(record.job_id)  # type: ignore[arg-type]
                if row is not None and row == self._rows.get(record.component_id) and record.kind != "server":
                    continue  # as Slurm said last time: nothing to map (a service may have become ready)
                self._observe(record, row)
                if row is not None:
                    self._rows[record.component_id] = row
        except SlurmUnavailable as exc:
            self._unreachable(exc)
            return
        self._unreachable_since = None

    def _observe(self, record: JobRecord, row: JobRow | None) -> None:
        job_id = record.job_id
        if row is None or is_final(row.state):
            self._ended(record, row)
            return
        status, reason = map_state(row.state, row.reason, job_id=job_id)
        at = row.submitted or _now()
        if status is S.PENDING and self._requeued(record):
            reason = f"requeued by Slurm after it ran (its node failed or it was preempted); {reason}"
        url = None
        progress = self._progress.get(record.component_id)
        if status is S.RUNNING and row.time_limit not in _NO_LIMIT:  # Slurm ends it then (Failed: its time limit)
            reason += f", time limit {row.time_limit}"
        if status is S.RUNNING and progress:
            reason = progress_reason(progress) or reason
        if status is S.RUNNING:
            at = row.started or _now()
            if record.requeued:
                record.requeued = False
                self.store.save(record)
            if record.kind == "server":
                status, reason, url = cluster.service_state(record, row, self.work.component_dir(record.component_id),
                                                            self._nodes)
        self._emit(Observation(record.component_id, record.native_name, status, reason, record.not_before(at),
                               workload_id=record.workload_id, endpoint_url=url,
                               progress={k: v for k, v in progress.items() if k != "at"} if progress else None))

    def _requeued(self, record: JobRecord) -> bool:
        """The job ran and is waiting again (Slurm requeued it): remembered, so the reason
        stays the same until it runs again."""
        last = self._last.get(record.component_id)
        if last is not None and last.status is S.RUNNING and not record.requeued:
            record.requeued = True
            self.store.save(record)
        return record.requeued

    def _ended(self, record: JobRecord, row: JobRow | None) -> None:
        """The job finished (or left the controller's memory): its final status, once."""
        status, text, exit_code, ended = how_it_ended(self.slurm, record, row,
                                                      self.work.component_dir(record.component_id) / OUTPUT)
        result = self._report(record, "result.json") if status is S.COMPLETED else None
        self._finalize(record, status, text, exit_code, ended or _now(), result)
        self._progress.pop(record.component_id, None)

    def _report(self, record: JobRecord, name: str) -> dict[str, Any] | None:
        """A report the job wrote in its directory (a regular file of its user, size-capped)."""
        data = self.work.read_report(record.component_id, name, uid=record.uid if record.uid is not None
                                     else os.geteuid())
        return data if isinstance(data, dict) else None

    def _finalize(self, record: JobRecord, status: S, reason: str, exit_code: int | None, at: datetime,
                  result: dict[str, Any] | None = None) -> None:
        at = record.not_before(at)
        last = self._last.get(record.component_id)
        if last is not None and at < last.observed_at:
            at = last.observed_at
        record.final = {"status": status.value, "reason": reason, "exit_code": exit_code, "observed_at": at.isoformat(),
                        **({"result": result} if result else {})}
        self._jobs[record.component_id] = record
        self.store.save(record)
        self._emit(record.final_observation())  # type: ignore[arg-type]

    def _emit(self, obs: Observation) -> None:
        last = self._last.get(obs.component_id)
        if last is not None and last.status is S.DELETED:
            return  # Deleted is final
        if last is not None and obs.observed_at < last.observed_at:
            obs = replace(obs, observed_at=last.observed_at)  # Slurm's clock has seconds only
        if not obs.same_state(last):
            self._last[obs.component_id] = obs
            self._changed[obs.component_id] = obs

    def _unreachable(self, exc: Exception) -> None:
        """Every unfinished component keeps its last status, saying Slurm is silent."""
        if self._unreachable_since is None:
            self._unreachable_since = _now()
        self._rows.clear()  # once Slurm answers again every job is mapped afresh
        note = f"Slurm controller unreachable since {self._unreachable_since:%Y-%m-%d %H:%M:%S} UTC ({exc})"
        for record in self._jobs.values():
            last = self._last.get(record.component_id)
            if not record.final and last is not None and not last.reason.endswith(f"({exc})"):
                base = last.reason.split(" [Slurm controller unreachable", 1)[0]
                self._emit(replace(last, reason=f"{base} [{note}]", observed_at=_now()))

    # --- the cluster -----------------------------------------------------------------------

    def capacity(self) -> Capacity:
        nodes = cluster.capacity_nodes(self.slurm.show_nodes(), self.site, self._nodes)
        self._gpus_per_node = max((len(node.gpus) for node in nodes), default=0)
        return Capacity(tuple(nodes), isolation=self.identities.notice)

    def usage(self) -> list[Usage]:
        """What each running job uses now, from one ``sstat`` call (see ``slurm.usage``)."""
        with self._lock:
            running = [slurm_usage.Running(cid, record.job_id, row.started or _now())
                       for cid, record in self._jobs.items()
                       if record.job_id is not None and not record.final
                       and (row := self._rows.get(cid)) is not None and row.state == "RUNNING"]
        asked = self._usage.due(running)  # a bounded number of jobs a sample (see slurm.usage)
        totals = slurm_usage.parse_sstat(self.slurm.sstat([item.job_id for item in asked])) if asked else {}
        return self._usage.samples(asked, totals, still_running={item.component_id for item in running})

    def discover(self) -> list[Discovered]:
        return cluster.discovered(self.slurm.show_jobs(), self.site)

    # --- output ----------------------------------------------------------------------------

    def _record(self, component_id: int) -> JobRecord:
        record = self._jobs.get(component_id)
        if record is None:
            raise UnknownComponent(f"component {component_id} is not on this Slurm cluster")
        return record

    def read_output(self, component_id: int, offset: int | None = None, tail_lines: int = 0,
                    limit: int = 1 << 20) -> OutputRead:
        over = self._record(component_id).final is not None  # before reading: nothing is missed
        path = self.work.component_dir(component_id) / OUTPUT
        return output.read_file(path, offset, tail_lines, limit, over)

    def logs(self, component_id: int, tail_lines: int = 100) -> str:
        return self.read_output(component_id, None, tail_lines).data.decode(errors="replace")

    def follow_logs(self, component_id: int, tail_lines: int = 0, poll_s: float = 0.25,
                    stop: threading.Event | None = None) -> Iterator[str]:
        self._record(component_id)  # UnknownComponent now, not at the first next()

        def read(offset: int | None) -> OutputRead:
            if offset is not None:
                with self._lock:
                    self._poll()  # the end is noticed without an agent polling (its changes stay queued for it)
            return self.read_output(component_id, offset, tail_lines)

        return output.follow(read, poll_s, stop)

    # --- housekeeping ----------------------------------------------------------------------

    def model_inventory(self) -> list[dict[str, Any]]:
        """The projects' model stores in the shared work area, from their manifests
        (``base.model_inventory``): the same store the local backend keeps."""
        return modelstore.inventory(self.work.root)

    def forget(self, component_id: int) -> None:
        with self._lock:
            record = self._jobs.get(component_id)
            if record is not None and not record.final:
                raise BackendError(f"component {component_id} has not finished; stop it first")
            if record is not None and record.job_id is not None:
                self.store.set_forgotten(self.store.forgotten() | {record.job_id})
                if self._earlier is not None:
                    self._earlier.pop(self.site.job_name(component_id), None)
            self._jobs.pop(component_id, None)
            self._rows.pop(component_id, None)
            self._last.pop(component_id, None)
            self._changed.pop(component_id, None)
            self.store.remove(component_id)
            self.work.remove_component(component_id)

    def inspect(self, component_id: int) -> dict[str, Any]:
        """Debugging aid (not part of the Backend interface): the record and Slurm's view."""
        record = self._record(component_id)
        return {"record": record, "job": self.slurm.show_job(record.job_id) if record.job_id else None}

    def close(self) -> None:
        """Let go of the work area. Jobs keep running in Slurm; a new backend adopts them."""
        self.work.close()
