"""cgroup v2 limits: what is written where, and why a limit is not enforced."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.local import LocalBackend, cgroups
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher


def fake_cgroup(path: Path, controllers: str) -> Path:
    path.mkdir()
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text("")
    return path


def test_limits_are_written_to_the_component_cgroup(tmp_path: Path):
    parent = fake_cgroup(tmp_path / "delegated", "cpu memory pids")
    setup = cgroups.setup_component_cgroup(7, 512 * 2**20, 1500, parent=str(parent))
    assert setup.path == str(parent / "component-7")
    assert (parent / "cgroup.subtree_control").read_text() in ("+cpu", "+memory")  # enabled for children
    assert (parent / "component-7" / "memory.max").read_text() == str(512 * 2**20)
    assert (parent / "component-7" / "cpu.max").read_text() == "150000 100000"
    assert setup.memory.startswith("enforced") and setup.cpu.startswith("enforced")


def test_a_missing_controller_is_explained(tmp_path: Path):
    parent = fake_cgroup(tmp_path / "delegated", "pids")
    setup = cgroups.setup_component_cgroup(7, 2**30, 0, parent=str(parent))
    assert setup.memory.startswith("not enforced: not available in cgroup v2 on this host")
    assert setup.cpu == ""  # not asked for
    assert not (parent / "component-7" / "memory.max").exists()


def test_an_unusable_parent_is_explained(tmp_path: Path):
    setup = cgroups.setup_component_cgroup(7, 2**30, 1000, parent=str(tmp_path / "no" / "such" / "cgroup"))
    assert setup.path is None
    assert setup.memory.startswith("not enforced: cannot create cgroup")
    off = cgroups.setup_component_cgroup(7, 2**30, 0, enabled=False)
    assert off.memory == "not enforced: cgroups are turned off for the local cluster"


def test_a_command_that_exits_at_once_leaves_no_cgroup_behind(backend: LocalBackend, watcher: Watcher):
    """The supervisor checks that its command joined the component's cgroup; a command
    already gone by then is not in it, and its (empty) cgroup used to be left behind."""
    mount = cgroups.cgroup2_mount()
    if mount is None or not os.access(mount, os.W_OK):
        pytest.skip("no writable cgroup v2 mount on this host")
    parent = Path(os.environ.get(cgroups.ENV_PARENT) or Path(mount) / cgroups.DEFAULT_PARENT_NAME)
    ids = range(1, 7)
    for cid in ids:
        backend.start(Launch(cid, 100 + cid, "proj", "custom", f"proj-w{100 + cid}-job", command=("true",)))
    for cid in ids:
        watcher.wait(cid, S.COMPLETED)
    paths = [parent / f"{backend.instance}-component-{cid}" for cid in ids]
    deadline = time.monotonic() + 5  # the exit is published first, the cgroup removed after
    while any(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.name for p in paths if p.exists()] == []
