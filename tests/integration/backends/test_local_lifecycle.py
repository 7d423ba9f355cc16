"""The local backend runs real processes: what is particular to it (failures, services, stops,
limits, logs). What every backend promises is in tests/conformance/."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from corral.backends.base import BackendError, Launch, Readiness
from corral.backends.local import LocalBackend
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher, alive, group_pids
from tests.conftest import work_root_for


def job(cid: int, script: str, **kw) -> Launch:  # type: ignore[no-untyped-def]
    return Launch(cid, 100 + cid, "proj", "custom", f"proj-w{100 + cid}-job", command=("/bin/sh", "-c", script), **kw)


def server(cid: int, script: str, path: str | None = "/", **kw) -> Launch:  # type: ignore[no-untyped-def]
    return Launch(cid, 100 + cid, "proj", "inference", f"proj-w{100 + cid}-server", kind="server",
                  command=("/bin/sh", "-c", script), needs_port=True, readiness=Readiness(path), **kw)


def test_failing_command_is_failed_with_its_exit_code(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "echo about to fail; echo 'disk on fire' >&2; exit 3"))
    backend.start(job(2, "kill -9 $$"))
    backend.start(Launch(3, 103, "proj", "custom", "n", command=("no-such-program-anywhere", "x")))
    failed = watcher.wait(1, S.FAILED)
    assert failed.exit_code == 3
    assert failed.reason.startswith("exited with code 3")
    assert "disk on fire" in failed.reason  # the last line of output says why
    killed = watcher.wait(2, S.FAILED)
    assert killed.reason.startswith("killed by SIGKILL") and killed.exit_code == -9
    missing = watcher.wait(3, S.FAILED)
    assert missing.exit_code == 127 and "could not start no-such-program-anywhere" in missing.reason
    backend.start(job(4, "true", working_dir="/proc/1/no-such-place"))
    assert watcher.wait(4, S.FAILED).reason.startswith("could not be created: ")


def test_service_is_running_only_once_ready(backend: LocalBackend, watcher: Watcher):
    # Checks {port} substitution and $PORT, then listens only after a second.
    script = (f'test "$PORT" = "{{port}}" || exit 9; sleep 1; '
              f"exec {sys.executable} -m http.server --bind 127.0.0.1 {{port}}")
    backend.start(server(1, script))
    pending = watcher.wait(1, lambda o: o.status is S.PENDING and "waiting for" in o.reason)
    assert pending.reason.startswith("starting: waiting for http://127.0.0.1:")
    assert pending.endpoint_url is None
    port = backend.inspect(1)["placement"]["port"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    running = watcher.wait(1, S.RUNNING)
    assert running.endpoint_url == f"http://127.0.0.1:{port}/"
    assert httpx.get(running.endpoint_url, timeout=5).status_code == 200
    statuses = watcher.statuses(1)
    assert set(statuses[:-1]) == {S.PENDING} and statuses[-1] is S.RUNNING


def test_stop_removes_every_process_of_the_group(backend: LocalBackend, watcher: Watcher):
    backend.start(server(1, f"sleep 300 & exec {sys.executable} -m http.server --bind 127.0.0.1 {{port}}"))
    watcher.wait(1, S.RUNNING)
    status = backend.inspect(1)["status"]
    pids = group_pids(status["pgid"])
    assert len(pids) == 2 and status["pid"] in pids  # the server and its sleeping sibling
    supervisor = status["supervisor_pid"]
    backend.stop(1, grace_s=5)
    backend.stop(1, grace_s=5)  # idempotent
    deleted = watcher.wait(1, S.DELETED)
    assert deleted.reason == "deleted"
    assert not any(alive(pid) for pid in pids)
    assert group_pids(status["pgid"]) == []
    time.sleep(0.3)
    assert not alive(supervisor)
    backend.stop(1)
    assert watcher.poll() == []  # Deleted is final: nothing more is reported


def test_sigterm_ignoring_process_is_killed_after_the_grace_period(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "trap '' TERM; while :; do sleep 0.1; done"))
    watcher.wait(1, S.RUNNING)
    pgid = backend.inspect(1)["status"]["pgid"]
    started = time.monotonic()
    backend.stop(1, grace_s=1.5)
    stopping = watcher.wait(1, lambda o: o.reason.startswith("stopping"))
    assert "SIGKILL after 1.5s" in stopping.reason
    deleted = watcher.wait(1, S.DELETED)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 8, elapsed
    assert "SIGKILL after the 1.5s grace period" in deleted.reason
    assert group_pids(pgid) == []


def test_processes_a_job_leaves_behind_are_ended(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "sleep 300 & echo left a sleeper"))
    done = watcher.wait(1, S.COMPLETED)
    assert done.exit_code == 0
    assert group_pids(backend.inspect(1)["status"]["pgid"]) == []


def test_logs_tail_and_follow(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "for i in 1 2 3; do echo line $i; done; while [ ! -f go ]; do sleep 0.05; done; "
                         "echo line 4; echo oops >&2; printf 'no newline'"))
    watcher.wait(1, S.RUNNING)
    deadline = time.monotonic() + 5
    while "line 3" not in backend.logs(1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.logs(1, tail_lines=2) == "line 2\nline 3\n"
    pieces: list[str] = []
    follower = threading.Thread(target=lambda: pieces.extend(backend.follow_logs(1, tail_lines=1, poll_s=0.05)))
    follower.start()
    time.sleep(0.3)
    Path(backend.inspect(1)["placement"]["cwd"], "go").touch()
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert "".join(pieces) == "line 3\nline 4\noops\nno newline"
    stop = threading.Event()
    stop.set()
    assert list(backend.follow_logs(1, stop=stop)) == []


def test_one_backend_per_state_directory(backend: LocalBackend, state_dir: Path):
    with pytest.raises(BackendError, match="in use by pid"):
        LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir))
    backend.close()
    LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir)).close()
    with pytest.raises(BackendError):
        backend.observe()


def test_memory_limit_is_enforced_or_the_reason_says_why(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "sleep 300", memory_bytes=256 * 2**20, cpu_millicores=500))
    running = watcher.wait(1, S.RUNNING)
    limits = backend.inspect(1)["status"]["limits"]
    if limits["memory"].startswith("enforced"):  # a cgroup v2 host that lets us: the limit is in place
        cgroup = Path(limits["cgroup"])
        assert (cgroup / "memory.max").read_text().strip() == str(256 * 2**20)
        assert str(backend.inspect(1)["status"]["pid"]) in (cgroup / "cgroup.procs").read_text().split()
        assert "not enforced" not in backend.isolation
    else:  # this host does not allow it: the component runs, its inspect says why, the cluster's line says so once
        assert limits["memory"].startswith("not enforced: ")
        assert "limits are not enforced on this host: " in backend.isolation
    assert "not enforced" not in running.reason  # never in every row's reason
    assert backend.capacity().isolation == backend.isolation
    backend.stop(1, grace_s=0)
    watcher.wait(1, S.DELETED)


def test_the_cluster_line_says_once_that_limits_are_not_enforced(state_dir: Path, tmp_path: Path):
    for cid, (kwargs, why) in enumerate((({"cgroups": False}, "cgroups are turned off for the local cluster"),
                                         ({"cgroup_parent": str(tmp_path / "no" / "such")}, "cannot create cgroup ")),
                                        start=1):
        backend = LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir), **kwargs)
        try:
            assert f"memory and CPU limits are not enforced on this host: {why}" in backend.isolation
            assert backend.isolation.startswith(backend.identities.notice)
            backend.start(job(cid, "sleep 300", memory_bytes=256 * 2**20, cpu_millicores=500))
            running = Watcher(backend).wait(cid, S.RUNNING)
            assert "not enforced" not in running.reason
            assert backend.inspect(cid)["status"]["limits"]["memory"].startswith("not enforced: ")
            backend.stop(cid, grace_s=0)
            Watcher(backend).wait(cid, S.DELETED)
        finally:
            backend.close()


def test_survivors_of_sigkill_are_delete_failed_and_a_second_delete_retries(state_dir: Path):
    from corral.backends.local import files as f

    backend = LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir))
    backend.start(job(1, "true"))
    Watcher(backend).wait(1, S.COMPLETED)
    backend.close()
    # What a supervisor records when processes outlive 10 s of SIGKILLs (a process stuck in
    # uninterruptible sleep; not something a test can make): written as it would.
    path = state_dir / "components" / "1" / f.STATUS
    status = f.read_json(path)
    status["exit"].update(stopped=True, cause="deleted",
                          delete_failed="1 process(es) still alive after SIGKILL: pid 4242 (uninterruptible sleep)")
    f.write_json_atomic(path, status)
    backend = LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir))
    try:
        (obs,) = backend.all_observations()
        assert obs.status is S.DELETE_FAILED and "pid 4242 (uninterruptible sleep)" in obs.reason
        backend.stop(1)  # the retry finds nothing left of the component
        assert Watcher(backend).wait(1, S.DELETED).reason == "deleted"
    finally:
        backend.close()


def test_forget_drops_only_finished_components(backend: LocalBackend, watcher: Watcher):
    backend.start(job(1, "echo bye"))
    backend.start(job(2, "sleep 300"))
    watcher.wait(1, S.COMPLETED)
    watcher.wait(2, S.RUNNING)
    directory = Path(backend.inspect(1)["dir"])
    backend.forget(1)
    assert not directory.exists()
    assert [o.component_id for o in backend.all_observations()] == [2]
    with pytest.raises(BackendError, match="has not finished"):
        backend.forget(2)
    backend.stop(2, grace_s=0)
    watcher.wait(2, S.DELETED)
    backend.forget(2)
    assert backend.all_observations() == []
