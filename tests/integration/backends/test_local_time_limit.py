"""A workload's time limit on the local cluster: its supervisor ends the command (real
processes) and the component is Failed with the limit as its reason."""

from __future__ import annotations

import time

from corral.backends.base import Launch
from corral.backends.local import LocalBackend
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher, alive, group_pids


def job(cid: int, script: str, **kw) -> Launch:  # type: ignore[no-untyped-def]
    return Launch(cid, 100 + cid, "proj", "training", f"proj-w{100 + cid}-job", command=("/bin/sh", "-c", script), **kw)


def test_a_command_past_its_time_limit_is_ended_and_failed(backend: LocalBackend, watcher: Watcher):
    started = time.monotonic()
    backend.start(job(1, "exec sleep 60", time_limit_s=2))
    running = watcher.wait(1, S.RUNNING)
    pid = backend.inspect(1)["status"]["pid"]
    assert alive(pid) and running.exit_code is None
    failed = watcher.wait(1, S.FAILED, timeout=20)
    took = time.monotonic() - started
    assert failed.reason == "time limit of 2s reached; killed by SIGTERM"
    assert failed.exit_code == -15
    assert 2.0 <= took < 10.0, took
    assert not alive(pid)
    assert group_pids(backend.inspect(1)["status"]["pgid"]) == []


def test_a_command_within_its_time_limit_completes(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "sleep 0.2; echo done", time_limit_s=30))
    done = watcher.wait(1, S.COMPLETED)
    assert done.exit_code == 0


def test_a_delete_while_the_time_limit_stops_it_is_a_delete(backend: LocalBackend, watcher: Watcher):
    # It ignores SIGTERM: the time limit's stop waits out its grace period (30 s)...
    backend.start(job(1, "trap '' TERM; sleep 60 & wait; sleep 60", time_limit_s=1))
    watcher.wait(1, lambda o: o.status is S.RUNNING and o.reason.startswith("stopping: SIGTERM sent"), timeout=15)
    pgid = backend.inspect(1)["status"]["pgid"]
    assert group_pids(pgid)  # SIGTERM did not end it
    backend.stop(1, grace_s=0)  # ...and a delete does not wait for the limit's grace
    deleted = watcher.wait(1, S.DELETED, timeout=15)
    assert deleted.reason.startswith("deleted")
    assert group_pids(pgid) == []
