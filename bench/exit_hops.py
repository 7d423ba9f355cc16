"""Where the time goes from a process's exit to its status in the API, hop by hop.

    .venv/bin/python bench/exit_hops.py [--samples 80] [--poll 0.005]

Runs `corral serve` (SQLite, fresh data directory, built-in cluster) in a child process
of this script with timestamps logged at each hop (functions wrapped in that process
only; nothing of Corral changes), then submits --samples jobs one at a time, each
`sleep 0.3; date +%s.%N > mark`, polling ``GET /api/v1/workloads/{id}`` every --poll s
until it shows Complete (as `bench/vs_slurm.py` does). Per hop, p50 and p90:

- mark -> exit: the shell's exit after `date`, as the supervisor recorded it
- exit -> observed: the supervisor's status write, inotify, the agent's observe
- observed -> POST sent, POST -> transaction: HTTP in, validation, the agent's token
- transaction -> applied -> committed: the status write, then its commit
- committed -> answer: the response back to the agent
- answer -> seen: the bench's poll (its granularity)

Compare runs of two trees with PYTHONPATH=<other tree>/src.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

from _common import free_port, machine_note, pct


def serve_with_timestamps(log_path: str, argv: list[str]) -> None:
    """The child: wrap the hops' functions, then run `corral serve`."""
    out = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()

    def log(kind: str, **kw: object) -> None:
        with lock:
            out.write(json.dumps({"k": kind, "t": time.time(), **kw}) + "\n")

    import corral.agent.client as agent_client
    import corral.api.routes.clusters as routes
    import corral.backends.local.backend as local

    report, observe = agent_client.AgentClient.report, local.LocalBackend.observe
    apply, write_tx = routes.apply_component_updates, routes.write_tx

    def timed_report(self, updates):  # type: ignore[no-untyped-def]
        done = [u["component_id"] for u in updates if u.get("status") in ("Completed", "Failed")]
        if done:
            log("post_start", ids=done)
        result = report(self, updates)
        if done:
            log("post_end", ids=done)
        return result

    def timed_observe(self):  # type: ignore[no-untyped-def]
        seen = observe(self)
        done = [o.component_id for o in seen if o.status.value in ("Completed", "Failed")]
        if done:
            log("observed", ids=done)
        return seen

    def timed_apply(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = apply(conn, *args, **kwargs)
        log("applied")
        return result

    @contextlib.contextmanager
    def timed_tx(engine):  # type: ignore[no-untyped-def]
        log("tx_enter")
        with write_tx(engine) as conn:
            yield conn
        log("committed")

    agent_client.AgentClient.report = timed_report
    local.LocalBackend.observe = timed_observe
    routes.apply_component_updates, routes.write_tx = timed_apply, timed_tx
    from corral.cli.main import app
    sys.argv = ["corral", *argv]
    app()


HOPS = ("mark -> exit", "exit -> observed", "observed -> POST sent", "POST -> transaction",
        "transaction -> applied", "applied -> committed", "committed -> answer", "answer -> seen", "total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=80)
    ap.add_argument("--poll", type=float, default=0.005)
    ap.add_argument("--serve-log", help=argparse.SUPPRESS)  # the child
    args, rest = ap.parse_known_args()
    if args.serve_log:
        serve_with_timestamps(args.serve_log, rest)
        return
    print(machine_note(), flush=True)
    data = Path(tempfile.mkdtemp(prefix="corral-exit-hops-"))
    work = Path(tempfile.mkdtemp(prefix="corral-exit-hops-work-"))
    marks = Path(tempfile.mkdtemp(prefix="corral-exit-hops-marks-"))
    work.chmod(0o711)
    marks.chmod(0o1777)  # the jobs write here as their project's user
    log_path = data / "hops.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_DATA_DIR=str(data), CORRAL_LOG_LEVEL="warning", CORRAL_WORKLOAD_ROOT=str(work))
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-log", str(log_path), "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        time.sleep(3)  # the scheduler's first pass, the agent's first heartbeat
        token = (data / "admin-token").read_text().strip()
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        runs = []
        for i in range(args.samples):
            mark = marks / f"m{i}"
            created = client.post("/api/v1/workloads", json={
                "type": "custom", "name": f"exit{i}", "project": "default",
                "command": ["sh", "-c", f"sleep 0.3; date +%s.%N > {mark}"],
                "resources": {"cpu": "100m", "memory": "64Mi"}})
            created.raise_for_status()
            deadline = time.monotonic() + 60
            while True:
                detail = client.get(f"/api/v1/workloads/{created.json()['id']}").json()
                if detail["status"] in ("Complete", "Failed"):
                    seen = time.time()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workload {detail['id']} still {detail['status']}")
                time.sleep(args.poll)
            finished = datetime.fromisoformat(detail["finished_at"].replace("Z", "+00:00")).timestamp()
            runs.append((float(mark.read_text()), finished, seen, detail["components"][0]["id"]))
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    events = [json.loads(line) for line in log_path.read_text().splitlines()]

    def first(kind: str, after: float, component: int | None = None) -> float:
        return next(e["t"] for e in events if e["k"] == kind and e["t"] >= after
                    and (component is None or component in e.get("ids", ())))

    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    for mark, finished, seen, cid in runs:
        observed = first("observed", mark - 0.05, cid)
        sent = first("post_start", mark - 0.05, cid)
        entered = first("tx_enter", sent)
        applied = first("applied", entered)
        committed = first("committed", applied)
        answered = first("post_end", committed, cid)
        points = (mark, finished, observed, sent, entered, applied, committed, answered, seen)
        for hop, (a, b) in zip(HOPS, zip(points, points[1:])):
            hops[hop].append(b - a)
        hops["total"].append(seen - mark)
    print(f"{args.samples} exits, poll every {args.poll * 1000:.0f} ms")
    print("| hop | p50 ms | p90 ms |\n|---|---:|---:|")
    for hop, values in hops.items():
        print(f"| {hop} | {pct(values, 50) * 1000:.2f} | {pct(values, 90) * 1000:.2f} |")


if __name__ == "__main__":
    main()
