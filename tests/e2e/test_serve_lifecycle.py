"""Every process `corral serve` starts ends with it (the scheduler, and with --workers the
worker processes and multiprocessing's resource tracker), on SIGTERM within its grace
period and on their own after kill -9 of serve; the built-in cluster's workloads are
detached on purpose and keep running."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import subprocess

import httpx
import psutil
import pytest

from tests.e2e.conftest import (CORRAL_BIN, LiveServer, clean_env, free_port, make_database,
                                remove_local_components, stop_server)


def _serve(database, log_path: Path, workers: int, *,  # type: ignore[no-untyped-def]
           stderr_closed: bool = False, wait_healthy: bool = True) -> LiveServer:
    port = free_port()
    argv = [str(CORRAL_BIN), "serve", "--port", str(port), "--workers", str(workers)]
    if stderr_closed:  # as `corral serve 2>&-`
        argv = ["sh", "-c", 'exec "$@" 2>&-', "sh", *argv]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, env=clean_env({**database.env, "CORRAL_LOG_LEVEL": "warning"}), stdout=log,
                                   stderr=None if stderr_closed else subprocess.STDOUT, start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", database, process, log_path)
    if not wait_healthy:
        return server
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None and time.monotonic() < deadline, server.log()
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)


def _serve_with_a_workload(tmp_path: Path, stack: ExitStack,
                           workers: int) -> tuple[LiveServer, int, list[psutil.Process]]:
    """A server, the pid of a running workload's process, and serve's own helper processes."""
    database = make_database("sqlite", tmp_path / "data", stack)
    server = _serve(database, tmp_path / "server.log", workers)
    stack.callback(remove_local_components, database.data_dir / "local-cluster")
    stack.callback(stop_server, server, remove_workloads=False)
    marker = f"lifecycle-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
                      timeout=10) as client:
        created = client.post("/api/v1/workloads", json={
            "type": "custom", "project": "default", "name": "survivor", "resources": {"cpu": "100m", "memory": "64Mi"},
            "command": f"sleep 600 # {marker}"})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/workloads/{created.json()['id']}").json()["status"] != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    workload = next(p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or []))
    helpers = psutil.Process(server.process.pid).children(recursive=True)
    # Workload supervisors detach (new session, reparented): they are never serve's
    # descendants, though the fork server that starts them is one of its helpers.
    supervisor = workload.parent()
    assert supervisor is not None and "corral.backends.local.supervisor" in " ".join(supervisor.cmdline())
    assert supervisor.pid not in {p.pid for p in helpers}
    assert helpers, "serve runs its scheduler in a process of its own"
    return server, workload.pid, helpers


def _alive(process: psutil.Process) -> bool:
    """Still running (a zombie left to an init that does not reap counts as gone)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(process: psutil.Process) -> str:
    """What a process is, for a failure message (it may end while it is described)."""
    try:
        return f"{process.pid} ({process.status()}): {' '.join(process.cmdline())}"
    except psutil.Error as error:
        return f"{process.pid} ({type(error).__name__})"


