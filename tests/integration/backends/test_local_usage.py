"""The local backend measures what its running components use (CPU checked against what
the processes burn, read from /proc here), and nothing for those that
are over: by the component's cgroup where it has one (this host's unified hierarchy gives
CPU but no memory controller: memory then comes from /proc), and by /proc alone with
cgroups turned off."""

from __future__ import annotations

import os
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


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy_component_reports(backend: LocalBackend, watcher: Watcher) -> None:
    backend.start(Launch(component_id=1, workload_id=1, project="proj", workload_type="custom",
                         native_name="burn", command=(sys.executable, "-c", BURN)))
    backend.start(Launch(component_id=2, workload_id=2, project="proj", workload_type="custom",
                         native_name="quick", command=("true",)))
    watcher.wait(1, S.RUNNING)
    watcher.wait(2, S.COMPLETED)
    pid = backend.inspect(1)["status"]["pid"]
    deadline = time.monotonic() + 10
    while not (children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
        assert time.monotonic() < deadline, "the burning child was never forked"
        time.sleep(0.05)
    child = int(children[0])
    time.sleep(1.0)  # the parent touches its memory
    # Against what the two processes burn, read here: this host may be busy, and a busy
    # loop gets what the others leave it.
    backend.usage()
    t1, c1 = time.monotonic(), _cpu_seconds(pid) + _cpu_seconds(child)
    time.sleep(1.5)
    samples = {u.component_id: u for u in backend.usage()}
    t2, c2 = time.monotonic(), _cpu_seconds(pid) + _cpu_seconds(child)
    assert set(samples) == {1}, samples  # the finished one reports nothing
    burn = samples[1]
    actual = (c2 - c1) / (t2 - t1) * 1000
    assert actual > 200, actual  # it does burn
    assert burn.cpu_millicores is not None and abs(burn.cpu_millicores - actual) <= 0.3 * actual + 50, (burn, actual)
    assert burn.memory_bytes is not None and burn.memory_bytes >= 200 * 2**20, burn
    assert burn.gpu_utilization is None and burn.gpu_memory_bytes is None
    backend.stop(1, grace_s=0.5)
    watcher.wait(1, S.DELETED)
    assert backend.usage() == []
