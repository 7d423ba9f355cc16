"""Memory and CPU limits for local components with cgroup v2, where the host allows it.

Standard library only (the supervisor uses it). Each component gets a child cgroup
``<parent>/<instance>-component-<id>`` (``instance``: its backend's, so that two Corral
instances on one host, whose component ids both start at 1, never share one) with ``memory.max`` (and ``memory.swap.max`` 0) and
``cpu.max``; the supervisor puts the command into it before it runs, and uses it to kill
every process of the component and to tell when all are gone.

``<parent>`` is ``CORRAL_LOCAL_CGROUP`` (or the backend's ``cgroup_parent`` argument): a
cgroup v2 directory this user may write, typically one delegated by systemd
(``Delegate=yes``) that holds no process itself. By default it is ``corral-local``
directly under the cgroup v2 mount, which works when Corral runs as root on a cgroup v2
host. When none of this is possible (no cgroup v2, cgroup v1 or hybrid host, no
permission, controller not delegated), components run anyway and :class:`CgroupSetup`
says, in words, why the limit is not enforced.
"""

from __future__ import annotations

import errno
import os
import time

DEFAULT_PARENT_NAME = "corral-local"
ENV_PARENT = "CORRAL_LOCAL_CGROUP"


def _join_path(head: str, name: str) -> str:  # os.path.join, less Python code run for two parts
    return f"{head}{name}" if head.endswith("/") else f"{head}/{name}"


class CgroupSetup:
    """``path``: the component's cgroup (None when none could be made); ``memory`` and
    ``cpu``: "" (no limit asked), "enforced by cgroup ...", or "not enforced: <why>".
    (A plain class: ``typing`` and ``dataclasses`` would double a supervisor's size.)"""

    __slots__ = ("path", "memory", "cpu")

    def __init__(self, path: str | None, memory: str, cpu: str) -> None:
        self.path, self.memory, self.cpu = path, memory, cpu

    def __repr__(self) -> str:
        return f"CgroupSetup(path={self.path!r}, memory={self.memory!r}, cpu={self.cpu!r})"


# Files are read and written in binary, without text-mode open: its decoder objects are
# Python code, and a supervisor (forked from a shared fork server) owns a copy of every page
# that code touches.

_mount: list[str | None] = []  # see remember_mount


def cgroup2_mount() -> str | None:
    if _mount:
        return _mount[0]
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            for line in fh.read().decode(errors="replace").splitlines():
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


def remember_mount() -> None:
    """Look up the cgroup v2 mount once here, for every process this one forks (the
    supervisors' fork server) instead of once in each of them."""
    _mount[:] = [cgroup2_mount()]


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _write(path: str, value: str) -> str | None:
    """Write a control file; the error in words, or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        return None
    except OSError as exc:
        return f"writing {value!r} to {path} failed: {exc.strerror or exc}"


def _enable(base: str, controller: str, may_touch_parent: bool) -> str | None:
    """Make ``controller`` usable in base's children; the reason it cannot be, or None."""
    parent = os.path.dirname(base)
    if controller not in _read(_join_path(base, "cgroup.controllers")).split():
        if may_touch_parent:
            _write(_join_path(parent, "cgroup.subtree_control"), f"+{controller}")
        available = _read(_join_path(base, "cgroup.controllers")).split()
        if controller not in available:
            parent_has = _read(_join_path(parent, "cgroup.controllers")).split()
            where = f"{parent}/cgroup.controllers lists: {' '.join(parent_has) or 'nothing'}"
            if controller not in parent_has:
                return f"not available in cgroup v2 on this host ({where}; the host may run it under cgroup v1)"
            return f"not delegated to cgroup {base} ({where})"
    if controller not in _read(_join_path(base, "cgroup.subtree_control")).split():
        error = _write(_join_path(base, "cgroup.subtree_control"), f"+{controller}")
        if error:
            return error
    return None


def setup_component_cgroup(
    component_id: int, memory_bytes: int, cpu_millicores: int, parent: str | None = None, enabled: bool = True,
    instance: str = "",
) -> CgroupSetup:
    """Create the component's cgroup and write its limits, as far as the host allows."""

    def outcome(path: str | None, why_memory: str | None, why_cpu: str | None) -> CgroupSetup:
        memory = cpu = ""
        if memory_bytes:
            memory = f"not enforced: {why_memory}" if why_memory else f"enforced by cgroup {path}"
        if cpu_millicores:
            cpu = f"not enforced: {why_cpu}" if why_cpu else f"enforced by cgroup {path}"
        return CgroupSetup(path, memory, cpu)

    if not enabled:
        off = "cgroups are turned off for the local cluster"
        return outcome(None, off, off)
    parent = parent or os.environ.get(ENV_PARENT) or None
    mount = cgroup2_mount()
    if parent is None and mount is None:
        why = "cgroup v2 is not mounted on this host"
        return outcome(None, why, why)
    base = parent or _join_path(mount, DEFAULT_PARENT_NAME)  # type: ignore[arg-type]
    try:
        os.mkdir(base)
    except FileExistsError:
        pass
    except OSError as exc:
        hint = "" if parent else f" (run as root, or delegate a cgroup v2 subtree and set {ENV_PARENT})"
        why = f"cannot create cgroup {base}: {exc.strerror or exc}{hint}"
        return outcome(None, why, why)
    why_memory = _enable(base, "memory", parent is None) if memory_bytes else None
    why_cpu = _enable(base, "cpu", parent is None) if cpu_millicores else None
    path = _join_path(base, f"{instance}-component-{component_id}" if instance else f"component-{component_id}")
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError as exc:
        why = f"cannot create cgroup {path}: {exc.strerror or exc}"
        return outcome(None, why, why)
    if memory_bytes and not why_memory:
        why_memory = _write(_join_path(path, "memory.max"), str(memory_bytes))
        if not why_memory and os.path.exists(_join_path(path, "memory.swap.max")):
            _write(_join_path(path, "memory.swap.max"), "0")  # a limit that swaps is no limit
    if cpu_millicores and not why_cpu:
        period = 100_000
        why_cpu = _write(_join_path(path, "cpu.max"), f"{max(1000, cpu_millicores * period // 1000)} {period}")
    return outcome(path, why_memory, why_cpu)


def join(path: str, pid: int) -> None:
    """Move ``pid`` into the cgroup (raises OSError)."""
    fd = os.open(_join_path(path, "cgroup.procs"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def members(path: str) -> list[int]:
    try:
        with open(_join_path(path, "cgroup.procs"), "rb") as fh:
            return [int(pid) for pid in fh.read().split()]
    except OSError:
        return []


def kill_all(path: str) -> bool:
    """SIGKILL every process of the cgroup with cgroup.kill (Linux 5.14+); False if unavailable."""
    return _write(_join_path(path, "cgroup.kill"), "1") is None


def oom_kills(path: str | None) -> int:
    if not path:
        return 0
    for line in _read(_join_path(path, "memory.events")).splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def remove(path: str | None) -> None:
    """Remove the component's cgroup once empty (the kernel may need a moment after the
    last process was reaped); left in place if it will not go."""
    if not path:
        return
    for _ in range(20):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            time.sleep(0.05)