def _wait_gone(processes: list[psutil.Process], timeout: float, server: LiveServer | None = None) -> float:
    started = time.monotonic()
    while any(_alive(p) for p in processes):
        if time.monotonic() - started >= timeout:
            left = [p for p in processes if _alive(p)]
            if server is not None:  # serve and the scheduler write their threads' stacks to the log
                for p in left:  # one at a time: stacks written at once interleave
                    with contextlib.suppress(psutil.Error):
                        if "corral serve" in " ".join(p.cmdline()) or "corral.scheduler" in p.cmdline():
                            p.send_signal(signal.SIGUSR1)
                            time.sleep(0.5)
            log = server.log()[-20_000:] if server is not None else ""
            raise AssertionError(f"still running after {timeout}s: {[_describe(p) for p in left]}\n{log}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_ends_serve_and_every_helper_but_not_the_workloads(tmp_path: Path, workers: int) -> None:
    with ExitStack() as stack:
        server, workload, helpers = _serve_with_a_workload(tmp_path, stack, workers)
        serve = psutil.Process(server.process.pid)
        server.process.send_signal(signal.SIGTERM)
        took = _wait_gone([serve, *helpers], timeout=15, server=server)  # well within CORRAL_SHUTDOWN_GRACE_S + cleanup
        assert server.process.wait(timeout=1) == 0  # a clean exit: the cleanup ran
        print(f"serve and {len(helpers)} helper(s) gone {took:.2f}s after SIGTERM")
        # The built-in agent stops asking before the server goes: no failed poll logged.
        assert "failed" not in server.log(), server.log()
        assert psutil.pid_exists(workload) and _alive(psutil.Process(workload)), "the workload must survive serve"


@pytest.mark.parametrize("workers", [1, 2])
def test_every_helper_ends_on_its_own_when_serve_is_killed(tmp_path: Path, workers: int) -> None:
    with ExitStack() as stack:
        server, workload, helpers = _serve_with_a_workload(tmp_path, stack, workers)
        os.kill(server.process.pid, signal.SIGKILL)  # serve alone: no cleanup of its own can run
        server.process.wait(timeout=5)
        took = _wait_gone(helpers, timeout=5)  # the scheduler at once; uvicorn's workers within 1 s
        print(f"{len(helpers)} helper(s) of a killed serve gone {took:.2f}s after it")
        assert _alive(psutil.Process(workload)), "the workload must survive serve"


def test_workers_still_starting_when_serve_is_killed_end_on_their_own(tmp_path: Path) -> None:
    """A worker that has not built its app yet when serve dies ends too (it once took init,
    its new parent, for serve and kept serving)."""
    with ExitStack() as stack:
        database = make_database("sqlite", tmp_path / "data", stack)
        server = _serve(database, tmp_path / "server.log", workers=2, wait_healthy=False)
        stack.callback(remove_local_components, database.data_dir / "local-cluster")
        stack.callback(stop_server, server, remove_workloads=False)
        serve = psutil.Process(server.process.pid)
        deadline = time.monotonic() + 60
        while not any("spawn_main" in _cmdline(p) for p in _children(serve)):
            assert server.process.poll() is None and time.monotonic() < deadline, server.log()
            time.sleep(0.01)
        before = _children(serve)
        os.kill(serve.pid, signal.SIGKILL)  # the worker is still importing: its app is not built yet
        server.process.wait(timeout=5)
        # Also those started between the look and the kill (init's now): they carry serve's pid.
        helpers = before + [p for p in _carrying_serve_pid(serve.pid) if p.pid not in {b.pid for b in before}]
        stack.callback(_kill_left, helpers)  # a failed run leaves no worker serving
        took = _wait_gone(helpers, timeout=30)  # the worker's start-up, then at once
        print(f"{len(helpers)} helper(s) of serve killed during start-up gone {took:.2f}s after it")


def _cmdline(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


def _carrying_serve_pid(serve_pid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get("CORRAL_SERVE_PID") == str(serve_pid):
                found.append(p)
    return found


def _kill_left(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _children(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return process.children(recursive=True)
    return []


def test_sigusr1_writes_every_threads_stack_to_the_log_and_serve_goes_on(tmp_path: Path) -> None:
    """What a server that will not stop (or is slow) is doing, without stopping it."""
    with ExitStack() as stack:
        server, _, helpers = _serve_with_a_workload(tmp_path, stack, workers=1)
        scheduler = next(p for p in helpers if "corral.scheduler" in p.cmdline())
        # One after the other: both write to serve's output, and stacks written at once interleave.
        for process, its_main in ((psutil.Process(server.process.pid), "corral/cli/server.py"),
                                  (scheduler, "corral/scheduler/__main__.py")):
            before = len(server.log())
            process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while its_main not in (dump := server.log()[before:]) or "Current thread" not in dump:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert scheduler.is_running() and server.process.poll() is None


def test_serve_runs_with_its_stderr_closed(tmp_path: Path) -> None:
    """`corral serve 2>&-` (no stderr for the stack dump to write to) still serves."""
    with ExitStack() as stack:
        database = make_database("sqlite", tmp_path / "data", stack)
        server = _serve(database, tmp_path / "server.log", workers=1, stderr_closed=True)  # waits for /healthz
        stack.callback(remove_local_components, database.data_dir / "local-cluster")
        stack.callback(stop_server, server, remove_workloads=False)
