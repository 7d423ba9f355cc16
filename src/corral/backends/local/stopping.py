"""Stopping local components (``LocalBackend.stop``): a component waiting for GPUs or
already finished is Deleted at once; a running one gets ``stop.json`` and SIGUSR1 to its
supervisor (which ends the command's processes, SIGTERM then SIGKILL after the grace);
one whose supervisor is gone gets a reaper. The rest of the backend: ``local.backend``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from corral.backends.base import Observation
from corral.backends.local import files as f
from corral.backends.local.derive import SUPERVISOR_START_TIMEOUT_S, age_s, exited
from corral.backends.local.starting import _Component
from corral.domain.statuses import ComponentStatus as S


class Stopping:
    """The stopping half of ``LocalBackend`` (its state is set up by ``LocalBackend.__init__``)."""

    _mutex: Any
    _components: dict[int, _Component]
    _ghosts: dict[int, Observation]
    _dirty: set[int]
    _waiting: list[int]

    _check_open: Callable[[], None]
    _finalize: Callable[..., None]
    _supervisor_alive: Callable[[_Component], bool]
    _spawn: Callable[[_Component, str], None]

    def stop(self, component_id: int, grace_s: float = 30.0) -> None:
        """Remove the component: SIGTERM to its processes, SIGKILL after ``grace_s``,
        Deleted once none is left (DeleteFailed if some survive 10 s of SIGKILLs).
        Idempotent; returns at once. A component waiting for GPUs, or already finished,
        is Deleted at once; an unknown id is reported Deleted ("not on this cluster")."""
        with self._mutex:
            self._check_open()
            comp = self._components.get(component_id)
            if comp is None:
                if component_id not in self._ghosts:
                    self._ghosts[component_id] = Observation(
                        component_id, "", S.DELETED, "not on the local cluster", datetime.now(UTC))
                return
            self._dirty.add(comp.id)
            if comp.final is not None:
                if comp.final["status"] == S.DELETE_FAILED.value:
                    self._retry_kill(comp, f.read_json(comp.dir / f.STATUS) or {})
                elif comp.final["status"] != S.DELETED.value:
                    self._finalize(comp, S.DELETED, "deleted")
                return
            if comp.id in self._waiting:
                self._waiting.remove(comp.id)
                self._finalize(comp, S.DELETED, "deleted before it started")
                return
            status = f.read_json(comp.dir / f.STATUS)
            if exited(status):
                exit_ = status["exit"]  # type: ignore[index]
                if exit_.get("delete_failed") or exit_.get("leftovers"):
                    self._retry_kill(comp, status)  # type: ignore[arg-type]
                elif not (exit_.get("stopped") and exit_.get("cause") == "deleted"):
                    self._finalize(comp, S.DELETED, "deleted after it finished")
                return
            alive = self._supervisor_alive(comp)
            if status is None and not alive and age_s((comp.placement or {}).get("placed_at")) > \
                    SUPERVISOR_START_TIMEOUT_S:
                self._finalize(comp, S.DELETED, "deleted (its supervisor never started)")
                return
            try:
                if (comp.dir / f.STOP).exists():
                    if not alive and status is not None:
                        self._spawn(comp, "reap")
                    return
                f.write_json_atomic(comp.dir / f.STOP, {"grace_s": float(grace_s), "requested_at": f.now_iso()})
                if status is None:
                    return  # the supervisor is starting: it reads stop.json before it runs anything
                pid, start = status.get("supervisor_pid"), status.get("supervisor_start")
                if alive and f.same_process(pid, start):
                    os.kill(pid, signal.SIGUSR1)
                else:
                    self._spawn(comp, "reap")
            except OSError as exc:
                self._finalize(comp, S.DELETE_FAILED, f"could not stop it: {exc.strerror or exc}")

    def _retry_kill(self, comp: _Component, status: dict[str, Any]) -> None:
        """A second delete of a component whose processes survived SIGKILL: SIGKILL what
        is left of its session again; Deleted if nothing is left, else DeleteFailed."""
        session = status.get("session")
        left = []
        for pid in f.all_pids():
            stat = f.proc_stat(pid)
            if session and stat is not None and stat[2] == session and stat[0] != "Z":
                left.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)
        left = [pid for pid in left if (stat := f.proc_stat(pid)) is not None and stat[0] != "Z"]
        if left:
            self._finalize(comp, S.DELETE_FAILED, f"{len(left)} process(es) still alive after SIGKILL: "
                                                  + ", ".join(f"pid {pid}" for pid in left[:10]))
        else:
            self._finalize(comp, S.DELETED, "deleted")
