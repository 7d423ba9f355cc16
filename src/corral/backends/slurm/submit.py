"""Starting and stopping Slurm jobs (``SlurmBackend``'s ``start``, ``start_many``,
``stop``, ``stop_many``): several ``sbatch`` at once, one ``scancel`` for many jobs.

One ``sbatch`` is a process that mostly waits for slurmctld's answer (munge, one RPC), so
a few in flight together submit faster than one after the other (on the tests' 2-core
host: 1 at a time ~180/s, 4 at a time ~320/s). Each job keeps its own ``sbatch``: its own
name (the idempotency key), comment, script and options, so status and cancel stay per
component. A job array would save the processes but its tasks share one script and
options and carry ids like ``12_3``, which neither ``squeue``'s parsing nor the
name-based adoption here knows. The bound keeps a burst from flooding the controller.

Each job's record is written (fsync'ed) right after its ``sbatch`` answers, in the same
worker: the writes overlap the other submissions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from corral.backends.base import BackendError, Capacity, Launch, Observation
from corral.backends.identity import Identities, IdentityError
from corral.backends.local.workarea import WorkArea
from corral.backends.slurm.commands import JobRow, SlurmCommands, SlurmUnavailable
from corral.backends.slurm.jobs import JobRecord, JobStore
from corral.backends.slurm.script import SlurmSite, batch_script, sbatch_options, split_nodes
from corral.backends.slurm.states import is_final
from corral.domain.statuses import ComponentStatus as S


@dataclass
class Submission:
    record: JobRecord  # its job_id is set once sbatch answers
    script: str
    options: list[str]


@dataclass
class Outcome:
    submitted: list[JobRecord] = field(default_factory=list)  # job id known (record written, or failure below)
    errors: dict[int, BackendError] = field(default_factory=dict)  # component id -> sbatch refused it
    unavailable: SlurmUnavailable | None = None  # the controller did not answer for some
    failure: Exception | None = None  # anything else (the state directory could not be written)


def submit_all(slurm: SlurmCommands, store: JobStore, todo: list[Submission], concurrency: int) -> Outcome:
    outcome = Outcome()

    def one(item: Submission) -> None:
        try:
            item.record.job_id = slurm.sbatch(item.script, item.options)
        except SlurmUnavailable as exc:
            outcome.unavailable = outcome.unavailable or exc
            return
        except BackendError as exc:
            outcome.errors[item.record.component_id] = exc
            return
        except Exception as exc:  # noqa: BLE001 - raised by the caller, after the others
            outcome.failure = outcome.failure or exc
            return
        outcome.submitted.append(item.record)  # kept even if the write fails: never submitted twice
        try:
            store.save(item.record)
        except Exception as exc:  # noqa: BLE001 - raised by the caller, after the others
            outcome.failure = outcome.failure or exc

    if len(todo) == 1 or concurrency <= 1:
        for item in todo:
            one(item)
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(todo)), thread_name_prefix="sbatch") as pool:
            list(pool.map(one, todo))
    return outcome


class Submitting:
    """``SlurmBackend``'s starting and stopping (its state is the backend's: see there)."""

    site: SlurmSite
    slurm: SlurmCommands
    store: JobStore
    work: WorkArea
    identities: Identities
    submit_concurrency: int
    _lock: threading.RLock
    _jobs: dict[int, JobRecord]
    _earlier: dict[str, list[JobRow]] | None
    _next_poll: float
    _gpus_per_node: int | None
    _finalize: Callable[..., None]
    _emit: Callable[[Observation], None]
    capacity: Callable[[], Capacity]

    def start(self, launch: Launch) -> None:
        """Submit the component's job, unless this backend or Slurm already has one for it."""
        error = self.start_many([launch]).get(launch.component_id)
        if error is not None:
            raise error

    def start_many(self, launches: Sequence[Launch]) -> dict[int, BackendError]:
        """``start`` for several components, up to ``submit_concurrency`` ``sbatch`` at once
        (each is mostly waiting on slurmctld's answer); returns the components that could
        not start, with why. ``SlurmUnavailable`` is raised once the others were submitted
        (and recorded): the agent tries again, which adopts or skips what went through."""
        with self._lock:
            errors: dict[int, BackendError] = {}
            todo: list[Submission] = []
            seen: set[int] = set()
            for launch in launches:
                if launch.component_id in self._jobs or launch.component_id in seen:
                    continue
                seen.add(launch.component_id)
                try:
                    item = self._prepare(launch)  # SlurmUnavailable (no squeue answer) ends it: tried again
                except BackendError as exc:
                    errors[launch.component_id] = exc
                    continue
                if item is not None:
                    todo.append(item)
            if not todo:
                return errors
            outcome = submit_all(self.slurm, self.store, todo, self.submit_concurrency)
            for record in outcome.submitted:
                self._jobs[record.component_id] = record
            errors.update(outcome.errors)
            self._next_poll = 0.0
            if outcome.unavailable is not None:
                self._earlier = None  # it may have reached the controller: look again before the retry
                raise outcome.unavailable
            if outcome.failure is not None:
                raise outcome.failure
            return errors

    def _prepare(self, launch: Launch) -> Submission | None:
        """What to submit for ``launch``; None when there is nothing to submit (an endpoint,
        or a job an earlier agent submitted: adopted, never submitted twice)."""
        if launch.kind == "endpoint":  # passive: nothing runs, it exists once recorded
            record = JobRecord.for_launch(launch, None)
            self._finalize(record, S.COMPLETED, "endpoint recorded", None, datetime.now(UTC))
            return None
        try:
            run_as = self.identities.for_project(launch.project)
        except IdentityError as exc:
            raise BackendError(str(exc)) from exc
        record = JobRecord.for_launch(launch, run_as.uid if run_as else None)
        existing = [row for row in self._earlier_jobs().get(self.site.job_name(launch.component_id), ())
                    if row.comment == self.site.comment(launch)]
        if existing:  # submitted before (the agent restarted): adopt
            record.job_id = max(row.job_id for row in existing)
            self._jobs[launch.component_id] = record
            self.store.save(record)
            self._next_poll = 0.0
            return None
        nodes = self._nodes_for(launch)
        home = self.work.prepare_project(launch.project, run_as)
        directory = self.work.prepare_component(launch.component_id, run_as, launch.script)
        script = batch_script(launch, component_dir=directory, home=home, run_as=run_as,
                              event_file=self.work.event_file(launch.component_id), nodes=nodes,
                              service_host=self.site.service_host)
        return Submission(record, script, sbatch_options(launch, self.site, directory, run_as, nodes))

    def _nodes_for(self, launch: Launch) -> int:
        """A job spans the nodes its spec asks for (``Launch.nodes``), or, asking for more
        GPUs than a node has, as many as they need (see ``script.split_nodes``)."""
        if launch.kind != "job":
            return 1
        if self.site.places_nodes(launch.project):
            if launch.nodes > 1:  # which one meant it cannot be told: neither silently wins
                raise BackendError(
                    f"the spec asks for {launch.nodes} nodes, but this cluster's sbatch options for project "
                    f"{launch.project!r} place the job themselves "
                    f"({' '.join(self.site.node_options(launch.project))}): drop nodes from the spec, or ask "
                    "the cluster's admin")
            return 1
        if launch.nodes > 1:
            return launch.nodes
        if not launch.gpu:
            return 1
        if self._gpus_per_node is None or launch.gpu > self._gpus_per_node:  # the nodes may have changed: look
            self.capacity()
        return split_nodes(launch.gpu, self._gpus_per_node or 0)

    def _earlier_jobs(self) -> dict[str, list[JobRow]]:
        """Jobs with this backend's names that Slurm had when it first looked: what an
        earlier agent submitted without writing it down (it crashed in between). Jobs
        submitted since are in the state directory, so one ``squeue`` suffices."""
        if self._earlier is None:
            earlier: dict[str, list[JobRow]] = {}
            forgotten, listed = self.store.forgotten(), set()
            for row in self.slurm.squeue(finished=True):
                listed.add(row.job_id)
                if self.site.component_of(row.name) is not None and row.job_id not in forgotten:
                    earlier.setdefault(row.name, []).append(row)
            self.store.set_forgotten(forgotten & listed)  # Slurm forgot the others too
            self._earlier = earlier
        return self._earlier

    def stop(self, component_id: int, grace_s: float = 30.0) -> None:
        """Cancel the component's job (``scancel``); Deleted once Slurm says it ended.
        A finished component is Deleted at once; an unknown one is reported Deleted."""
        self.stop_many([component_id], grace_s)

    def stop_many(self, component_ids: Sequence[int], grace_s: float = 30.0) -> None:
        """``stop`` for several components with one ``scancel`` for all their jobs; each
        component's Deleted still comes from its own job's end (``observe``)."""
        with self._lock:
            job_ids = [job_id for job_id in map(self._stopping, component_ids) if job_id is not None]
            if job_ids:
                self.slurm.scancel(*job_ids)
                self._next_poll = 0.0

    def _stopping(self, component_id: int) -> int | None:
        """Marks the component as being stopped; the job to cancel, if any."""
        record = self._jobs.get(component_id)
        if record is None:
            rows = self.slurm.squeue(name=self.site.job_name(component_id), finished=True)
            live = [r for r in rows if not is_final(r.state)]
            if not live:
                self._emit(Observation(component_id, "", S.DELETED, "not on the Slurm cluster", datetime.now(UTC)))
                return None
            record = JobRecord(component_id, None, "", "", "job", job_id=max(r.job_id for r in live))
            self._jobs[component_id] = record
        if record.final:
            if record.final_status not in (S.DELETED, S.DELETE_FAILED):
                self._finalize(record, S.DELETED, "deleted after it finished", record.final.get("exit_code"),
                               datetime.now(UTC))
            return None
        record.stopping = True
        self.store.save(record)
        return record.job_id
