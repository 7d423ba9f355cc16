"""The engines' own commands for the suite, checked where this host can check them: a
shell that is PID 1 of a PID namespace (as in a container) ignores ``kill -9 $$`` and the
Kubernetes engine's command still dies by the signal; the Kubernetes engine's service
listens beyond the loopback address (a probe from another address reaches it), the
local engine's only there. The engines' other needs run with the suite itself."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conformance.engine_kubernetes import KubernetesEngine
from tests.conformance.engine_local import LocalEngine
from tests.conformance.engines import Engine


def _engine(cls: type[Engine]) -> Engine:
    return object.__new__(cls)  # only the command-making methods, no cluster behind them


def _as_pid_1(shell: str) -> int:
    assert shutil.which("unshare"), "util-linux's unshare is needed"
    done = subprocess.run(["unshare", "--pid", "--fork", "/bin/sh", "-c", shell], capture_output=True, timeout=10,
                          check=False)
    return done.returncode


def test_pid_1_survives_kill_9_of_itself_and_the_kubernetes_engines_command_does_not():
    assert _as_pid_1(f"{_engine(LocalEngine).die_by_signal(9)}; exit 5") == 5  # the problem: PID 1 lived on
    assert _as_pid_1(_engine(KubernetesEngine).die_by_signal(9)) == 128 + 9  # read back as -9 (states.exit_code)
    # as a plain process both die by the signal
    for engine in (_engine(LocalEngine), _engine(KubernetesEngine)):
        done = subprocess.run(["/bin/sh", "-c", engine.die_by_signal(9)], timeout=10, check=False)
        assert done.returncode in (-9, 137), done.returncode


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize(("cls", "beyond_loopback"), [(LocalEngine, False), (KubernetesEngine, True)])
def test_where_the_suites_service_listens(cls: type[Engine], beyond_loopback: bool):
    engine = _engine(cls)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = engine.serve_command().replace("{port}", str(port)).replace(f"exec {engine.python} ",
                                                                         f"exec {sys.executable} ")
    process = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _reachable("127.0.0.1", port):
            assert time.monotonic() < deadline and process.poll() is None, "the service did not start"
            time.sleep(0.05)
        # 127.0.0.2 is this host too, but not the address a loopback-only server listens on
        assert _reachable("127.0.0.2", port) is beyond_loopback
    finally:
        process.kill()
        process.wait()
