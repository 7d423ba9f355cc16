"""What the local cluster reports beside statuses (``LocalBackend``'s reporting half):
its capacity and isolation, what running components use, GPU processes nobody owns,
components' output, the model stores, and a component's files for debugging."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import corral
from corral.backends import output
from corral.backends.base import Capacity, Discovered, GpuDevice, NodeCapacity, OutputRead, UnknownComponent, Usage
from corral.backends.identity import Identities
from corral.backends.local import files as f
from corral.backends.local import gpus as gpu_detect
from corral.backends.local import modelstore
from corral.backends.local.derive import exited
from corral.backends.local.discovery import unowned_gpu_processes
from corral.backends.local.host import mem_total
from corral.backends.local.starting import _Component
from corral.backends.local.usage import Target, UsageSampler
from corral.backends.local.workarea import WorkArea, unreachable


class Reporting:
    """The reporting half of ``LocalBackend`` (its state is set up by ``LocalBackend.__init__``)."""

    _mutex: Any
    _components: dict[int, _Component]
    _usage: UsageSampler
    gpus: list[GpuDevice]
    identities: Identities
    limits_notice: str
    node_name: str
    nvidia_smi: str
    python: str
    state_dir: Path
    work: WorkArea

    _check_open: Callable[[], None]

    @property
    def isolation(self) -> str:
        """How workloads on this cluster are kept apart, in one line (cluster page, start-up)."""
        notice = self.identities.notice
        if self.identities.isolated:
            # The runners (downloads, training, JupyterLab) run with this interpreter, as the user.
            blocked = unreachable(os.path.realpath(self.python)) or unreachable(Path(corral.__file__).parent)
            if blocked:
                notice += (f"; but Corral's Python cannot be run by them ({blocked}): "
                           "install Corral where others can read it")
        if self.limits_notice:
            notice += f"; {self.limits_notice}"
        return notice if len(notice) <= 500 else notice[:497] + "..."  # clusters.isolation holds 500

    # --- capacity and discovery --------------------------------------------------------

    def capacity(self) -> Capacity:
        """One node: this host's CPUs (those this process may use), memory, GPUs, and the
        disk holding the state directory."""
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return Capacity((NodeCapacity(self.node_name, cpus * 1000, mem_total(), self.gpus,
                                      shutil.disk_usage(self.state_dir).total),), isolation=self.isolation)

    def usage(self) -> list[Usage]:
        """What each running component uses now (see ``usage``): its cgroup's counters, or
        its processes' in /proc; its GPUs' by nvidia-smi / rocm-smi where installed."""
        targets = []
        vendor = {g.index: g.vendor for g in self.gpus}
        with self._mutex:
            self._check_open()
            for comp in self._components.values():
                if comp.finished or comp.placement is None:
                    continue
                status = f.read_json(comp.dir / f.STATUS) or {}
                if not status.get("pid") or status.get("exit"):
                    continue  # not started, or over
                devices = tuple(comp.placement.get("gpus") or ())
                targets.append(Target(
                    comp.id, (status.get("limits") or {}).get("cgroup"), status.get("supervisor_pid"),
                    status.get("supervisor_start"), status.get("pid"), devices,
                    vendor.get(devices[0]) if devices else None))
        self._usage.forget_except({t.component_id for t in targets})
        return self._usage.sample(targets)  # outside the mutex: reading /proc takes a moment

    def discover(self) -> list[Discovered]:
        """GPU processes that nvidia-smi sees and no component owns (a process is owned
        when ``CORRAL_COMPONENT_ID`` names a known component in its environment, or it
        runs in a supervisor's session). Returns [] where nvidia-smi is missing (no
        NVIDIA GPUs, or AMD GPUs: not supported yet)."""
        apps = gpu_detect.nvidia_compute_apps(self.nvidia_smi)
        if not apps:
            return []
        index_of = {g.uuid: g.index for g in self.gpus if g.uuid}
        with self._mutex:
            known = set(self._components)
            sessions = set()
            for comp in self._components.values():
                if not comp.finished:
                    status = f.read_json(comp.dir / f.STATUS) or {}
                    if status.get("session"):
                        sessions.add(status["session"])
        return unowned_gpu_processes(apps, known, sessions, index_of)

    # --- logs --------------------------------------------------------------------------

    def _component(self, component_id: int) -> _Component:
        comp = self._components.get(component_id)
        if comp is None:
            raise UnknownComponent(f"component {component_id} is not on the local cluster")
        return comp

    def logs(self, component_id: int, tail_lines: int = 100) -> str:
        """The last ``tail_lines`` lines of the component's stdout and stderr."""
        return self.read_output(component_id, None, tail_lines).data.decode(errors="replace")

    def follow_logs(self, component_id: int, tail_lines: int = 0, poll_s: float = 0.25,
                    stop: threading.Event | None = None) -> Iterator[str]:
        """Yield the output as it is written, in pieces of whole lines, starting with the
        last ``tail_lines`` lines. Ends when the component has finished and all its
        output was yielded, or when ``stop`` is set. Safe to run in its own thread."""
        self._component(component_id)  # UnknownComponent now, not at the first next()
        return output.follow(lambda offset: self.read_output(component_id, offset, tail_lines), poll_s, stop)

    def read_output(self, component_id: int, offset: int | None = None, tail_lines: int = 0,
                    limit: int = 1 << 20) -> OutputRead:
        """What the component wrote from byte ``offset`` (None: its last ``tail_lines``
        lines), at most ``limit`` bytes, without waiting (the agent's followers poll it)."""
        comp = self._component(component_id)
        over = self._is_over(comp)  # before reading: what was written before the end is read
        return output.read_file(comp.dir / f.OUTPUT, offset, tail_lines, limit, over)

    def _is_over(self, comp: _Component) -> bool:
        if comp.final is not None or (comp.dir / f.FINAL).exists():
            return True
        return exited(f.read_json(comp.dir / f.STATUS))

    # --- models and debugging ----------------------------------------------------------

    def model_inventory(self) -> list[dict[str, Any]]:
        """Every project's model store in the work area, from the manifests on disk (see
        ``base.model_inventory``)."""
        return modelstore.inventory(self.work.root)

    def inspect(self, component_id: int) -> dict[str, Any]:
        """Debugging aid: the supervisor's status.json (pids, phase, limits, exit) and the
        placement (GPUs, port). Not part of the Backend interface."""
        comp = self._component(component_id)
        return {"status": f.read_json(comp.dir / f.STATUS), "placement": comp.placement,
                "final": comp.final, "dir": str(comp.dir)}
