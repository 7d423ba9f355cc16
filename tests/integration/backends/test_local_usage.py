"""The local backend measures what its running components use, and nothing for those that
are over: by the component's cgroup where it has one (this host's unified hierarchy gives
CPU but no memory controller: memory then comes from /proc), and by /proc alone with
cgroups turned off."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.local import LocalBackend
from corral.domain.statuses import ComponentStatus as S
from tests.conftest import work_root_for
from tests.integration.backends.conftest import Watcher

# Burns a core in a child process (the tree counts, not only the main process) and holds
# 200 MiB in the parent, touched so that it is resident.
BURN = ("import os, time\n"
        "if os.fork() == 0:\n"
        "    while True: pass\n"
        "hold = bytearray(200 * 2**20)\n"
        "for i in range(0, len(hold), 4096): hold[i] = 1\n"
        "time.sleep(600)\n")


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "proc"])
def test_a_busy_component_reports_cpu_and_memory(state_dir: Path, cgroups: bool):
    backend = LocalBackend(state_dir, gpus="0", cgroups=cgroups, work_root=work_root_for(state_dir))
    try:
        _busy_component_reports(backend, Watcher(backend))
    finally:
        backend.close()


def _busy_component_reports(backend: LocalBackend, watcher: Watcher) -> None:
    backend.start(Launch(component_id=1, workload_id=1, project="proj", workload_type="custom",
                         native_name="burn", command=(sys.executable, "-c", BURN)))
    backend.start(Launch(component_id=2, workload_id=2, project="proj", workload_type="custom",
                         native_name="quick", command=("true",)))
    watcher.wait(1, S.RUNNING)
    watcher.wait(2, S.COMPLETED)
    time.sleep(2.0)  # the child burns; the parent touches its memory
    backend.usage()
    time.sleep(1.0)
    samples = {u.component_id: u for u in backend.usage()}
    assert set(samples) == {1}, samples  # the finished one reports nothing
    burn = samples[1]
    assert burn.cpu_millicores is not None and 700 <= burn.cpu_millicores <= 1300, burn
    assert burn.memory_bytes is not None and burn.memory_bytes >= 200 * 2**20, burn
    assert burn.gpu_utilization is None and burn.gpu_memory_bytes is None
    backend.stop(1, grace_s=0.5)
    watcher.wait(1, S.DELETED)
    assert backend.usage() == []
