"""GET /api/v1/workloads latency on a seeded database: through HTTP, and in-process.

    .venv/bin/python bench/list_latency.py --database-url sqlite:////tmp/corral-bench/corral.db
    .venv/bin/python bench/list_latency.py --database-url postgresql://postgres@127.0.0.1:5432/corral_bench

Seed first (bench/seed.py). Starts the real server (``python -m uvicorn --factory
corral.api.app:create_app``, CORRAL_BOOTSTRAP=false, one worker) against the database and
sends sequential requests with httpx (keep-alive) for the first big project: first page,
a deep page, each filter alone, combined filters, the default view, every sort both ways,
and the all-projects views. Each case: warm-up, then ``--requests`` timed requests; p50 and
p99. Then the same query in-process, ``listing.list_workloads(conn, principal,
WorkloadQuery(...))`` inside ``read_tx`` (what the route does, without HTTP, auth and JSON):
the "DB" columns, and the HTTP/DB ratio of medians. Target: HTTP p99 <= 20 ms.

For every case over the target (or all with ``--explain all``) the SQL statements the
service ran are captured, timed one by one, and explained (EXPLAIN QUERY PLAN on SQLite,
EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL) into bench/results/list-explain-<db>.txt.
The table is printed as markdown and saved to bench/results/list-latency-<db>.md/.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from sqlalchemy import event, select, text  # noqa: E402

import _common as C  # noqa: E402
from corral.db.engine import read_tx  # noqa: E402
from corral.db.tables import projects, workload_counts, workloads  # noqa: E402
from corral.services.listing import SORT_COLUMNS, WorkloadQuery, list_workloads  # noqa: E402
from corral.services.users import authenticate  # noqa: E402

TARGET_MS = 20.0


def pick_filter_values(engine: Any, project: str) -> dict[str, str]:
    """A busy cluster and a mid-sized creator of the project, from the data itself."""
    with engine.connect() as conn:
        pid = conn.execute(select(projects.c.id).where(projects.c.name == project)).scalar_one()
        cluster = conn.execute(text(
            "SELECT c.name FROM workload_counts k JOIN clusters c ON c.id = k.cluster_id WHERE k.project_id = :p "
            "GROUP BY c.name ORDER BY sum(k.count) DESC LIMIT 1"), {"p": pid}).scalar_one()
        creators = conn.execute(
            select(workloads.c.created_by, text("count(*) AS n")).where(workloads.c.project_id == pid)
            .group_by(workloads.c.created_by).order_by(text("n DESC"))).all()
        # The 5th busiest: a few percent of the project (thousands of rows).
        creator = creators[min(4, len(creators) - 1)][0]
        total = conn.execute(select(text("sum(count)")).select_from(workload_counts)
                             .where(workload_counts.c.project_id == pid)).scalar_one()
    return {"project_id": str(pid), "cluster": cluster, "created_by": creator, "total": str(total)}


def cases(project: str, v: dict[str, str], page_size: int) -> list[tuple[str, str, list[tuple[str, Any]]]]:
    """(label, who, query params). who: member (of the big projects) or admin."""
    P = [("project", project)]
    ps = [("page_size", page_size)]
    out: list[tuple[str, str, list[tuple[str, Any]]]] = [
        ("default view (page 1 of 20)", "member", P),
        (f"first page ({page_size})", "member", P + ps),
        ("deep page 500 (offset 49,900)", "member", P + ps + [("page", 500)]),
        # Next / Previous by cursor (keyset), where the page links above jump by OFFSET.
        ("page 500 by next_cursor from 499", "member", P + ps + [("cursor", "@next:499")]),
        ("deep page 5,000 (20 rows, offset 99,980)", "member", P + [("page_size", 20), ("page", 5000)]),
        ("page 5,001 by next_cursor from 5,000 (20)", "member", P + [("page_size", 20), ("cursor", "@next:5000")]),
        ("page 4,999 by prev_cursor from 5,000 (20)", "member", P + [("page_size", 20), ("cursor", "@prev:5000")]),
        ("last page (20)", "member", P + [("page_size", 20), ("page", "@last")]),
        ("sort=name page 3,001 by next_cursor (20)", "member",
         P + [("page_size", 20), ("sort", "name"), ("cursor", "@next:3000")]),
        ("status=Failed", "member", P + ps + [("status", "Failed")]),
        ("type=fine_tuning", "member", P + ps + [("type", "fine_tuning")]),
        (f"cluster={v['cluster']}", "member", P + ps + [("cluster", v["cluster"])]),
        ("created_by (5th busiest)", "member", P + ps + [("created_by", v["created_by"])]),
        (f"name~{C.COMMON_WORD} (common)", "member", P + ps + [("name", C.COMMON_WORD)]),
        (f"name~{C.RARE_WORD} (rare)", "member", P + ps + [("name", C.RARE_WORD)]),
        ("status=Failed+type=training+cluster", "member",
         P + ps + [("status", "Failed"), ("type", "training"), ("cluster", v["cluster"])]),
        ("status=Running,Pending+type=inference,workspace", "member",
         P + ps + [("status", "Running"), ("status", "Pending"), ("type", "inference"), ("type", "workspace")]),
        (f"name~{C.COMMON_WORD}+status=Running", "member", P + ps + [("name", C.COMMON_WORD), ("status", "Running")]),
        (f"name~{C.COMMON_WORD}+type=evaluation+cluster", "member",
         P + ps + [("name", C.COMMON_WORD), ("type", "evaluation"), ("cluster", v["cluster"])]),
        ("created_by+type=fine_tuning+status=Complete", "member",
         P + ps + [("created_by", v["created_by"]), ("type", "fine_tuning"), ("status", "Complete")]),
        (f"name~{C.RARE_WORD}+status=Complete", "member", P + ps + [("name", C.RARE_WORD), ("status", "Complete")]),
        ("status=Failed page 100 (offset 9,900)", "member", P + ps + [("status", "Failed"), ("page", 100)]),
    ]
    for col in SORT_COLUMNS:
        for desc in (False, True):
            sort = ("-" if desc else "") + col
            out.append((f"sort={sort}", "member", P + ps + [("sort", sort)]))
    out += [
        ("all projects, default view (admin)", "admin", []),
        (f"all projects, status=Failed ({page_size}, admin)", "admin", ps + [("status", "Failed")]),
        ("all my projects, default view (member)", "member", []),
    ]
    return out


def resolve(client: httpx.Client, params: list[tuple[str, Any]]) -> list[tuple[str, Any]] | None:
    """Placeholders filled from the server's answers: ``cursor=@next:N`` / ``@prev:N`` (page N's
    cursor), ``page=@last``. None when the server gives no cursors (a build before them)."""
    out = []
    for key, value in params:
        if isinstance(value, str) and value.startswith("@"):
            rest = [(k, v) for k, v in params if k not in ("cursor", "page")]
            if value == "@last":
                body = client.get("/api/v1/workloads", params=rest).raise_for_status().json()
                size = int(dict(rest).get("page_size", 20))
                value = max(1, -(-body["total"] // size))
            else:
                which, page = value[1:].split(":")
                body = client.get("/api/v1/workloads", params=rest + [("page", page)]).raise_for_status().json()
                value = body.get(f"{which}_cursor")
                if value is None:
                    return None
        out.append((key, value))
    return out


def to_query(params: list[tuple[str, Any]]) -> WorkloadQuery:
    q = WorkloadQuery()
    for k, val in params:
        if k == "type":
            q.types.append(val)
        elif k == "status":
            q.statuses.append(val)
        elif k in ("page", "page_size"):
            setattr(q, k, int(val))
        else:
            setattr(q, k, val)
    return q


class StatementLog:
    """The SQL statements run on the engine, with their parameters and durations."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.on = False
        self.items: list[tuple[str, Any, float]] = []
        self._t: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if self.on:
            self._t[id(cursor)] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if self.on and id(cursor) in self._t:
            self.items.append((statement, parameters, time.perf_counter() - self._t.pop(id(cursor))))


