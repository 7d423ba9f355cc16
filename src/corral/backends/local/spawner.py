"""Starting supervisors: through one fork server (``supervisor serve``), not one interpreter
each.

A supervisor started as its own ``python -m ...`` costs an interpreter start (~20 ms) and
its own copy of everything the interpreter loads (~4 MB private memory per component).
Forked from one server that has loaded the supervisor module, it starts in about a
millisecond and shares those pages copy-on-write with the server and every other
supervisor; what it owns alone is what it writes. Supervisors detach from the server at
once (new session), so they outlive it, the agent and the control plane as before; a server
that died is started again at the next spawn, and should it fail to start, supervisors are
started the old way.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class SupervisorSpawner:
    def __init__(self, python: str, env: dict[str, str], log_path: Path) -> None:
        self.python = python
        self.env = env
        self.log_path = log_path  # the fork server's own output (its children write their own logs)
        self._server: subprocess.Popen[bytes] | None = None
        self._direct: list[subprocess.Popen[bytes]] = []  # started the old way, reaped later
        self._lock = threading.Lock()

    def _command(self, *args: str) -> list[str]:
        # -S: no site-packages scan at start; PYTHONPATH has what the supervisor needs.
        return [self.python, "-S", "-m", "corral.backends.local.supervisor", *args]

    def spawn(self, mode: str, component_dir: Path) -> None:
        """Start a supervisor for the component (``run`` or ``reap``); returns at once."""
        line = f"{mode} {component_dir}\n".encode()
        with self._lock:
            for _ in range(2):  # a server that died since the last spawn is started again once
                server = self._ensure_server()
                if server is None:
                    break
                try:
                    assert server.stdin is not None
                    server.stdin.write(line)
                    server.stdin.flush()
                    return
                except (BrokenPipeError, OSError):
                    self._server = None
            self._spawn_directly(mode, component_dir)

    def _ensure_server(self) -> subprocess.Popen[bytes] | None:
        if self._server is not None and self._server.poll() is None:
            return self._server
        try:
            with open(self.log_path, "ab") as out:
                self._server = subprocess.Popen(
                    self._command("serve"), stdin=subprocess.PIPE, stdout=out, stderr=out, close_fds=True,
                    env=self.env, cwd="/", start_new_session=True)
        except OSError as exc:
            log.warning("could not start the supervisors' fork server (%s); starting supervisors one by one", exc)
            self._server = None
        return self._server

    def _spawn_directly(self, mode: str, component_dir: Path) -> None:
        with open(component_dir / "supervisor.log", "ab") as out:
            self._direct.append(subprocess.Popen(
                self._command(mode, str(component_dir)), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                close_fds=True, cwd=component_dir, env=self.env))

    def reap(self) -> None:
        """Collect the short-lived parents of supervisors started the old way."""
        with self._lock:
            self._direct = [p for p in self._direct if p.poll() is None]

    def close(self, timeout_s: float = 5.0) -> None:
        """The server ends at end of input (supervisors it started keep running)."""
        with self._lock:
            server, self._server = self._server, None
            if server is not None:
                try:
                    assert server.stdin is not None
                    server.stdin.close()
                except OSError:
                    pass
                try:
                    server.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            for proc in self._direct:
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            self._direct.clear()

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server is not None and self._server.poll() is None else None


def supervisor_env() -> dict[str, str]:
    """What a supervisor's interpreter needs: Corral's source on its path, nothing else."""
    import corral

    src = str(Path(corral.__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    # No bytecode written: Corral's own tree stays as installed.
    return {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1"}
