"""The two systems bench/vs_slurm.py compares: a real Slurm cluster of its own (started with
scripts/slurm-test-cluster in a separate state directory and on separate ports, so the
tests' cluster under /tmp/corral-slurm is left alone) and `corral serve` with its built-in
cluster in a temporary data directory. Both are driven the way their users drive them:
sbatch/squeue/scancel, and Corral's HTTP API and CLI."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from _common import REPO, children_of, free_port

CLK = os.sysconf("SC_CLK_TCK")
CORRAL = Path(sys.executable).parent / "corral"


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children_of(p))
    return out


# --------------------------------------------------------------------------- Slurm

class Slurm:
    def __init__(self, state: Path, port_base: int, nodes: int, cpus: int, memory_mb: int) -> None:
        self.state = state
        self.env = {**os.environ, "CORRAL_SLURM_STATE": str(state), "CORRAL_SLURM_PORT_BASE": str(port_base),
                    "CORRAL_SLURM_NODES": str(nodes), "CORRAL_SLURM_NODE_CPUS": str(cpus),
                    "CORRAL_SLURM_NODE_MEMORY": str(memory_mb), "SLURM_CONF": str(state / "slurm.conf"),
                    # its own munged: the tests' cluster stops the host's when it stops
                    "CORRAL_SLURM_MUNGE_SOCKET": "/run/munge-corral-bench/munge.socket"}
        self.work = state / "work"

    def script(self, action: str) -> None:
        subprocess.run([str(REPO / "scripts" / "slurm-test-cluster"), action], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.script("start")
        self.work.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        self.script("stop")

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True).stdout

    def sbatch(self, name: str, command: str, cpus: int = 1) -> int:
        out = self.run("sbatch", "--parsable", "-J", name, "-o", "/dev/null", "-D", str(self.work),
                       "-c", str(cpus), "--wrap", command)
        return int(out.strip().split(";")[0])

    def count(self, states: str) -> int:
        return len(self.run("squeue", "-h", "-t", states, "-o", "%i").split())

    def wait_count(self, states: str, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.count(states) != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Slurm: {self.count(states)} jobs {states}, waited for {n}")
            time.sleep(0.1)

    def cancel_all(self) -> None:
        subprocess.run(["scancel", "-p", "gpu"], env=self.env, check=False)
        deadline = time.monotonic() + 120
        while self.run("squeue", "-h", "-o", "%i").split() and time.monotonic() < deadline:
            time.sleep(0.1)

    def daemon_pids(self) -> list[int]:
        pids = []
        for pidfile in [self.state / "slurmctld.pid", *sorted(self.state.glob("slurmd-*.pid"))]:
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(pidfile.read_text().strip()))
        return pids

    def stepd_pids(self) -> list[int]:
        """This cluster's slurmstepd processes (their working directory is its log directory)."""
        log = str(self.state / "log")
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "slurmstepd" and os.readlink(entry / "cwd") == log:
                    out.append(int(entry.name))
        return out


# --------------------------------------------------------------------------- Corral

