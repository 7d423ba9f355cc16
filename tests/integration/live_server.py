"""A real server process: uvicorn serving Corral's app over a test database, on a free port.

For what only a real server shows: keep-alive connections, client addresses, the
server's own memory, and tools (schemathesis) that speak HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def peak_rss_bytes(self) -> int:
        """The server's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(db_url: str, data_dir: Path, **env: str) -> Iterator[LiveServer]:
    port = _free_port()
    log = data_dir / "server.log"
    environment = {**os.environ, "CORRAL_DATABASE_URL": db_url, "CORRAL_DATA_DIR": str(data_dir),
                   "CORRAL_BOOTSTRAP": "false", "CORRAL_HTTP_THREADS": "4", **env}
    with log.open("wb") as out:
        # Clients may still come from other loopback addresses (127.0.0.2, ...).
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "corral.api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=environment)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
