"""Fixtures for the backend tests: a LocalBackend on a fresh state directory, a watcher
that collects observations, and a clean-up that leaves no process behind."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.backends.base import Observation
from corral.backends.local import LocalBackend
from corral.backends.local import files as f
from corral.domain.statuses import ComponentStatus as S
from tests.conftest import work_root_for

FINAL = (S.COMPLETED, S.FAILED, S.DELETED, S.DELETE_FAILED)


class Watcher:
    """Polls ``observe()`` like the agent does and keeps every observation per component."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.history: dict[int, list[Observation]] = defaultdict(list)

    def poll(self) -> list[Observation]:
        got = self.backend.observe()
        for obs in got:
            self.history[obs.component_id].append(obs)
        return got

    def latest(self, cid: int) -> Observation | None:
        return self.history[cid][-1] if self.history[cid] else None

    def statuses(self, cid: int) -> list[S]:
        return [o.status for o in self.history[cid]]

    def wait(self, cid: int, status: S | Callable[[Observation], bool], timeout: float = 15.0) -> Observation:
        """Poll every 50 ms until the component's newest observation matches."""
        match = status if callable(status) else (lambda o: o.status is status)
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            obs = self.latest(cid)
            if obs is not None and match(obs):
                return obs
            if time.monotonic() > deadline:
                raise AssertionError(f"component {cid}: timed out waiting for {status}; history: "
                                     f"{[(o.status.value, o.reason) for o in self.history[cid]]}")
            time.sleep(0.05)


def kill_leftovers(state_dir: Path) -> None:
    """Last resort after a test: SIGKILL every process in a supervisor's session."""
    sessions = set()
    components = state_dir / "components"
    if not components.is_dir():
        return
    for entry in components.iterdir():
        status = f.read_json(entry / f.STATUS) or {}
        if status.get("session"):
            sessions.add(status["session"])
    for pid in f.all_pids():
        stat = f.proc_stat(pid)
        if stat and stat[2] in sessions and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "local-cluster"
    yield path
    kill_leftovers(path)


@pytest.fixture
def backend(state_dir: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir))
    yield b
    if not b._closed:
        b.close()


def project_workdir(backend: LocalBackend, project: str = "proj", name: str = "t") -> Path:
    """A directory in ``project``'s part of the work area that its workloads may use (they
    run as the project's own user, and cannot reach pytest's 0700 tmp directories)."""
    run_as = backend.identities.for_project(project)
    path = backend.work.prepare_project(project, run_as) / name
    path.mkdir(exist_ok=True)
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)
    return path


@pytest.fixture
def workdir(backend: LocalBackend) -> Path:
    return project_workdir(backend)


@pytest.fixture
def watcher(backend: LocalBackend) -> Watcher:
    return Watcher(backend)


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    found = []
    for pid in f.all_pids():
        stat = f.proc_stat(pid)
        if stat and stat[1] == pgid and stat[0] != "Z":
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f.proc_stat(pid)
    return stat is not None and stat[0] != "Z"
