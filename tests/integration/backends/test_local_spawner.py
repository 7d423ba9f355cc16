"""Supervisors are forked by one fork server (``supervisor serve``) instead of each starting
an interpreter of its own; they outlive that server, and a server that died is replaced."""

from __future__ import annotations

import os
import signal
import time

from corral.backends.base import Launch
from corral.backends.local import LocalBackend
from corral.backends.local import files as f
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher, alive


def _job(cid: int) -> Launch:
    return Launch(cid, 100 + cid, "proj", "custom", f"proj-w{100 + cid}-job", command=("/bin/sh", "-c", "sleep 60"))


def _supervisor_pid(backend: LocalBackend, cid: int) -> int:
    return int((backend.components_dir / str(cid) / f.SUPERVISOR_LOCK).read_text())


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().decode().split("\0")[:-1]


def test_supervisors_are_forked_by_one_server_and_outlive_it(backend: LocalBackend, watcher: Watcher):
    backend.start(_job(1))
    backend.start(_job(2))
    for cid in (1, 2):
        watcher.wait(cid, S.RUNNING)
    server = backend._spawner.server_pid
    assert server is not None and alive(server)
    supervisors = [_supervisor_pid(backend, cid) for cid in (1, 2)]
    for pid in supervisors:
        # A fork of the server (its command line), in a session of its own, not the server's child.
        assert _cmdline(pid)[-2:] == ["corral.backends.local.supervisor", "serve"]
        assert os.getsid(pid) == pid and os.getsid(pid) != os.getsid(server)

    os.kill(server, signal.SIGKILL)
    time.sleep(0.3)
    assert all(alive(pid) for pid in supervisors)  # the components did not notice
    backend.start(_job(3))  # a new server starts
    watcher.wait(3, S.RUNNING)
    assert backend._spawner.server_pid not in (None, server)

    backend.stop(1, grace_s=1)
    assert watcher.wait(1, S.DELETED)
    assert not alive(supervisors[0]) and alive(supervisors[1])


def test_a_closed_backend_leaves_no_server_and_its_components_running(backend: LocalBackend, watcher: Watcher):
    backend.start(_job(1))
    watcher.wait(1, S.RUNNING)
    server = backend._spawner.server_pid
    supervisor = _supervisor_pid(backend, 1)
    backend.close()
    assert server is not None and not alive(server)
    assert alive(supervisor)


def test_a_workload_inherits_no_descriptor_of_the_fork_server(backend: LocalBackend, watcher: Watcher):
    """The fork server (root) starts a supervisor for any "run DIR" line on its stdin: a
    workload holding that pipe could have one started for a directory of its choosing."""
    backend.start(Launch(1, 101, "proj", "custom", "proj-w101-job",
                         command=("/bin/sh", "-c", "ls -l /proc/$$/fd; for f in /proc/$$/fd/*; do readlink $f; done; true")))
    assert watcher.wait(1, S.COMPLETED)
    out = backend.logs(1)
    assert "pipe:" not in out and "socket:" not in out, out
    assert backend._spawner.server_pid is not None


def _private_kib(pid: int) -> int:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[key] = int(rest.split()[0])
    return fields["Private_Dirty"] + fields["Private_Clean"]


def test_a_supervisor_owns_little_memory_of_its_own(backend: LocalBackend, watcher: Watcher):
    """What a forked supervisor owns alone is what it wrote after the fork (issue 13: the
    memory per running job, bench/supervisor_memory.py). 1,680 KiB before the fork server
    warmed up and filled its pools, ~950 after; this bound catches a large step back (a
    module such as http.client loaded into every supervisor again, say)."""
    ids = range(1, 9)
    for cid in ids:
        backend.start(_job(cid))
    for cid in ids:
        watcher.wait(cid, S.RUNNING)
    time.sleep(1)  # each supervisor in its wait
    private = sorted(_private_kib(_supervisor_pid(backend, cid)) for cid in ids)
    assert private[len(private) // 2] < 1250, private
