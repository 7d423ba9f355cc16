"""The built-in cluster's agent, end to end against `corral serve` (SQLite, fresh data dir).

    .venv/bin/python bench/agent_latency.py [--samples 50] [--components 1000]

1. submission to Running: submit a trivial command (`sleep 2`), poll
   ``GET /api/v1/workloads/{id}`` every 5 ms until it shows Running (client-side clock).
2. exit to API: a job that exits (`sleep 0.3`); from the process's exit time (the
   workload's ``finished_at``, as the backend observed it) to the first API read that
   shows it Complete.
3. overhead: --components workloads running `sleep` at once; the server process's CPU
   (agent thread, scheduler and API included) over 30 s of idling, its RSS, and the
   supervisors' RSS (one small process per component).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from _common import children_of, cpu_seconds, machine_note, rss_kib, start_serve, submit, summary, wait_for



def supervisors_rss_kib(state_dir: Path) -> tuple[int, int]:
    """RSS of the live supervisors (each writes its pid into its component's lock file;
    forked by one server, they no longer name the state directory on their command line)."""
    total = count = 0
    for lock in (state_dir / "components").glob("*/supervisor.lock"):
        try:
            pid = int(lock.read_text())
            if b"corral.backends.local.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes():
                total += rss_kib(pid)["VmRSS"]
                count += 1
        except (OSError, ValueError, KeyError):
            pass
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--components", type=int, default=1000)
    args = parser.parse_args()
    print(machine_note(), flush=True)
    data_dir = Path(tempfile.mkdtemp(prefix="corral-agent-bench-"))
    proc, url, token = start_serve(data_dir)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        to_running = []
        for i in range(args.samples):
            t0 = time.time()
            wid = submit(client, f"run{i}", "sleep 2")
            _, seen = wait_for(client, wid, {"Running", "Complete", "Failed"})
            to_running.append(seen - t0)
            client.delete(f"/api/v1/workloads/{wid}")
        s = summary(to_running)
        print(f"submission to Running (visible in the API): p50 {s['p50']:.0f} ms, p90 {s['p90']:.0f} ms, "
              f"p99 {s['p99']:.0f} ms (n={s['n']})", flush=True)

        exit_to_api = []
        for i in range(args.samples):
            wid = submit(client, f"exit{i}", "sleep 0.3")
            d, seen = wait_for(client, wid, {"Complete", "Failed"})
            finished = datetime.fromisoformat(d["finished_at"].replace("Z", "+00:00")).timestamp()
            exit_to_api.append(seen - finished)
        s = summary(exit_to_api)
        print(f"process exit to status in the API: p50 {s['p50']:.0f} ms, p90 {s['p90']:.0f} ms, "
              f"p99 {s['p99']:.0f} ms (n={s['n']})", flush=True)

        if args.components:
            t0 = time.monotonic()
            ids = [submit(client, f"idle{i}", "sleep 3600") for i in range(args.components)]
            for wid in ids:
                wait_for(client, wid, {"Running"}, timeout=600)
            print(f"{args.components} components Running after {time.monotonic() - t0:.0f} s", flush=True)
            time.sleep(5)
            pids = [proc.pid] + children_of(proc.pid)
            before = sum(cpu_seconds(p) for p in pids)
            time.sleep(30)
            after = sum(cpu_seconds(p) for p in pids)
            server_rss = rss_kib(proc.pid)["VmRSS"]
            sup_rss, sups = supervisors_rss_kib(data_dir / "local-cluster")
            print(f"with {args.components} running: server process (API, agent thread) and scheduler use "
                  f"{(after - before) / 30 * 100:.1f}% of one core idling; server RSS {server_rss / 1024:.0f} MiB; "
                  f"{sups} supervisors hold {sup_rss / 1024:.0f} MiB RSS in all "
                  f"({sup_rss / max(1, sups):.0f} KiB each)", flush=True)
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.e2e.conftest import remove_local_components

        remove_local_components(data_dir / "local-cluster", timeout=120)


if __name__ == "__main__":
    main()