def explain(engine: Any, backend: str, statement: str, parameters: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    if backend == "sqlite":
        return "\n".join(f"{r[0]:>4} {r[1]:>4} {r[3]}" for r in rows)
    return "\n".join(r[0] for r in rows)


def time_http(client: httpx.Client, params: list[tuple[str, Any]], n: int, warmup: int, budget_s: float
              ) -> tuple[list[float], dict[str, Any]]:
    for _ in range(warmup):
        client.get("/api/v1/workloads", params=params).raise_for_status()
    samples = []
    deadline = time.monotonic() + budget_s
    for _ in range(n):
        t = time.perf_counter()
        r = client.get("/api/v1/workloads", params=params)
        samples.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise RuntimeError(f"{params}: HTTP {r.status_code} {r.text[:300]}")
        if time.monotonic() > deadline:
            break
    body = r.json()
    info = {"total": body["total"], "total_exact": body["total_exact"], "items": len(body["items"]),
            "bytes": len(r.content)}
    return samples, info


def time_db(engine: Any, token: str, principal: Any, query: WorkloadQuery, n: int, warmup: int, budget_s: float
            ) -> list[float]:
    """What the route does per request, in-process: authenticate the token, then list in a read tx.

    (Authenticating on its own pooled connection matters on PostgreSQL: that connection's
    rollback on return also drops psycopg's prepared statements, as in the server.)
    """
    def once() -> None:
        assert authenticate(engine, token) == principal
        with read_tx(engine) as conn:
            list_workloads(conn, principal, query)

    for _ in range(warmup):
        once()
    samples = []
    deadline = time.monotonic() + budget_s
    for _ in range(n):
        t = time.perf_counter()
        once()
        samples.append(time.perf_counter() - t)
        if time.monotonic() > deadline:
            break
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--project", default=C.BIG_PROJECTS[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--budget-s", type=float, default=15.0, help="at most this long per case and side")
    ap.add_argument("--only", default=None, help="regex on case labels")
    ap.add_argument("--explain", choices=["slow", "all", "none"], default="slow")
    ap.add_argument("--no-db", action="store_true", help="skip the in-process timing")
    ap.add_argument("--tag", default="", help="suffix for the result files")
    ap.add_argument("--no-after-burst", dest="after_burst", action="store_false",
                    help="skip re-measuring a few cases after a concurrent burst")
    ap.add_argument("--burst-requests", type=int, default=40)
    ap.add_argument("--app", default="corral.api.app:create_app",
                    help="app factory to serve (bench/variants.py has variants of it)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment")

    args = ap.parse_args()
    backend = C.dialect_of(args.database_url)
    engine = C.engine_for(args.database_url, pool_size=5)
    values = pick_filter_values(engine, args.project)
    member_token, member = C.mint_token(engine, C.MEMBER_EMAIL)
    admin_token, admin = C.mint_token(engine, C.ADMIN_EMAIL)
    principals = {"member": member, "admin": admin}
    tokens = {"member": member_token, "admin": admin_token}
    stmts = StatementLog(engine)
    note = C.machine_note()
    all_cases = cases(args.project, values, args.page_size)
    if args.only:
        all_cases = [c for c in all_cases if re.search(args.only, c[0])]
    print(f"# list latency, {backend}: project {args.project} ({int(values['total']):,} workloads), "
          f"cluster={values['cluster']}, created_by={values['created_by']}; {note}", flush=True)
    results: list[dict[str, Any]] = []
    extra_env = dict(e.split("=", 1) for e in args.env)
    if args.app != "corral.api.app:create_app" or extra_env:
        note += f"; app {args.app} {' '.join(args.env)}"
    with C.run_server(args.database_url, log_name=f"list-{backend}", app=args.app, extra_env=extra_env) as server:
        clients = {who: httpx.Client(base_url=server.base_url, timeout=60,
                                     headers={"Authorization": f"Bearer {tok}"})
                   for who, tok in (("member", member_token), ("admin", admin_token))}
        for label, who, params in all_cases:
            resolved = resolve(clients[who], params)
            if resolved is None:
                print(f"  {label:<48} skipped: this server gives no cursors", flush=True)
                continue
            params = resolved
            http, info = time_http(clients[who], params, args.requests, args.warmup, args.budget_s)
            row: dict[str, Any] = {"case": label, "who": who, "params": params, **info, "http": C.summary(http)}
            if not args.no_db:
                row["db"] = C.summary(time_db(engine, tokens[who], principals[who], to_query(params),
                                              args.requests, args.warmup, args.budget_s))
            results.append(row)
            h = row["http"]
            d = row.get("db", {})
            print(f"  {label:<48} total={info['total']:>7}{'' if info['total_exact'] else '+'} "
                  f"http p50={h['p50']:7.2f} p99={h['p99']:7.2f}  db p50={d.get('p50', 0):7.2f} "
                  f"p99={d.get('p99', 0):7.2f} ms (n={h['n']})", flush=True)
        burst_rows: list[dict[str, Any]] = []
        if args.after_burst:
            # Grow the server's connection pool past one connection with a short concurrent
            # burst, then send the same sequential requests again. The route authenticates on
            # one pooled connection and lists on another; on PostgreSQL the listing connection
            # then never sees a rollback (which is what drops psycopg's prepared statements)...
            # Two clients at once leave two connections in the pool: the route's two checkouts
            # (authenticate, then list) then always land on the same one of them each.
            burst_params = [("project", C.BIG_PROJECTS[1]), ("page_size", 100), ("sort", "name")]
            tok = member_token

            def burst() -> None:
                with httpx.Client(base_url=server.base_url, timeout=60,
                                  headers={"Authorization": f"Bearer {tok}"}) as bc:
                    for _ in range(5):
                        bc.get("/api/v1/workloads", params=burst_params).raise_for_status()

            threads = [threading.Thread(target=burst) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            again = {"default view (page 1 of 20)", "status=Failed", f"cluster={values['cluster']}",
                     "created_by (5th busiest)", f"name~{C.COMMON_WORD} (common)", f"name~{C.RARE_WORD} (rare)"}
            picked = [c for c in all_cases if c[0] in again]
            print(f"after a burst of 2 concurrent clients, {args.burst_requests} sequential requests per case:")
            for label, who, params in picked:
                http, info = time_http(clients[who], params, args.burst_requests, 0, args.budget_s)
                late = C.summary(http[len(http) // 2:])
                burst_rows.append({"case": label, "http": C.summary(http), "late": late})
                print(f"  {label:<48} p50={C.summary(http)['p50']:7.2f} p99={C.summary(http)['p99']:7.2f}  "
                      f"second half p50={late['p50']:7.2f} ms", flush=True)
        for c in clients.values():
            c.close()

    # Per statement timings and plans for the slow cases.
    explained = []
    for row in results:
        slow = row["http"]["p99"] > TARGET_MS
        if args.explain == "none" or (args.explain == "slow" and not slow):
            continue
        q = to_query(row["params"])
        per: dict[str, list[float]] = defaultdict(list)
        params_of: dict[str, Any] = {}
        for _ in range(5):
            stmts.items.clear()
            stmts.on = True
            with read_tx(engine) as conn:
                list_workloads(conn, principals[row["who"]], q)
            stmts.on = False
            for s, p, dt in stmts.items:
                if s.strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
                    continue
                per[s].append(dt)
                params_of[s] = p
        parts = [f"## {row['case']} ({backend}; HTTP p50 {row['http']['p50']:.1f} ms, p99 {row['http']['p99']:.1f} ms)"]
        for s, ts in per.items():
            med = sorted(ts)[len(ts) // 2] * 1000
            parts.append(f"-- {med:.2f} ms (median of {len(ts)})\n{s}\n-- params: {params_of[s]}")
            try:
                parts.append(explain(engine, backend, s, params_of[s]))
            except Exception as exc:  # noqa: BLE001
                parts.append(f"(explain failed: {exc})")
        explained.append("\n".join(parts))
    engine.dispose()

    lines = [f"List latency on {backend}: project `{args.project}` ({int(values['total']):,} workloads), "
             f"{args.requests} sequential requests per case after {args.warmup} warm-up; {note}; CPU pressure "
             f"{C.cpu_pressure()} at the end.", "",
             "| case | total | HTTP p50 ms | HTTP p99 ms | DB p50 ms | DB p99 ms | HTTP/DB p50 | p99 <= 20 ms |",
             "|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for row in results:
        h, d = row["http"], row.get("db")
        total = f"{row['total']:,}" + ("" if row["total_exact"] else "+")
        ratio = f"{h['p50'] / d['p50']:.1f}x" if d and d["p50"] else "-"
        dcols = f"{d['p50']:.2f} | {d['p99']:.2f}" if d else "- | -"
        lines.append(f"| {row['case']}{' (admin)' if row['who'] == 'admin' and 'admin' not in row['case'] else ''}"
                     f" | {total} | {h['p50']:.2f} | {h['p99']:.2f} | {dcols} | {ratio} | "
                     f"{'yes' if h['p99'] <= TARGET_MS else '**no**'} |")
    met = sum(1 for r in results if r["http"]["p99"] <= TARGET_MS)
    lines += ["", f"{met} of {len(results)} cases meet p99 <= {TARGET_MS:.0f} ms. DB = in-process "
              "`authenticate()` + `list_workloads()` in `read_tx` (the route's database work, without HTTP "
              "and JSON)."]
    if burst_rows:
        lines += ["", f"Sequential requests again after a burst of 2 concurrent clients (the server's pool now "
                  f"holds more than one connection), {args.burst_requests} requests per case, no warm-up:", "",
                  "| case | HTTP p50 ms | HTTP p99 ms | 2nd half p50 ms | p99 <= 20 ms |", "|---|---:|---:|---:|:---:|"]
        for r in burst_rows:
            lines.append(f"| {r['case']} | {r['http']['p50']:.2f} | {r['http']['p99']:.2f} | {r['late']['p50']:.2f} | "
                         f"{'yes' if r['http']['p99'] <= TARGET_MS else '**no**'} |")
    table = "\n".join(lines)
    print("\n" + table)
    tag = f"-{args.tag}" if args.tag else ""
    (C.RESULTS / f"list-latency-{backend}{tag}.md").write_text(table + "\n")
    C.save_json(f"list-latency-{backend}{tag}.json", {"values": values, "note": note, "results": results,
                                                       "after_burst": burst_rows})
    if explained:
        path = C.RESULTS / f"list-explain-{backend}{tag}.txt"
        path.write_text("\n\n".join(explained) + "\n")
        print(f"\nplans of {len(explained)} case(s) in {path}")


if __name__ == "__main__":
    main()
