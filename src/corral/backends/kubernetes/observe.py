"""Observing: statuses from the watches' caches (a mixin of the backend).

A component is every object labelled with its id. Its status is its active objects'
(Job, Deployment, PyTorchJob, JobSet, a bare Pod) as ``states`` maps them, passive
objects (Service, Secret, Ingress, ...) counting only for a component made of nothing
else; it is Deleted once its last object is gone after ``stop`` (or when someone else
removed them), DeleteFailed when they outlive ``delete_timeout_s``. Only components a
watch event touched are recomputed (``_dirty``), and only changes are reported. While
the API server is unreachable, each component keeps its last status, its reason saying
since when.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from corral.backends.base import Observation
from corral.backends.results import result_words
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.render import ENDPOINT_URL, RESULT_MODEL
from corral.backends.kubernetes.states import PASSIVE_KINDS, Seen, combine, object_status
from corral.backends.kubernetes.watch import ObjectCache, key_of as _key, labels_of
from corral.domain.statuses import ComponentStatus as S

_DONE = (S.COMPLETED, S.FAILED, S.DELETED, S.DELETE_FAILED)


def _now() -> datetime:
    return datetime.now(UTC)


class Observing:
    settings: Any
    _lock: threading.RLock
    _caches: dict[str, ObjectCache]
    _records: dict[int, Any]
    _last: dict[int, Observation]
    _dirty: set[int]
    _forgotten: set[int]
    _down: tuple[datetime, str] | None
    _changed: threading.Event
    _ensure_watching: Any
    _record_type: Any

    def _objects_of(self, component_id: int) -> list[tuple[str, Any]]:
        return [(kind, obj) for kind, cache in self._caches.items() for obj in cache.of_component(component_id)]

    def _observe_one(self, cid: int) -> Observation | None:
        objects = self._objects_of(cid)
        record = self._records.get(cid)
        last = self._last.get(cid)
        if last is not None and last.status is S.DELETED:
            return None  # final
        name = record.native_name if record else (last.native_name if last else _native_name(objects, cid))
        if not objects:
            if record is None:
                return None
            if record.stop_deadline is not None or record.seen_objects:
                why = "deleted" if record.stop_deadline is not None else "removed from the cluster by someone else"
                return Observation(cid, name, S.DELETED, why, _now(), workload_id=record.workload_id)
            return Observation(cid, name, S.PENDING, "created, waiting for the cluster to report it", _now(),
                               workload_id=record.workload_id)
        if record is None:  # adopted after a restart
            record = self._records[cid] = self._record_type(_workload_of(objects), name)
        record.seen_objects = True
        if record.failed and record.stop_deadline is None:
            return Observation(cid, name, S.FAILED, record.failed, _now(), workload_id=record.workload_id)
        pods = [obj for kind, obj in objects if kind == "Pod"]
        active = [(kind, obj) for kind, obj in objects if kind not in PASSIVE_KINDS and kind != "Pod"]
        if active:  # a Secret beside a Job says nothing of how the Job does
            seen = [object_status(kind, obj, pods) for kind, obj in active]
        elif pods:
            seen = [object_status("Pod", pod) for pod in pods]
        elif record.expect_active:  # its Job or Deployment is not in the watch's cache yet
            seen = [Seen(S.PENDING, "created, waiting for the cluster to report it")]
        else:
            seen = [object_status(kind, obj) for kind, obj in objects]
        state = combine(seen)
        if state.status is S.PENDING and not pods:  # a ResourceQuota or an admission webhook said no
            refused = self._refusal(active)
            if refused:
                state = Seen(S.PENDING, f"the cluster refused to create its pods: {refused}")
        main = next((obj for kind, obj in objects if kind in ("Job", "Deployment", "PyTorchJob", "JobSet")), None)
        notes = _annotations(main)
        if record.stop_deadline is not None and time.monotonic() > record.stop_deadline:
            state = Seen(S.DELETE_FAILED, f"still on the cluster {self.settings.delete_timeout_s:.0f} s after "
                                          f"deletion was asked ({', '.join(sorted({k for k, _ in objects}))})")
        result = state.result
        if state.status is S.COMPLETED and notes.get(RESULT_MODEL):  # the model it wrote; its own result beside
            result = {**(result or {}), "model": notes[RESULT_MODEL], "path": f"/models/{notes[RESULT_MODEL]}"}
        if state.status is S.COMPLETED and result and state.reason == "completed":
            state = replace(state, reason=f"completed: {result_words(result)}")  # as on the local cluster
        if "could not start " in state.reason and record.missing_hint:
            state = replace(state, reason=f"{state.reason}; {record.missing_hint}")
        endpoint = notes.get(ENDPOINT_URL) if state.status is S.RUNNING else None
        return Observation(cid, name, state.status, state.reason, state.at or _now(), workload_id=record.workload_id,
                           exit_code=state.exit_code, endpoint_url=endpoint, result=result)

    def _refusal(self, active: list[tuple[str, Any]]) -> str | None:
        events = self._caches.get("Event")
        if events is None:
            return None
        names = {(kind, _key(obj)) for kind, obj in active}
        for event in events.items():
            ref = event.involved_object
            if (ref.kind, (ref.namespace or "", ref.name or "")) in names:
                return " ".join((event.message or event.reason or "").split())[:300]
        return None

    def _collect(self, ids: set[int], everything: bool) -> list[Observation]:
        out = []
        down = self._down
        for cid in sorted(ids - self._forgotten):
            if down is not None:
                last = self._last.get(cid)
                if last is None or last.status in _DONE:
                    continue
                obs = replace(last, reason=f"{last.reason.split(' (cluster unreachable')[0]} (cluster unreachable "
                                           f"since {down[0]:%H:%M:%S} UTC: {down[1]})", observed_at=_now())
            else:
                obs = self._observe_one(cid)
                if obs is None:
                    continue
            if everything or not obs.same_state(self._last.get(cid)):
                self._last[cid] = obs
                out.append(obs)
        return out

    def observe(self) -> list[Observation]:
        self._ensure_watching()
        with self._lock:
            ids = set(self._dirty) | {c for c, r in self._records.items() if r.stop_deadline is not None}
            self._dirty.clear()
            return self._collect(ids, everything=False)

    def wait_for_changes(self, timeout: float) -> bool:
        """Until a watch saw a change to a component (True), ``wake()`` or ``timeout``:
        the agent reports changes as the watch events arrive, without polling."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def wake(self) -> None:
        self._changed.set()

    def all_observations(self) -> list[Observation]:
        self._ensure_watching()
        with self._lock:
            ids = set(self._records) | set(self._last)
            for cache in self._caches.values():
                ids |= cache.components()
            self._dirty.clear()
            return self._collect(ids, everything=True)



def _annotations(obj: Any) -> dict[str, str]:
    if obj is None:
        return {}
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    found = meta.get("annotations") if isinstance(meta, dict) else meta.annotations
    return dict(found or {})


def _workload_of(objects: list[tuple[str, Any]]) -> int:
    for _, obj in objects:
        value = labels_of(obj).get(L.WORKLOAD)
        if value and value.isdigit():
            return int(value)
    return 0




def _native_name(objects: list[tuple[str, Any]], cid: int) -> str:
    """An adopted component's name as the recipes give it: <project>-w<workload>-<role>."""
    for _, obj in objects:
        found = labels_of(obj)
        if found.get(L.PROJECT) and found.get(L.WORKLOAD) and found.get(L.ROLE):
            return f"{found[L.PROJECT]}-w{found[L.WORKLOAD]}-{found[L.ROLE]}"
    return f"c{cid}"
