"""Resident memory of the server after serving list requests over 1,000,000 workloads.

    .venv/bin/python bench/server_memory.py --database-url sqlite:////tmp/corral-bench/corral.db
    .venv/bin/python bench/server_memory.py --database-url postgresql://postgres@127.0.0.1:5432/corral_bench

Starts the real server (one uvicorn process, as deployed: ``python -m uvicorn --factory
corral.api.app:create_app``) on a seeded database and reads VmRSS / VmHWM (peak) /
RssAnon / RssFile of that process from /proc:

1. after start-up, idle;
2. after ``--rounds`` sequential passes over every list_latency.py case (first page, deep
   page, each filter, combinations, every sort both ways, all-projects views) for each of the
   three big projects;
3. after the same mix sent by ``--concurrency`` client threads at once (each request in
   the server's thread pool holds its own database connection: on SQLite each connection
   keeps its own page cache);
4. after a GET of workload details for a sample of ids.

Target: RSS <= 150 MB. The PostgreSQL server's own memory is not counted (another process).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402

import _common as C  # noqa: E402
from list_latency import cases, pick_filter_values, resolve  # noqa: E402

TARGET_MB = 150.0


def mb(kib: int) -> float:
    return kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--tag", default="")
    ap.add_argument("--app", default="corral.api.app:create_app",
                    help="app factory to serve (bench/variants.py has variants of it)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment")
    args = ap.parse_args()
    backend = C.dialect_of(args.database_url)
    engine = C.engine_for(args.database_url, pool_size=2)
    member_token, _ = C.mint_token(engine, C.MEMBER_EMAIL)
    admin_token, _ = C.mint_token(engine, C.ADMIN_EMAIL)
    mix: list[tuple[str, str, list[tuple[str, Any]]]] = []
    for project in C.BIG_PROJECTS:
        mix += cases(project, pick_filter_values(engine, project), args.page_size)
    with engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT count(*) FROM workloads").scalar_one()
        max_id = conn.exec_driver_sql("SELECT max(id) FROM workloads").scalar_one()
    engine.dispose()
    note = C.machine_note()
    print(f"# server memory, {backend}: {total:,} workloads; {len(mix)} list requests per round; {note}", flush=True)
    snaps: list[tuple[str, int, dict[str, int]]] = []
    headers = {"member": {"Authorization": f"Bearer {member_token}"},
               "admin": {"Authorization": f"Bearer {admin_token}"}}
    extra_env = dict(e.split("=", 1) for e in args.env)
    if args.app != "corral.api.app:create_app" or extra_env:
        note += f"; app {args.app} {' '.join(args.env)}"
    with C.run_server(args.database_url, log_name=f"memory-{backend}", app=args.app, extra_env=extra_env) as server:
        def snap(label: str, n: int) -> None:
            s = C.rss_kib(server.pid)
            snaps.append((label, n, s))
            print(f"  {label:<44} requests={n:>6}  RSS {mb(s['VmRSS']):6.1f} MB  peak {mb(s['VmHWM']):6.1f} MB  "
                  f"anon {mb(s['RssAnon']):6.1f} MB  file {mb(s['RssFile']):5.1f} MB  threads {s['Threads']}",
                  flush=True)

        time.sleep(1)
        snap("idle after start-up", 0)
        # Cursor cases: their placeholders become real cursors (resolving is not counted).
        resolving = {who: httpx.Client(base_url=server.base_url, timeout=120, headers=h) for who, h in headers.items()}
        mix = [(label, who, resolve(resolving[who], params) or []) for label, who, params in mix]
        for c in resolving.values():
            c.close()
        sent = 0
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            for _ in range(args.rounds):
                for _label, who, params in mix:
                    client.get("/api/v1/workloads", params=params, headers=headers[who]).raise_for_status()
                    sent += 1
            snap(f"after {args.rounds} sequential rounds", sent)

        errors: list[str] = []
        lock = threading.Lock()
        counter = [0]

        def worker(offset: int) -> None:
            with httpx.Client(base_url=server.base_url, timeout=120) as c:
                for r in range(args.rounds):
                    for i in range(len(mix)):
                        _label, who, params = mix[(i + offset * 7 + r) % len(mix)]
                        resp = c.get("/api/v1/workloads", params=params, headers=headers[who])
                        with lock:
                            counter[0] += 1
                        if resp.status_code != 200:
                            errors.append(f"{resp.status_code} {resp.text[:200]}")

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.concurrency)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent += counter[0]
        snap(f"after {args.concurrency} concurrent clients x {args.rounds} rounds", sent)
        if errors:
            print(f"  {len(errors)} errors, first: {errors[0]}")
        with httpx.Client(base_url=server.base_url, timeout=60, headers=headers["admin"]) as client:
            step = max(1, max_id // 500)
            for wid in range(1, max_id + 1, step):
                client.get(f"/api/v1/workloads/{wid}").raise_for_status()
                sent += 1
        snap("after 500 workload details", sent)
        conc_s = time.monotonic() - t0
        time.sleep(2)
        snap("idle 2 s later", sent)

    final = snaps[-1][2]
    peak = max(s["VmHWM"] for _, _, s in snaps)
    lines = [f"Server memory on {backend} ({total:,} workloads), one uvicorn process; {note}; CPU pressure "
             f"{C.cpu_pressure()} at the end.", "",
             "| after | requests served | RSS MB | peak (VmHWM) MB | anon MB | file MB |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, n, s in snaps:
        lines.append(f"| {label} | {n:,} | {mb(s['VmRSS']):.1f} | {mb(s['VmHWM']):.1f} | {mb(s['RssAnon']):.1f} | "
                     f"{mb(s['RssFile']):.1f} |")
    verdict = "met" if mb(final["VmRSS"]) <= TARGET_MB and mb(peak) <= TARGET_MB else "**missed**"
    lines += ["", f"Target RSS <= {TARGET_MB:.0f} MB: {verdict} (final {mb(final['VmRSS']):.1f} MB, peak "
              f"{mb(peak):.1f} MB). Concurrent phase + details took {conc_s:.0f} s."]
    table = "\n".join(lines)
    print("\n" + table)
    tag = f"-{args.tag}" if args.tag else ""
    (C.RESULTS / f"memory-{backend}{tag}.md").write_text(table + "\n")
    C.save_json(f"memory-{backend}{tag}.json", {"note": note, "snapshots": snaps})


if __name__ == "__main__":
    main()
