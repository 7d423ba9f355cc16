"""POST /api/v1/workloads throughput and latency through HTTP, driven by wrk.

    apt-get install -y wrk    # once
    .venv/bin/python bench/submit_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/corral_bench

Needs a seeded database (bench/seed.py): submissions go to the project ``bench-submit``
(member ``bench-submitter@example.com``, quota on two clusters, no limit), alongside the
1,000,000 seeded workloads, so every insert maintains the real indexes (11 b-trees and the
trigram GIN index on PostgreSQL, the FTS5 table on SQLite).

For each server configuration (``--workers``: uvicorn worker processes) the real server is
started (``python -m uvicorn --factory corral.api.app:create_app``), warmed up, then wrk
(one thread, C code: little CPU next to the server) keeps ``--connections`` requests in
flight for ``--duration`` seconds (closed loop: each connection sends its next submission
when the last one is answered; every body has a unique name). Reported: submissions/s,
latency percentiles from wrk, non-2xx responses, CPU used by the server processes and by
the whole machine (from /proc). Rows written are checked against the 2xx count, and
workload_counts against the table. The agents' heartbeats are kept fresh in-process
(the clusters would otherwise turn unhealthy after 90 s and submissions get 503).

Targets: >= 1,000 submissions/s sustained, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import select, text  # noqa: E402

import _common as C  # noqa: E402
from corral.db.engine import read_tx, write_tx  # noqa: E402
from corral.db.tables import projects  # noqa: E402
from corral.services import clusters as cluster_service  # noqa: E402
from corral.services.users import authenticate  # noqa: E402
from corral.services.workloads import parse_spec, prepare_submission, write_submissions  # noqa: E402

LUA = Path(__file__).resolve().parent / "submit.lua"
CLK = os.sysconf("SC_CLK_TCK")


def proc_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(C.children_of(p))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK  # utime + stime
    return total


def database_backends(engine: Any) -> list[int]:
    """PostgreSQL backend pids connected to the benchmark's database (the server's pool and ours)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
                    .scalars())


def cpu_of_backends(engine: Any) -> dict[int, float]:
    """CPU seconds of each backend of the database (compared per pid: backends come and go)."""
    return {p: cpu_seconds([p]) for p in database_backends(engine)}