class Http:
    """One keep-alive HTTP/1.1 connection (what a client library would hold), JSON in and out."""

    def __init__(self, base: str, token: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            self.conn.request(method, path, body=None if body is None else orjson.dumps(body),
                              headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if method == "POST":
                raise  # might have been done: never sent twice
            self.conn.close()  # the server closed an idle keep-alive connection: open a new one
            self.conn.request(method, path, body=None if body is None else orjson.dumps(body),
                              headers=self.headers)
            response = self.conn.getresponse()
        data = response.read()
        return response.status, (orjson.loads(data) if data else None)

    def close(self) -> None:
        self.conn.close()


class Corral:
    def __init__(self, root: Path, database_url: str | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.database_url else "SQLite"

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        # A work area of its own (one per instance), where the tests' clean-up looks for it.
        env.update(CORRAL_DATA_DIR=str(self.data), CORRAL_LOG_LEVEL="warning",
                   CORRAL_WORKLOAD_ROOT=str(_work_root_for(self.data / "local-cluster")))
        if self.database_url:
            env["CORRAL_DATABASE_URL"] = self.database_url
        log = open(self.root / "serve.log", "wb")  # noqa: SIM115 (the server's for its lifetime)
        self.proc = subprocess.Popen([str(CORRAL), "serve", "--port", str(port)], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral serve exited: {(self.root / 'serve.log').read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("corral serve did not answer")
            time.sleep(0.1)
        self.token = (self.data / "admin-token").read_text().strip()
        time.sleep(2)  # the scheduler's first pass and the agent's first heartbeat

    def http(self) -> Http:
        return Http(self.url, self.token)

    def set_quota(self, cpu_millicores: int) -> None:
        with contextlib.closing(self.http()) as h:
            status, body = h.call("PUT", "/api/v1/projects/default/quotas/local",
                                  {"guaranteed": {"cpu": f"{cpu_millicores}m", "memory": "4Gi"}})
        if status != 200:
            raise RuntimeError(f"quota: {status} {body}")

    def fill(self, running: int) -> None:
        """``running`` workloads running and a hard quota that makes every later one queue
        (``running`` millicores, 1m each)."""
        self.set_quota(running)
        with contextlib.closing(self.http()) as h:
            for i in range(running):
                status, body = h.call("POST", "/api/v1/workloads", self.body(f"busy{i}", ["sleep", "3600"]))
                if status != 201:
                    raise RuntimeError(f"busy{i}: {status} {body}")
            self.wait_count(h, running, "Running")

    @staticmethod
    def body(name: str, command: list[str]) -> dict[str, Any]:
        return {"type": "custom", "name": name, "project": "default", "command": command,
                "resources": {"cpu": "1m", "memory": "1Mi"}}

    def count(self, h: Http, *statuses: str) -> int:
        query = "&".join(f"status={s}" for s in statuses)
        status, body = h.call("GET", f"/api/v1/workloads?project=default&page_size=1&{query}")
        if status != 200:
            raise RuntimeError(f"list: {status} {body}")
        return int(body["total"])

    def wait_count(self, h: Http, n: int, *statuses: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.count(h, *statuses) != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Corral: {self.count(h, *statuses)} workloads {statuses}, waited for {n}")
            time.sleep(0.05)

    def control_plane_pids(self) -> list[int]:
        """serve and its children (the scheduler), not the workloads' supervisors."""
        assert self.proc is not None
        return [p for p in descendants(self.proc.pid) if not self._is_supervisor(p)]

    def supervisor_pids(self) -> list[int]:
        """This instance's supervisor processes: one per running component, plus the fork
        server they are forked from where there is one. Known by the state directory in
        their command line (supervisors started the old way) or in their open files (the
        fork server's log, each supervisor's lock)."""
        state = str(self.data / "local-cluster")
        out = []
        for entry in Path("/proc").iterdir():
            if not (entry.name.isdigit() and self._is_supervisor(int(entry.name))):
                continue
            with contextlib.suppress(OSError):
                if state.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
                    continue
                for fd in (entry / "fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd).startswith(state + "/"):
                            out.append(int(entry.name))
                            break
        return out

    @staticmethod
    def _is_supervisor(pid: int) -> bool:
        try:
            return b"corral.backends.local.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(CORRAL_SERVER=self.url, CORRAL_TOKEN=self.token, CORRAL_CONFIG=str(self.root / "cli.toml"),
                   NO_COLOR="1")
        return env

    def stop(self) -> None:
        """Stop serve, then every workload it left running (they outlive serve on purpose)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        _work_root_for(self.data)  # puts the repository on the path
        from tests.e2e.conftest import remove_local_components

        remove_local_components(self.data / "local-cluster", timeout=120)


def _work_root_for(state_dir: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.conftest import work_root_for

    return work_root_for(state_dir)


def fresh_postgres_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
