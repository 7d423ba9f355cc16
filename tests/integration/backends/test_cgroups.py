"""cgroup v2 limits: what is written where, and why a limit is not enforced."""

from __future__ import annotations

from pathlib import Path

from corral.backends.local import cgroups


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
