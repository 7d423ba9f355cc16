"""The local backend: components as real processes on this host.

    backend = LocalBackend(data_dir / "local-cluster")
    backend.start(launch)            # returns at once
    backend.wait_for_changes(1.0)    # until a component changes (inotify), at most 1 s
    for obs in backend.observe():
        ...
    backend.stop(component_id, grace_s=30)
    backend.close()                  # components keep running

Starting (placement, GPUs, the supervisor's placement.json) is ``local.starting``;
stopping (stop.json, signals, a second delete's SIGKILLs) ``local.stopping``; capacity,
usage, discovery, output and models ``local.reporting``.

Each placed component runs under its own supervisor process
(``corral.backends.local.supervisor``), detached in its own session, so components
outlive the control plane, even a SIGKILLed one. A new ``LocalBackend`` on the same
state directory adopts them: the running ones are watched again, and exits that
happened meanwhile are reported with their codes (the supervisors wrote them down).
Only one ``LocalBackend`` uses a state directory at a time (``backend.lock``).

Why ``observe`` is cheap: a supervisor (or a job reporting progress) touches
``events/<component id>`` after each change it writes, and ``observe`` lists that one
directory, unlinks what it found, and reads the files of those components only. An
idle cluster costs one ``listdir`` of an empty directory per poll, and a poll is needed
only when ``wait_for_changes`` says so (inotify on the event directories; where inotify is
missing it returns every 100 ms). A few components per 100 ms (``sweep_per_poll``) also
have their supervisor's lock probed in turn (no file is read unless it is dead), to
notice a supervisor that died without a word (SIGKILL, OOM killer).

GPUs are whole devices, never shared: a component asking for N gets N free devices
(lowest indices first) through ``CUDA_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES`` and
``ROCR_VISIBLE_DEVICES`` (set to "" for a component without GPUs), recorded in its
``placement.json`` so a restart keeps them. A component asking for more than are free
waits, Pending ("waiting for 1 GPU: 0 of 2 free"), and starts when one is released; one
asking for more than the host has fails at once. CPU and memory are limits (cgroup v2,
see ``cgroups``), not reservations: admission against the cluster's capacity is the
central scheduler's job.

The environment of a component is built, not inherited: the variables named in
``inherit_env`` (PATH, HOME, locale, proxies, CUDA/ROCm and Hugging Face settings) are
taken from the backend's process, then the launch's ``env``, then Corral's:
``CORRAL_COMPONENT_ID``, ``CORRAL_WORKLOAD_ID``, ``CORRAL_PROJECT``, ``PORT`` for services,
``CORRAL_PROGRESS_FILE``, ``CORRAL_RESULT_FILE`` and ``CORRAL_EVENT_FILE`` (see
``files.report_progress``), ``PYTHONUNBUFFERED=1`` unless the launch sets it. Nothing of
the control plane's own configuration (database URL, tokens) reaches a workload.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral import fswatch
from corral.backends.base import BackendError, GpuDevice, Launch, Observation
from corral.backends.identity import Identities
from corral.backends.local import files as f
from corral.backends.local import gpus as gpu_detect
from corral.backends.local.derive import exited, derive
from corral.backends.local.environment import DEFAULT_INHERITED_ENV
from corral.backends.local.host import probe_limits
from corral.backends.local.spawner import SupervisorSpawner, supervisor_env
from corral.backends.local.reporting import Reporting
from corral.backends.local.starting import Starting, _Component
from corral.backends.local.stopping import Stopping
from corral.backends.local.usage import UsageSampler
from corral.backends.local.workarea import WorkArea
from corral.backends.local.workarea import default_root as default_work_root
from corral.domain.statuses import ComponentStatus as S

SWEEP_EVERY_S = 0.1  # sweep_per_poll components are probed per this much time
DEFAULT_LOG_MAX_BYTES = 64 << 20  # output.log is cut to its newest half past this (see the supervisor)


def _now() -> datetime:
    return datetime.now(UTC)


class LocalBackend(Starting, Stopping, Reporting):
    """Runs components as processes on this host. Thread-safe; see the module docstring.

    Arguments:
        state_dir: where components' state lives, e.g. ``<data_dir>/local-cluster``.
        gpus: the devices to hand out: a ``CORRAL_LOCAL_GPUS``-style string ("2",
            "nvidia:H100:8") or a list of ``GpuDevice``; default: ``CORRAL_LOCAL_GPUS`` if
            set, else what ``nvidia-smi``/``amd-smi``/``rocm-smi`` report.
        cgroups: use cgroup v2 for memory and CPU limits where the host allows.
        cgroup_parent: the cgroup v2 directory under which components get theirs
            (default ``CORRAL_LOCAL_CGROUP``, else ``<cgroup2 mount>/corral-local``).
        python: the interpreter that runs supervisors.
        inherit_env: names (``LC_*``: a prefix) of variables components inherit.
        node_name: the node's name in ``capacity()`` (default: the host name).
        nvidia_smi: the nvidia-smi executable used by ``discover`` and detection.
        sweep_per_poll: components re-checked for silent deaths per ``observe``, and per
            100 ms since the previous one.
        identities: who each project's workloads run as (default: per-project OS users
            when this process is root, else its own user; see ``corral.backends.identity``).
        work_root: the work area, where workloads keep their files (see ``workarea``;
            default ``/var/lib/corral/workloads`` with per-project users, else
            ``<state_dir>/work``).
        log_max_bytes: a component's output.log is cut to its newest half past this.
    """

    kind = "local"

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        gpus: str | Sequence[GpuDevice] | None = None,
        cgroups: bool = True,
        cgroup_parent: str | None = None,
        python: str = sys.executable,
        inherit_env: Sequence[str] = DEFAULT_INHERITED_ENV,
        node_name: str | None = None,
        nvidia_smi: str = "nvidia-smi",
        sweep_per_poll: int = 8,
        identities: Identities | None = None,
        work_root: str | os.PathLike[str] | None = None,
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.events_dir = self.state_dir / "events"
        self.components_dir = self.state_dir / "components"
        for directory in (self.state_dir, self.events_dir, self.components_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if gpus is None:
            setting = os.environ.get(gpu_detect.ENV_GPUS)
            gpus = setting if setting is not None else gpu_detect.detect(nvidia_smi=nvidia_smi)
        self.gpus: tuple[GpuDevice, ...] = tuple(
            gpu_detect.parse_gpu_setting(gpus) if isinstance(gpus, str) else gpus
        )
        os.chmod(self.state_dir, 0o700)  # launches hold secrets: Corral's eyes only
        self._lock_fd = self._take_state_lock()
        self.identities = identities or Identities.from_settings("auto")
        work = Path(work_root) if work_root is not None else default_work_root(self.state_dir, self.identities.isolated)
        try:
            self.work = WorkArea(work, isolated=self.identities.isolated)
        except OSError:
            os.close(self._lock_fd)
            raise
        self.log_max_bytes = log_max_bytes
        # Names what this backend makes outside its directories (cgroups): another instance
        # on this host numbers its components from 1 too.
        self.instance = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        self.cgroups = cgroups
        self.cgroup_parent = cgroup_parent
        self.limits_notice = probe_limits(cgroups, cgroup_parent, self.instance)
        self.python = python
        self.inherit_env = tuple(inherit_env)
        self.node_name = node_name or socket.gethostname()
        self.nvidia_smi = nvidia_smi
        self.sweep_per_poll = sweep_per_poll
        self._mutex = threading.RLock()
        self._components: dict[int, _Component] = {}
        self._waiting: list[int] = []
        self._gpu_owner: dict[int, int] = {}
        self._ports: dict[int, int] = {}  # port -> component id
        self._dirty: set[int] = set()
        self._last: dict[int, Observation] = {}
        self._ghosts: dict[int, Observation] = {}
        self._usage = UsageSampler(nvidia_smi)
        self._spawner = SupervisorSpawner(self.python, supervisor_env(), self.state_dir / "spawner.log")
        self._sweep: deque[int] = deque()
        self._swept_at = time.monotonic()
        self._seq = 0
        self._closed = False
        self._watch: fswatch.DirWatch | None = None
        self._woken = threading.Event()  # without inotify: wake() ends a wait
        try:
            self._watch = fswatch.DirWatch([self.events_dir, self.work.events_dir])
        except OSError:
            pass  # no inotify (or no work area events yet): wait_for_changes times out every 100 ms
        self._adopt()

    # --- the state directory -------------------------------------------------------

    def _take_state_lock(self) -> int:
        fd = os.open(self.state_dir / "backend.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BackendError(f"the local cluster state {self.state_dir} is in use by pid {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _adopt(self) -> None:
        """Take over what an earlier backend left in the state directory."""
        found = []
        for entry in os.scandir(self.components_dir):
            if not entry.name.isdigit():
                continue
            directory = Path(entry.path)
            record = f.read_json(directory / f.LAUNCH)
            if record is None:  # died between mkdir and writing launch.json: never started
                shutil.rmtree(directory, ignore_errors=True)
                continue
            comp = _Component(
                int(entry.name), directory, Launch.from_dict(record["launch"]), int(record.get("seq", 0)),
                record.get("submitted_at") or f.now_iso(),
                f.read_json(directory / f.PLACEMENT), f.read_json(directory / f.FINAL),
            )
            found.append(comp)
        for comp in sorted(found, key=lambda c: (c.seq, c.id)):
            self._components[comp.id] = comp
            self._seq = max(self._seq, comp.seq)
            status = f.read_json(comp.dir / f.STATUS)
            if comp.final is not None or exited(status):
                comp.finished = True
            elif comp.placement is None:
                self._waiting.append(comp.id)
            else:
                for index in comp.placement.get("gpus", []):
                    self._gpu_owner[index] = comp.id
                if comp.placement.get("port"):
                    self._ports[comp.placement["port"]] = comp.id
                self._sweep.append(comp.id)
                try:
                    if status is None:
                        self._spawn(comp, "run")  # placed, supervisor never got going: idempotent
                    elif not self._supervisor_alive(comp) and f.read_json(comp.dir / f.STOP) is not None:
                        self._spawn(comp, "reap")  # a stop was asked and its supervisor is gone
                except OSError as exc:
                    self._finalize(comp, S.FAILED, f"could not start its supervisor: {exc.strerror or exc}")
                    comp.finished = True
            self._dirty.add(comp.id)
        self._place_waiting()

    def _spawn(self, comp: _Component, mode: str) -> None:
        """Start a supervisor (forked by the spawner's server); it detaches at once."""
        self._spawner.spawn(mode, comp.dir)

    def _reap_spawners(self) -> None:
        self._spawner.reap()

    # --- observe ---------------------------------------------------------------------

    def observe(self) -> list[Observation]:
        """What changed since the previous call (or ``all_observations``): at most one
        observation per component, the newest. Reads the event directory, plus the files
        of the components it names and of ``sweep_per_poll`` others."""
        with self._mutex:
            self._check_open()
            self._reap_spawners()
            ids = self._drain_events()
            now = time.monotonic()
            due = max(self.sweep_per_poll, int((now - self._swept_at) / SWEEP_EVERY_S * self.sweep_per_poll))
            self._swept_at = now
            for _ in range(min(due, len(self._sweep))):
                cid = self._sweep.popleft()
                comp = self._components.get(cid)
                if comp is not None and not comp.finished:
                    self._sweep.append(cid)
                    # A live supervisor reports its own changes; only a dead (or never
                    # started) one needs a look at the files.
                    if not self._supervisor_alive(comp):
                        ids.add(cid)
            changed = self._refresh(ids)
            if self._ghosts:
                changed.extend(self._ghosts.values())
                for cid, ghost in self._ghosts.items():
                    self._last[cid] = ghost
                self._ghosts.clear()
            return changed

    def wait_for_changes(self, timeout: float) -> bool:
        """Until a component may have changed (True: ``observe`` has news), ``wake()`` is
        called or ``timeout`` passes. Costs nothing while nothing changes (inotify on the
        event directories); without inotify it returns within 100 ms (True)."""
        watch = self._watch
        if watch is None:
            woken = self._woken.wait(min(timeout, SWEEP_EVERY_S))
            self._woken.clear()
            return not woken
        try:
            return watch.wait(timeout)
        except (OSError, ValueError):  # closed meanwhile
            return False

    def wake(self) -> None:
        """End a ``wait_for_changes`` in another thread now."""
        self._woken.set()
        if self._watch is not None:
            self._watch.wake()

    def all_observations(self) -> list[Observation]:
        """The current observation of every component in the state directory."""
        with self._mutex:
            self._check_open()
            self._drain_events()
            self._refresh(set(self._components))
            return [self._last[cid] for cid in sorted(self._components) if cid in self._last]

    def _drain_events(self) -> set[int]:
        ids, self._dirty = self._dirty, set()
        ids |= {cid for cid in self.work.drain_events() if cid in self._components}
        for name in os.listdir(self.events_dir):
            try:
                os.unlink(self.events_dir / name)
            except FileNotFoundError:
                pass
            if name.isdigit():
                ids.add(int(name))
        return ids

    def _refresh(self, ids: set[int]) -> list[Observation]:
        changed: list[Observation] = []
        pending = set(ids)
        while pending:
            for cid in sorted(pending):
                comp = self._components.get(cid)
                if comp is None:
                    continue
                obs = self._derive(comp)
                last = self._last.get(cid)
                if last is not None and last.status is S.DELETED:
                    continue  # Deleted is final
                if obs.same_state(last):
                    continue
                if last is not None and obs.observed_at < last.observed_at:
                    obs = replace(obs, observed_at=last.observed_at)
                self._last[cid] = obs
                changed.append(obs)
            # Placing components released by this pass dirties the ones that start.
            pending = self._dirty - ids
            ids |= pending
            self._dirty -= pending
        return changed

    def _release(self, comp: _Component) -> None:
        if comp.finished:
            return
        comp.finished = True
        if comp.id in self._waiting:
            self._waiting.remove(comp.id)
        for index in (comp.placement or {}).get("gpus", []):
            if self._gpu_owner.get(index) == comp.id:
                del self._gpu_owner[index]
        port = (comp.placement or {}).get("port")
        if port and self._ports.get(port) == comp.id:
            del self._ports[port]
        self._place_waiting()

    def _supervisor_alive(self, comp: _Component) -> bool:
        """True while the component's supervisor holds its lock (no pid can fool this)."""
        try:
            fd = os.open(comp.dir / f.SUPERVISOR_LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops our probe lock, if we got it

    def _report(self, comp: _Component, name: str) -> Any | None:
        """A report the component's workload wrote (progress, result): its user's file only."""
        run_as = (comp.placement or {}).get("run_as")
        return self.work.read_report(comp.id, name, uid=run_as["uid"] if run_as else os.geteuid())

    # --- mapping onto component statuses ---------------------------------------------

    def _derive(self, comp: _Component) -> Observation:
        obs = self._derive_status(comp)
        if obs.status in (S.COMPLETED, S.FAILED, S.DELETED, S.DELETE_FAILED):
            self._release(comp)
        return obs

    def _derive_status(self, comp: _Component) -> Observation:
        waiting = None
        if comp.id in self._waiting:
            waiting = f"waiting for {comp.launch.gpu} GPU(s): {len(self._free_gpus())} of {len(self.gpus)} free"
        return derive(comp, waiting=waiting, alive=lambda: self._supervisor_alive(comp),
                      report=lambda name: self._report(comp, name))

    # --- housekeeping ------------------------------------------------------------------

    def forget(self, component_id: int) -> None:
        """Drop a finished component's directory (logs included). Raises BackendError
        for one that has not finished; an unknown id is ignored."""
        with self._mutex:
            comp = self._components.get(component_id)
            if comp is None:
                return
            if not comp.finished:
                self._derive(comp)
            if not comp.finished:
                raise BackendError(f"component {component_id} has not finished; stop it first")
            del self._components[component_id]
            self._last.pop(component_id, None)
            self._dirty.discard(component_id)
            shutil.rmtree(comp.dir, ignore_errors=True)
            self.work.remove_component(component_id)
            try:
                os.unlink(self.events_dir / str(component_id))
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Let go of the state directory. Components keep running under their supervisors."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._spawner.close()
            if self._watch is not None:
                self._watch.wake()
                self._watch.close()
            self.work.close()
            os.close(self._lock_fd)

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this LocalBackend is closed")

