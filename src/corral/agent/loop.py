"""The agent loop: one per cluster. `corral agent` runs it standalone; `corral serve` runs
the same loop in a thread for the built-in local cluster, talking HTTP to itself.

Two threads, neither of which polls while nothing happens:

- work: asks the control plane for work (what should run or stop since its cursor) with
  a long poll (``GET /agent/work?wait=25``: the server holds it until there is work for
  this cluster), applies it through the backend (idempotent starts and stops) and
  reports what changed. Every ``resync_s`` it asks for the full desired state instead and
  removes what should not run (level-triggered: a missed event costs one resync). Against
  a server that does not hold polls it asks every ``poll_s``.
- observe: waits for the backend to say something changed (``wait_for_changes``: the
  local backend's supervisors write an event file, seen through inotify; a backend
  without it is polled every ``poll_s``) and reports the changes at once, in one batch;
  every ``heartbeat_s`` it sends a heartbeat with the cluster's capacity and nodes, and
  the address and key of its log API; every ``discover_s`` it looks for what runs here
  unstarted by Corral; every ``sweep_s`` it observes anyway (silent deaths).

Reports that fail are kept and sent again; the control plane ignores stale ones, so
sending twice is harmless. ``step()`` does one round of both, without waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from corral import __version__
from corral.agent.client import AgentClient, update
from corral.agent import inventory
from corral.agent.usage import UsageReporter
from corral.backends.base import Backend, BackendError, BackendUnavailable, Launch, Observation, model_inventory
from corral.backends.recipes import ComponentRef, RecipeError, build_launches
from corral.domain.results import normalise_model_entry, normalise_result
from corral.domain.statuses import ComponentStatus

log = logging.getLogger(__name__)

PREEMPTED_REASON = "preempted: removed from the cluster; waits in the queue to be admitted again"
_DONE = {"Completed", "Failed", "Deleted", "DeleteFailed"}


LONG_POLL_S = 25.0  # how long the server may hold a poll for work
SWEEP_S = 1.0  # the backend is observed at least this often, changes or not
START_CHUNK = 32  # launches per start_many call; what was observed is reported between them


class Agent:
    def __init__(self, client: AgentClient, backend: Backend, *, work_root: Path, poll_s: float = 0.1,
                 heartbeat_s: float = 10.0, resync_s: float = 60.0, grace_s: float = 30.0, discover_s: float = 30.0,
                 logs_url: str | None = None, long_poll_s: float = LONG_POLL_S, sweep_s: float = SWEEP_S,
                 usage_s: float | None = None) -> None:
        self.client = client
        self.backend = backend
        self.work_root = work_root  # where workloads keep their files (models, runs, workspaces)
        self.poll_s = poll_s
        self.long_poll_s = long_poll_s
        self.sweep_s = sweep_s
        self.heartbeat_s = heartbeat_s
        self.resync_s = resync_s
        self.grace_s = grace_s
        self.logs_url = logs_url
        self.cursor: int | None = None
        self.stop_as: dict[int, str] = {}  # component id -> Deleted | Pending, while being removed
        self.unsent: dict[int, dict[str, Any]] = {}  # component id -> newest update not yet accepted
        self.gone: set[int] = set()  # reported Deleted by the backend: forgotten once the report is accepted
        self.discover_s = discover_s
        self.found: dict[str, int] = {}  # native name -> component id, of what runs here unstarted by Corral
        self._models_sent: list[dict[str, Any]] | None = None  # the model inventory last accepted
        self._next_discover = 0.0
        self._next_heartbeat = 0.0
        self._next_resync = 0.0
        # What running components use, every usage_s (None: CORRAL_USAGE_INTERVAL_S, 10 s; 0: never).
        self.usage = UsageReporter(backend, client, usage_s)
        self._usage_in_thread = False  # run() samples in a thread of its own
        self._stop = threading.Event()
        self._lock = threading.RLock()  # the backend calls and the queue of reports, between the two threads

    # -- running ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        wake = getattr(self.backend, "wake", None)
        if wake is not None:
            wake()

    def stopped(self, wait_s: float = 0.0) -> bool:
        """True once stop() was called (waiting up to ``wait_s`` for it)."""
        return self._stop.wait(wait_s)

    def run(self) -> None:
        """Both loops until stop(): work in a thread of its own, observe in this one, and
        usage samples in a third (a backend may take a while to read them: Slurm's sstat
        asks every job's nodes, and no observation should wait for that)."""
        worker = threading.Thread(target=self._work_loop, name="agent-work", daemon=True)
        worker.start()
        sampler = None
        if self.usage.on:
            self._usage_in_thread = True
            sampler = threading.Thread(target=self.usage.run, args=(self._stop,), name="agent-usage", daemon=True)
            sampler.start()
        try:
            self._observe_loop()
        finally:
            self._stop.set()
            # A held poll ends when the server answers (at most long_poll_s): not waited for.
            worker.join(timeout=1.0)
            if sampler is not None:
                sampler.join(timeout=1.0)

    def step(self) -> None:
        """One round of both loops, without waiting: heartbeat, work, changes, discovery."""
        self._heartbeat_if_due(time.monotonic())
        self.work_step(wait=0.0)
        self.observe_step()

    # -- the observe loop ---------------------------------------------------------------

    def _observe_loop(self) -> None:
        waiter = getattr(self.backend, "wait_for_changes", None)
        while not self._stop.is_set():
            try:
                self.observe_step()
            except Exception:  # noqa: BLE001 - the control plane may be restarting; try again
                log.warning("agent step failed; retrying", exc_info=log.isEnabledFor(logging.DEBUG))
                self._stop.wait(1.0)
                continue
            if waiter is None:
                self._stop.wait(self.poll_s)
                continue
            now = time.monotonic()
            waiter(max(0.0, min(self._next_heartbeat, self._next_discover, now + self.sweep_s) - now))

    def observe_step(self) -> None:
        now = time.monotonic()
        self._heartbeat_if_due(now)
        with self._lock:
            self.report(self.backend.observe())
            if now >= self._next_discover:
                self._next_discover = now + self.discover_s
                self.discover()
        if not self._usage_in_thread:  # step() without run(): one thread does everything
            self.usage.report_if_due(now)

    def _heartbeat_if_due(self, now: float) -> None:
        if now >= self._next_heartbeat:
            try:
                capacity = self.backend.capacity()
            except BackendUnavailable as exc:  # no heartbeat: the cluster turns unhealthy
                log.warning("cluster unreachable, no heartbeat: %s", exc)
            else:
                self.client.heartbeat(capacity, agent_url=self.logs_url, version=__version__)
            self._next_heartbeat = now + self.heartbeat_s
            self.send_models()

    # -- the work loop ------------------------------------------------------------------

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                held = self.work_step(wait=self.long_poll_s)
            except Exception:  # noqa: BLE001 - the control plane may be restarting; try again
                if self._stop.is_set():
                    return  # stopping: the client was closed under a held poll
                log.warning("agent work poll failed; retrying", exc_info=log.isEnabledFor(logging.DEBUG))
                self._stop.wait(1.0)
                continue
            if not held:
                self._stop.wait(self.poll_s)

    def work_step(self, wait: float) -> bool:
        """Ask for work (held up to ``wait`` s until the next resync), apply it, report what
        changed; whether the server held the poll (or answered with work)."""
        now = time.monotonic()
        full = now >= self._next_resync
        wait = 0.0 if full else min(wait, max(0.0, self._next_resync - now))
        work = self.client.work(None if full else self.cursor, wait=wait) if wait > 0 else \
            self.client.work(None if full else self.cursor)
        with self._lock:
            if full:
                self._next_resync = now + self.resync_s
                everything = self.backend.all_observations()
                try:
                    self.apply(work, everything)
                finally:  # even when the cluster is unreachable: its statuses say so
                    self.report(everything)
            else:
                try:
                    self.apply(work)
                finally:
                    self.report(self.backend.observe())
            self.cursor = work["cursor"]
        return full or bool(work["items"]) or "wait" in work

    def discover(self) -> None:
        """Tell the control plane what runs here that Corral did not start, and what of it
        has gone since."""
        seen = {d.native_name: d for d in self.backend.discover()}
        new = [d for name, d in seen.items() if name not in self.found]
        if new:
            answers = self.client.found([{
                "native_name": d.native_name, "kind": d.kind, "command": d.command[:4000],
                "gpu": max(d.gpu, len(d.gpu_indices)), "cpu": d.cpu_millicores, "memory": d.memory_bytes,
                "ephemeral_storage": d.ephemeral_storage_bytes,
                "project": d.project,
                **({"started_at": d.started_at.isoformat()} if d.started_at else {})} for d in new])
            self.found.update({a["native_name"]: a["component_id"] for a in answers if a.get("component_id")})
        at = datetime.now(UTC)
        for name in [n for n in self.found if n not in seen]:
            self._queue(update(self.found.pop(name), "Completed", "no longer running on the cluster", at))

    # -- work ---------------------------------------------------------------------------

    def apply(self, work: dict[str, Any], everything: list[Observation] | None = None) -> None:
        """Run and stop what the work says; with the full desired state (``work["full"]``)
        also remove what runs here unwanted (``everything``: the backend's full state)."""
        wanted: set[int] = set()
        runs: list[dict[str, Any]] = []  # run items in a row, and stops: each group goes to the backend at once
        stops: list[tuple[int, str]] = []
        for item in work["items"]:
            action = item["action"]
            if action != "run" and runs:  # in the order asked: what came first is applied first
                self._run(runs)
                runs = []
            if action != "stop" and stops:
                self._remove(stops)
                stops = []
            if action == "run":
                wanted.update(c["id"] for c in item["components"])
                runs.append(item)
            elif action == "stop":
                stops += [(cid, item["stop_as"]) for cid in item["component_ids"]]
            elif action == "fail":
                at = datetime.now(UTC)
                for cid in item["component_ids"]:
                    self._queue(update(cid, "Failed", item["reason"], at))
        self._run(runs)
        self._remove(stops)
        if work["full"]:
            # Anything else this backend runs is no longer wanted here (preempted or deleted
            # while the agent was away): remove it, and say it waits again.
            named = {cid for item in work["items"] for cid in item["component_ids"]}
            self._remove([(obs.component_id, "Pending")
                          for obs in (everything if everything is not None else self.backend.all_observations())
                          if obs.component_id not in wanted and obs.component_id not in named
                          and obs.status.value not in _DONE])

    def _run(self, items: list[dict[str, Any]]) -> None:
        """Start the components of ``items``: a backend with ``start_many`` gets all their
        launches at once (Slurm submits several at a time), else one ``start`` after the
        other. A component that cannot start fails its workload's components."""
        batch: list[tuple[list[dict[str, Any]], list[Launch]]] = []
        for item in items:
            todo = [c for c in item["components"] if c["status"] not in _DONE and c["id"] not in self.stop_as]
            if not todo:
                continue
            refs = [ComponentRef(c["id"], c["kind"], gpu=c["gpu"], cpu_millicores=c["cpu"],
                                 memory_bytes=c["memory"]) for c in todo]
            try:
                # A backend may bring its own recipes (Kubernetes: images, not host commands).
                build = getattr(self.backend, "build_launches", build_launches)
                batch.append((todo, build(workload_id=item["workload_id"], project=item["project"],
                                          workload_type=item["type"], spec=item["spec"], components=refs,
                                          work_root=self.work_root, secret_env=item.get("env") or {})))
            except (RecipeError, BackendError) as exc:
                self._failed(todo, exc)
        start_many = getattr(self.backend, "start_many", None)
        if start_many is not None and batch:
            every, errors = [launch for _, launches in batch for launch in launches], {}
            for first in range(0, len(every), START_CHUNK):
                if first:  # what changed meanwhile is not held back by a long batch (the observe loop waits)
                    self._report_meanwhile()
                errors.update(start_many(every[first:first + START_CHUNK]))
            for todo, launches in batch:
                error = next((errors[la.component_id] for la in launches if la.component_id in errors), None)
                if error is not None:
                    self._failed(todo, error)
            return
        for todo, launches in batch:
            try:
                for launch in launches:
                    self.backend.start(launch)
            except BackendError as exc:
                self._failed(todo, exc)

    def _report_meanwhile(self) -> None:
        try:
            self.report(self.backend.observe())
        except Exception:  # noqa: BLE001 - kept in unsent, sent with the step's own report
            log.debug("report between submissions failed", exc_info=True)

    def _failed(self, components: list[dict[str, Any]], exc: Exception) -> None:
        at = datetime.now(UTC)
        for c in components:
            self._queue(update(c["id"], "Failed", f"could not start: {exc}", at))

    def _remove(self, stops: list[tuple[int, str]]) -> None:
        """Stop components (component id, what to report once removed: Deleted or Pending);
        a backend with ``stop_many`` gets them all at once (Slurm: one ``scancel``)."""
        for component_id, stop_as in stops:
            self.stop_as[component_id] = stop_as
        stop_many = getattr(self.backend, "stop_many", None)
        if stop_many is not None and stops:
            stop_many([cid for cid, _ in stops], grace_s=self.grace_s)
        else:
            for component_id, _ in stops:
                self.backend.stop(component_id, grace_s=self.grace_s)

    # -- reporting ----------------------------------------------------------------------

    def send_models(self) -> None:
        """Report the model stores' inventory when it changed since the last one accepted
        (a model made, removed or replaced on disk); nothing for a backend that cannot list it."""
        # Under the lock: the two threads' reports must not cross (an older inventory sent
        # after a newer one would remove a model until the next heartbeat).
        with self._lock:
            try:
                found = model_inventory(self.backend)
                if found is None:
                    return
                unique = {(e["project"], e["name"]): e for e in map(normalise_model_entry, found) if e is not None}
                entries = [unique[k] for k in sorted(unique)]
                if entries != self._models_sent:
                    self._send_inventory(entries)
                    self._models_sent = entries
            except (httpx.HTTPError, OSError, BackendError) as exc:  # tried again at the next heartbeat
                log.warning("could not report the model store: %s", exc)

    def _send_inventory(self, entries: list[dict[str, Any]]) -> None:
        """In pages; smaller ones where the server's body limit is lower than they are (a
        page sent twice is harmless: each replaces its own range)."""
        budget = inventory.MAX_PAGE_BYTES
        while True:
            try:
                for page, after, through in inventory.pages(entries, max_bytes=budget):
                    self.client.models(page, after, through)
                return
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 413 or budget <= inventory.MIN_PAGE_BYTES:
                    raise
                budget = max(inventory.MIN_PAGE_BYTES, budget // 4)

    def report(self, observations: list[Observation]) -> None:
        if any(isinstance(obs.result, dict) and obs.result.get("model") for obs in observations):
            self.send_models()  # before the status: a finished download's model is listed when it shows Complete
        for obs in observations:
            status, reason = obs.status.value, obs.reason
            removed = False
            if obs.status is ComponentStatus.DELETED:
                if self.stop_as.get(obs.component_id) == "Pending":
                    status, reason, removed = "Pending", PREEMPTED_REASON, True
                self.gone.add(obs.component_id)
            result = normalise_result(obs.result) if obs.status.value in _DONE else None
            self._queue(update(obs.component_id, status, reason, obs.observed_at, native_name=obs.native_name,
                               endpoint_url=obs.endpoint_url, removed=removed, result=result))
        if self.unsent:
            self.client.report(list(self.unsent.values()))
            self.unsent.clear()
        for cid in self.gone:
            # Gone from the cluster: a preempted component may be started afresh later.
            self.stop_as.pop(cid, None)
            try:
                self.backend.forget(cid)
            except BackendError:
                pass
        self.gone.clear()

    def _queue(self, body: dict[str, Any]) -> None:
        self.unsent[body["component_id"]] = body
