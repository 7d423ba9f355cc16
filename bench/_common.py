"""Shared by the benchmark scripts: the seeded world's names, tokens, a real server, stats.

Not a test helper: every script here drives the real application (``corral.api.app``)
over a real database, the way a deployment runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from corral.db.engine import make_engine, normalise_url, write_tx
from corral.db.tables import users
from corral.services import users as user_service
from corral.services.principal import SYSTEM, Principal

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"  # git-ignored

# The seeded world (bench/seed.py). The big projects hold --big-size workloads each.
BIG_PROJECTS = ("foundation-models", "applied-nlp", "vision-platform")
ADMIN_EMAIL = "bench-admin@example.com"
MEMBER_EMAIL = "maria.garcia@example.com"  # a member (not admin) of every big project
SUBMIT_PROJECT = "bench-submit"  # empty at seed time; submit_throughput.py writes here
SUBMIT_EMAIL = "bench-submitter@example.com"
COMMON_WORD = "llama"  # in ~18.5% of names (~37k rows of a 200k project)
RARE_WORD = "quokka"  # in 11 names of the first big project (and 4 elsewhere)
FAILED_SHARE = 0.08


def plain_pg_url(url: str) -> str:
    """psycopg wants postgresql://, not SQLAlchemy's postgresql+psycopg://."""
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def mint_token(engine: Engine, email: str, name: str = "bench") -> tuple[str, Principal]:
    """A fresh API token for an existing user (as `corral users token` would mint it)."""
    with write_tx(engine) as conn:
        row = conn.execute(select(users.c.id, users.c.email, users.c.role).where(users.c.email == email)).one()
        secret, _ = user_service.create_token(conn, user_id=row.id, name=name, expires_at=None, actor=SYSTEM)
    return secret, Principal(user_id=row.id, email=row.email, role=row.role)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def run_server(database_url: str, *, workers: int = 1, port: int | None = None,
               extra_env: dict[str, str] | None = None, log_name: str = "server",
               app: str = "corral.api.app:create_app") -> Iterator[Server]:
    """`python -m uvicorn --factory corral.api.app:create_app` in a subprocess, as deployed.

    One worker: the subprocess is the server process itself (its RSS is the server's).
    """
    port = port or free_port()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / f"{log_name}-{port}.log"
    env = {**os.environ, "CORRAL_DATABASE_URL": database_url, "CORRAL_BOOTSTRAP": "false",
           "CORRAL_LOG_LEVEL": "warning", **(extra_env or {})}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with open(log_path, "wb") as log:
        if not app.startswith("corral."):
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log_path}")
            time.sleep(0.2)
        yield Server(proc, base, log_path)
    finally:
        # Only the process group we started (start_new_session=True above).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def pct(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted samples."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in samples_s]
    return {"n": len(ms), "p50": pct(ms, 50), "p90": pct(ms, 90), "p99": pct(ms, 99), "max": max(ms) if ms else 0.0,
            "mean": statistics.fmean(ms) if ms else 0.0}


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak) / RssAnon / RssFile of a process, in KiB, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
            out[key] = int(value.split()[0])
    return out


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


def code_version() -> str:
    """The commit, and a hash of uncommitted changes under src/ if any: which code was measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "src"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not diff:
        return head
    import hashlib

    return f"{head}+src-diff-{hashlib.sha1(diff).hexdigest()[:8]}"


def cpu_pressure() -> str:
    """Linux PSI: share of the last 60 s in which some runnable task waited for a CPU."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "n/a"
    fields = dict(f.split("=") for f in line.split()[1:])
    return f"{float(fields['avg60']):.0f}%"


def machine_note() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} and CPU pressure "
            f"(PSI some avg60) {cpu_pressure()} at start; code {code_version()}")


def save_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def engine_for(url: str, pool_size: int = 5) -> Engine:
    return make_engine(url, pool_size=pool_size)


def submit(client: Any, name: str, command: str) -> int:
    """A trivial custom workload in the default project; its id."""
    r = client.post("/api/v1/workloads", json={"type": "custom", "name": name, "project": "default",
                                               "command": command, "resources": {"cpu": "1m", "memory": "1Mi"}})
    r.raise_for_status()
    return r.json()["id"]


def wait_for(client: Any, wid: int, statuses: set[str], timeout: float = 60) -> tuple[dict, float]:
    """Poll the workload every 5 ms until its status is one of ``statuses``; it and when."""
    deadline = time.monotonic() + timeout
    while True:
        d = client.get(f"/api/v1/workloads/{wid}").json()
        if d["status"] in statuses:
            return d, time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"workload {wid} still {d['status']}: {d['status_reason']}")
        time.sleep(0.005)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_serve(data_dir: Path, database_url: str | None = None,
                env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str, str]:
    """`corral serve` on a fresh data directory (and work area of its own: two instances
    may not share one), ready: its process, URL and admin token. ``env_extra``: settings
    added to its environment (``CORRAL_HISTORY_INTERVAL_S``, ...)."""
    import tempfile

    corral = Path(sys.executable).parent / "corral"
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-work-"))
    work.chmod(0o711)  # workload users pass through to their project's directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_DATA_DIR=str(data_dir), CORRAL_LOG_LEVEL="warning", CORRAL_WORKLOAD_ROOT=str(work))
    if database_url:
        env["CORRAL_DATABASE_URL"] = database_url
    env.update(env_extra or {})
    proc = subprocess.Popen([str(corral), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    time.sleep(2)  # the scheduler's first pass and the agent's first heartbeat
    return proc, url, (data_dir / "admin-token").read_text().strip()
