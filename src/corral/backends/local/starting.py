"""Starting local components (``LocalBackend.start``): a component is created at once,
waits for free GPUs if it must (oldest first), then is placed: who it runs as, its port,
command, environment and directories, written to ``placement.json``, and its supervisor
started. The rest of the backend: ``local.backend``."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.backends.base import BackendError, GpuDevice, Launch
from corral.backends.identity import Identities, IdentityError
from corral.backends.local import files as f
from corral.backends.local.environment import component_environment
from corral.backends.local.workarea import SCRIPT, WorkArea
from corral.domain.statuses import ComponentStatus as S


@dataclass
class _Component:
    id: int
    dir: Path
    launch: Launch
    seq: int
    submitted_at: str
    placement: dict[str, Any] | None = None
    final: dict[str, Any] | None = None  # final.json: a status decided by the backend alone
    finished: bool = False  # a final status was seen: resources are released


LOCAL_ONE_NODE = ("asks for {nodes} nodes; the local cluster is one host: run it on a slurm or kubernetes "
                  "cluster, or without nodes")


class Starting:
    """The starting half of ``LocalBackend`` (its state is set up by ``LocalBackend.__init__``)."""

    _mutex: Any
    _components: dict[int, _Component]
    _ghosts: dict[int, Any]
    _last: dict[int, Any]
    _seq: int
    _dirty: set[int]
    _waiting: list[int]
    _gpu_owner: dict[int, int]
    _ports: dict[int, int]
    _sweep: deque[int]
    components_dir: Path
    events_dir: Path
    gpus: tuple[GpuDevice, ...] | list[GpuDevice]
    identities: Identities
    work: WorkArea
    inherit_env: Any
    cgroups: bool
    cgroup_parent: Any
    log_max_bytes: int
    instance: str

    _check_open: Callable[[], None]
    _spawn: Callable[[_Component, str], None]

    def start(self, launch: Launch) -> None:
        """Create the component; idempotent by component id (a second call does nothing).

        Returns at once. The component is Pending (starting, or waiting for GPUs) in the
        next ``observe``, then goes on by itself. An endpoint (``kind="endpoint"``) is a
        passive object: Completed at once.
        """
        with self._mutex:
            self._check_open()
            if launch.component_id in self._components:
                return
            if self._ghosts.pop(launch.component_id, None) or launch.component_id in self._last:
                self._last.pop(launch.component_id, None)  # a "not on this cluster" answered earlier
            directory = self.components_dir / str(launch.component_id)
            directory.mkdir(exist_ok=True)
            self._seq += 1
            comp = _Component(launch.component_id, directory, launch, self._seq, f.now_iso())
            f.write_json_atomic(directory / f.LAUNCH, {"launch": launch.to_dict(), "seq": comp.seq,
                                                       "submitted_at": comp.submitted_at})
            self._components[comp.id] = comp
            self._dirty.add(comp.id)
            if launch.kind == "endpoint":
                self._finalize(comp, S.COMPLETED, "endpoint created (passive: served through its server's port)")
            elif launch.gpu > len(self.gpus):
                self._finalize(comp, S.FAILED, f"asks for {launch.gpu} GPU(s); this host has {len(self.gpus)}")
            elif launch.nodes > 1:
                self._finalize(comp, S.FAILED, LOCAL_ONE_NODE.format(nodes=launch.nodes))
            else:
                self._waiting.append(comp.id)
                self._place_waiting()

    def _finalize(self, comp: _Component, status: S, reason: str, exit_code: int | None = None) -> None:
        comp.final = {"status": status.value, "reason": reason, "at": f.now_iso(), "exit_code": exit_code}
        f.write_json_atomic(comp.dir / f.FINAL, comp.final)
        self._dirty.add(comp.id)

    def _free_gpus(self) -> list[int]:
        return [g.index for g in self.gpus if g.index not in self._gpu_owner]

    def _place_waiting(self) -> None:
        """Start the waiting components that fit, oldest first."""
        if not self._waiting:
            return
        still = []
        for cid in self._waiting:
            comp = self._components[cid]
            free = self._free_gpus()
            if comp.launch.gpu > len(free):
                still.append(cid)
                continue
            self._place(comp, free[: comp.launch.gpu])
        if len(still) != len(self._waiting):
            self._dirty.update(still)  # their "N of M free" reason changed
        self._waiting = still

    def _place(self, comp: _Component, devices: list[int]) -> None:
        try:
            self._prepare(comp, devices)
        except OSError as exc:
            self._finalize(comp, S.FAILED, f"could not be created: {exc.strerror or exc}")
            comp.finished = True
            return
        for index in devices:
            self._gpu_owner[index] = comp.id
        if comp.placement and comp.placement.get("port"):
            self._ports[comp.placement["port"]] = comp.id
        self._sweep.append(comp.id)
        self._dirty.add(comp.id)
        try:
            self._spawn(comp, "run")
        except OSError as exc:
            self._finalize(comp, S.FAILED, f"could not start its supervisor: {exc.strerror or exc}")

    def _prepare(self, comp: _Component, devices: list[int]) -> None:
        """Decide who it runs as, the port, the final command and environment; make its
        directories in the work area; write placement.json."""
        launch = comp.launch
        try:
            run_as = self.identities.for_project(launch.project)
        except IdentityError as exc:
            raise OSError(str(exc)) from exc
        home = self.work.prepare_project(launch.project, run_as)
        port = None
        if launch.is_service and (launch.needs_port or launch.fixed_port):
            port = launch.fixed_port or self._free_port()
        sub = (lambda text: text.replace("{port}", str(port))) if port else (lambda text: text)
        script = sub(launch.script) if launch.script is not None else None
        reports = self.work.prepare_component(comp.id, run_as, script)
        if launch.script is not None:
            path = str(reports / SCRIPT)
            argv = [path] if launch.script.startswith("#!") else ["/bin/sh", path]
        else:
            argv = [sub(arg) for arg in launch.command or ()]
        # Made by the workload's own process once it runs as its user (see the supervisor).
        cwd = Path(launch.working_dir) if launch.working_dir else home
        env = component_environment(comp.launch, comp.id, inherit=self.inherit_env, devices=devices, port=port,
                                    sub=sub, run_as=run_as, home=home, reports=reports,
                                    event_file=self.work.event_file(comp.id))
        readiness = None
        if launch.is_service and launch.readiness is not None and port:
            r = launch.readiness
            readiness = {"kind": r.kind, "host": "127.0.0.1", "port": port, "path": r.http_path,
                         "interval_s": r.interval_s,
                         "url": f"http://127.0.0.1:{port}{r.http_path}" if r.kind == "http" else
                         f"tcp://127.0.0.1:{port}"}
        comp.placement = {
            "component_id": comp.id, "argv": argv, "env": env, "cwd": str(cwd), "port": port, "gpus": devices,
            "readiness": readiness, "memory_bytes": launch.memory_bytes, "cpu_millicores": launch.cpu_millicores,
            "cgroups": self.cgroups, "cgroup_parent": self.cgroup_parent,
            "events_file": str(self.events_dir / str(comp.id)), "placed_at": f.now_iso(),
            "run_as": run_as.as_dict() if run_as else None, "log_max_bytes": self.log_max_bytes,
            "instance": self.instance,
            "time_limit": {"seconds": launch.time_limit_s, "reason": launch.time_limit_reason()}
            if launch.time_limit_s else None,
        }
        f.write_json_atomic(comp.dir / f.PLACEMENT, comp.placement)

    def _free_port(self) -> int:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in self._ports:
                return port
        raise BackendError("no free TCP port found")