def postmaster_children_cpu() -> float:
    """CPU seconds of PostgreSQL backends that have exited (reaped by the postmaster), any database."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "postgres":
                continue
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parent = Path(f"/proc/{fields[1]}/comm").read_text().strip()
        except OSError:
            continue
        if parent != "postgres":  # the postmaster itself
            return (int(fields[13]) + int(fields[14])) / CLK  # cutime + cstime
    return 0.0


def pg_snapshot(engine: Any) -> tuple[dict[int, float], float, int]:
    """(live backends' CPU, exited backends' CPU, sessions opened so far on this database)."""
    if engine.dialect.name != "postgresql":
        return {}, 0.0, 0
    with engine.connect() as conn:
        sessions = conn.execute(text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                                ).scalar_one()
    return cpu_of_backends(engine), postmaster_children_cpu(), int(sessions)


def pg_cpu_between(a: tuple[dict[int, float], float, int], b: tuple[dict[int, float], float, int]) -> float:
    live = sum(v - a[0].get(p, 0.0) for p, v in b[0].items())
    exited = sum(v for p, v in a[0].items() if p not in b[0])  # counted again in the postmaster's children
    return live - exited + (b[1] - a[1])


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class Heartbeats(threading.Thread):
    """Keeps the submit project's clusters healthy, as their agents would."""

    def __init__(self, engine: Any, cluster_ids: list[int], every_s: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.engine, self.cluster_ids, self.every_s = engine, cluster_ids, every_s
        self.stop = threading.Event()

    def beat(self) -> None:
        with write_tx(self.engine) as conn:
            for cid in self.cluster_ids:
                cluster_service.record_heartbeat(conn, cid, capacity=None, nodes=None, unhealthy_after_s=90)

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            self.beat()


def submitted_rows(engine: Any, project_id: int) -> tuple[int, int]:
    """(workloads of the project, their kept count), read in one statement (one snapshot)."""
    with engine.connect() as conn:
        rows, kept = conn.execute(text(
            "SELECT (SELECT count(*) FROM workloads WHERE project_id = :p), "
            "(SELECT coalesce(sum(count), 0) FROM workload_counts WHERE project_id = :p)"), {"p": project_id}).one()
    return int(rows), int(kept)


def settled_rows(engine: Any, project_id: int) -> tuple[int, int]:
    """Once the server has written what was still in flight when wrk stopped."""
    last = submitted_rows(engine, project_id)
    for _ in range(40):
        time.sleep(0.25)
        now = submitted_rows(engine, project_id)
        if now == last:
            return now
        last = now
    return last


BODY = {"type": "fine_tuning", "name": "llama-3-8b-sft-breakdown", "project": C.SUBMIT_PROJECT,
        "base_model": "meta-llama/Meta-Llama-3-8B", "dataset": "s3://datasets/alpaca-clean",
        "command": "python finetune.py --epochs 3", "resources": {"gpu": 1, "cpu": 8, "memory": "64Gi"}}


def breakdown(engine: Any, token: str, principal: Any, cluster: str) -> list[dict[str, Any]]:
    """What one submission costs, step by step, in-process (no HTTP): wall time and CPU split."""
    me = os.getpid()
    spec = parse_spec({**BODY, "cluster": cluster})

    def prep() -> Any:
        with read_tx(engine) as conn:
            return prepare_submission(conn, principal, spec, unhealthy_after_s=90)

    item = prep()
    steps: list[tuple[str, Any, int, int]] = [
        ("authenticate (token -> principal)", lambda: authenticate(engine, token), 1000, 1),
        ("parse_spec (pydantic)", lambda: parse_spec({**BODY, "cluster": cluster}), 1000, 1),
        ("prepare_submission in read_tx", prep, 1000, 1),
    ]
    for batch in (1, 8, 32, 128):
        def write(batch: int = batch) -> None:
            with write_tx(engine) as conn:
                write_submissions(conn, [item] * batch)
        steps.append((f"write_submissions, batch of {batch}", write, max(8, 1000 // batch), batch))
    out = []
    for label, fn, n, per in steps:
        fn()
        c0, g0, t0 = cpu_seconds([me]), cpu_of_backends(engine), time.perf_counter()
        for _ in range(n):
            fn()
        wall = time.perf_counter() - t0
        c1, g1 = cpu_seconds([me]), cpu_of_backends(engine)
        items = n * per
        pg = sum(v - g0.get(p, 0.0) for p, v in g1.items())
        out.append({"step": label, "wall_ms": 1000 * wall / items, "python_cpu_ms": 1000 * (c1 - c0) / items,
                    "db_cpu_ms": 1000 * pg / items, "rate": items / wall})
    return out


def run_wrk(base_url: str, connections: int, duration: int, env: dict[str, str], threads: int = 1) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
           "-s", str(LUA), base_url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    data["stdout"] = out.stdout
    data["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--connections", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--duration", type=int, default=20, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of wrk before measuring")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--tag", default="")
    ap.add_argument("--app", default="corral.api.app:create_app",
                    help="app factory to serve (bench/variants.py has variants of it)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment")
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                    help="skip the in-process cost breakdown of one submission")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    backend = C.dialect_of(args.database_url)
    engine = C.engine_for(args.database_url, pool_size=2)
    token, principal = C.mint_token(engine, C.SUBMIT_EMAIL)
    with engine.connect() as conn:
        pid = conn.execute(select(projects.c.id).where(projects.c.name == C.SUBMIT_PROJECT)).scalar_one()
        cl = conn.execute(text(
            "SELECT c.id, c.name FROM quotas q JOIN clusters c ON c.id = q.cluster_id WHERE q.project_id = :p "
            "ORDER BY c.name"), {"p": pid}).all()
        total_workloads = conn.execute(text("SELECT count(*) FROM workloads")).scalar_one()
    hb = Heartbeats(engine, [r.id for r in cl])
    hb.beat()
    hb.start()
    note = C.machine_note()
    extra_env = dict(e.split("=", 1) for e in args.env)
    if args.app != "corral.api.app:create_app" or extra_env:
        note += f"; app {args.app} {' '.join(args.env)}"
    print(f"# submissions, {backend}: {total_workloads:,} workloads stored; project {C.SUBMIT_PROJECT} on "
          f"{', '.join(r.name for r in cl)}; {note}", flush=True)
    steps = breakdown(engine, token, principal, cl[0].name) if args.breakdown else []
    for st in steps:
        print(f"  in-process {st['step']:<36} {st['wall_ms']:.3f} ms wall, Python CPU {st['python_cpu_ms']:.3f} ms, "
              f"DB CPU {st['db_cpu_ms']:.3f} ms ({st['rate']:.0f}/s)", flush=True)
    env = {"CORRAL_TOKEN": token, "CORRAL_PROJECT": C.SUBMIT_PROJECT, "CORRAL_CLUSTERS": ",".join(r.name for r in cl)}
    results = []
    run_no = 0
    try:
        for workers in args.workers:
            with C.run_server(args.database_url, workers=workers, log_name=f"submit-{backend}-w{workers}",
                              app=args.app, extra_env=extra_env) as server:
                time.sleep(1.0 if workers == 1 else 3.0)  # let every worker come up
                run_no += 1
                run_wrk(server.base_url, max(args.connections), args.warmup,
                        {**env, "CORRAL_RUN": f"{int(time.time())}w{run_no}"}, args.wrk_threads)
                for conns in args.connections:
                    run_no += 1
                    before_rows, _ = settled_rows(engine, pid)
                    pids = proc_tree(server.pid)
                    cpu0, (busy0, tot0), pg0 = cpu_seconds(pids), machine_busy(), pg_snapshot(engine)
                    t0 = time.monotonic()
                    w = run_wrk(server.base_url, conns, args.duration,
                                {**env, "CORRAL_RUN": f"{int(time.time())}w{run_no}"}, args.wrk_threads)
                    wall = time.monotonic() - t0
                    cpu1, (busy1, tot1), pg1 = cpu_seconds(pids), machine_busy(), pg_snapshot(engine)
                    pg_cpu = pg_cpu_between(pg0, pg1)
                    after_rows, kept = settled_rows(engine, pid)
                    ok = w["requests"] - w["non2xx"]
                    secs = w["duration_us"] / 1e6
                    row = {
                        "workers": workers, "connections": conns, "requests": w["requests"], "ok": ok,
                        "non2xx": w["non2xx"], "errors": w["connect_errors"] + w["read_errors"] + w["write_errors"]
                        + w["timeouts"], "rate": ok / secs, "p50": w["p50_us"] / 1000, "p90": w["p90_us"] / 1000,
                        "p99": w["p99_us"] / 1000, "max": w["max_us"] / 1000,
                        "server_cpu_pct": 100 * (cpu1 - cpu0) / wall, "postgres_cpu_pct": 100 * pg_cpu / wall,
                        "wrk_cpu_pct": 100 * w["cpu_s"] / wall,
                        "server_cpu_ms_per_submission": 1000 * (cpu1 - cpu0) / max(1, ok),
                        "postgres_cpu_ms_per_submission": 1000 * pg_cpu / max(1, ok),
                        "machine_cpu_pct": 100 * (busy1 - busy0) / max(1, tot1 - tot0) * (os.cpu_count() or 1),
                        "rows_written": after_rows - before_rows, "counts_match": kept == after_rows,
                        "new_db_sessions": pg1[2] - pg0[2],
                    }
                    results.append(row)
                    print(f"  workers={workers} c={conns:>3}: {row['rate']:7.0f}/s  p50={row['p50']:6.1f} "
                          f"p90={row['p90']:6.1f} p99={row['p99']:6.1f} max={row['max']:7.1f} ms  non2xx={row['non2xx']} "
                          f"err={row['errors']}  CPU: server {row['server_cpu_pct']:.0f}% postgres {row['postgres_cpu_pct']:.0f}% "
                          f"wrk {row['wrk_cpu_pct']:.0f}% machine "
                          f"{row['machine_cpu_pct']:.0f}% of {100 * (os.cpu_count() or 1)}%  "
                          f"rows +{row['rows_written']} (2xx {ok}) counts ok={row['counts_match']} "
                          f"new DB sessions {row['new_db_sessions']}", flush=True)
                    if row["non2xx"]:
                        print(w["stdout"])
    finally:
        hb.stop.set()
    engine.dispose()
    lines = [f"Submissions on {backend} ({total_workloads:,} workloads stored), wrk -t{args.wrk_threads}, "
             f"{args.duration} s per run after a {args.warmup} s warm-up; {note}; CPU pressure {C.cpu_pressure()} "
             "at the end.", "",
             "| workers | connections | submissions/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | server CPU | "
             "PostgreSQL CPU | wrk CPU | machine CPU | server / PG CPU ms per submission | new DB sessions | "
             ">= 1000/s and p99 <= 50 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in results:
        met = r["rate"] >= 1000 and r["p99"] <= 50 and not r["non2xx"]
        lines.append(f"| {r['workers']} | {r['connections']} | {r['rate']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.1f} | {r['non2xx']} | {r['server_cpu_pct']:.0f}% | "
                     f"{r['postgres_cpu_pct']:.0f}% | {r['wrk_cpu_pct']:.0f}% | {r['machine_cpu_pct']:.0f}% | "
                     f"{r['server_cpu_ms_per_submission']:.2f} / {r['postgres_cpu_ms_per_submission']:.2f} | "
                     f"{r['new_db_sessions']} | {'yes' if met else '**no**'} |")
    lines += ["", "CPU percentages are of one core (the machine has "
              f"{os.cpu_count()}: {100 * (os.cpu_count() or 1)}% is all of it). Server: the uvicorn process(es); "
              "PostgreSQL: the backends connected to this database, plus backends of any database that exited "
              "during the run (the postmaster's reaped children); new DB sessions: connections opened during the "
              "run (pg_stat_database.sessions); machine: everything, including other "
              "work on the machine. Rows written were checked against the kept counts after each run."]
    if steps:
        lines += ["", "One submission's cost, in-process (no HTTP; sequential; per item; the batch is the writer's "
                  "group commit):", "", "| step | wall ms | Python CPU ms | DB CPU ms | rate /s |",
                  "|---|---:|---:|---:|---:|"]
        for st in steps:
            lines.append(f"| {st['step']} | {st['wall_ms']:.3f} | {st['python_cpu_ms']:.3f} | {st['db_cpu_ms']:.3f} | "
                         f"{st['rate']:.0f} |")
    table = "\n".join(lines)
    print("\n" + table)
    tag = f"-{args.tag}" if args.tag else ""
    (C.RESULTS / f"submit-{backend}{tag}.md").write_text(table + "\n")
    C.save_json(f"submit-{backend}{tag}.json", {"note": note, "results": results, "breakdown": steps})


if __name__ == "__main__":
    main()
