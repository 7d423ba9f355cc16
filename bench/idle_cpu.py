"""CPU of an idle control plane: `corral serve` (API, scheduler process, built-in cluster's
agent) on a fresh data dir (SQLite) with nothing to do, and the latencies that waiting
for work instead of polling for it must not cost.

    .venv/bin/python bench/idle_cpu.py [--seconds 60] [--samples 30] [--database-url URL]

1. idle CPU: the server process and every process under it (the scheduler; no workload
   runs), user + system time over ``--seconds`` after 10 s of settling; per process and in
   all, as % of one core. Slurm's daemons idle at ~0 (../shared/spec/performance.md).
2. submission to Running visible in the API (as bench/agent_latency.py: a 5 ms poll of
   ``GET /api/v1/workloads/{id}``), p50/p99, measured after the idle window.
3. process exit to finished status visible in the API, p50/p99 (as bench/agent_latency.py).

With ``--database-url`` (PostgreSQL) the server uses that database instead of SQLite; it
is emptied first (every table of schema public dropped): give it a database of its own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from _common import children_of, cpu_seconds, machine_note, start_serve, submit, summary, wait_for



def reset_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")




def name_of(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(a.decode(errors="replace") for a in args[:4] if a)
    return "scheduler" if "corral.scheduler" in text else ("serve (API + agent thread)" if "serve" in text
                                                           else text[:60])






def wakeups(pid: int) -> int:
    """Times the process's threads went to sleep and were woken (voluntary context switches):
    finer than CPU time, which /proc counts in 10 ms ticks."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        total += next(int(line.split()[1]) for line in text.splitlines()
                      if line.startswith("voluntary_ctxt_switches:"))
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    print(machine_note(), flush=True)
    if args.database_url:
        reset_postgres(args.database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="corral-idle-bench-"))
    proc, url, token = start_serve(data_dir, args.database_url)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        time.sleep(10)  # first heartbeat, the agent's first resync, the scheduler's first passes
        pids = [proc.pid] + children_of(proc.pid)
        before = {p: cpu_seconds(p) for p in pids}
        woken = {p: wakeups(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        took = time.monotonic() - t0
        used = {p: cpu_seconds(p) - before[p] for p in pids}
        woken = {p: wakeups(p) - woken[p] for p in pids}
        for p in pids:
            print(f"  {name_of(p)} (pid {p}): {used[p] / took * 100:.2f}% of a core, "
                  f"{woken[p] / took:.1f} wake-ups/s", flush=True)
        print(f"idle CPU of the control plane over {took:.0f} s: {sum(used.values()) / took * 100:.2f}% of a core "
              f"(target <= 1%; Slurm ~0)", flush=True)

        to_running = []
        for i in range(args.samples):
            t = time.time()
            wid = submit(client, f"run{i}", "sleep 2")
            _, seen = wait_for(client, wid, {"Running", "Complete", "Failed"})
            to_running.append(seen - t)
            client.delete(f"/api/v1/workloads/{wid}")
            time.sleep(0.2)  # each submission finds an idle control plane
        s = summary(to_running)
        print(f"submission to Running (visible in the API): p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms "
              f"(n={s['n']}; Slurm 702/855 ms)", flush=True)

        exit_to_api = []
        for i in range(args.samples):
            wid = submit(client, f"exit{i}", "sleep 0.3")
            d, seen = wait_for(client, wid, {"Complete", "Failed"})
            finished = datetime.fromisoformat(d["finished_at"].replace("Z", "+00:00")).timestamp()
            exit_to_api.append(seen - finished)
        s = summary(exit_to_api)
        print(f"process exit to status in the API: p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms "
              f"(n={s['n']}; Slurm 15/32 ms)", flush=True)
    finally:
        proc.send_signal(2)
        proc.wait(timeout=60)
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.e2e.conftest import remove_local_components

        remove_local_components(data_dir / "local-cluster", timeout=120)


if __name__ == "__main__":
    main()
