"""The Workloads page of the web UI on a seeded database: server time and bytes transferred.

    .venv/bin/python bench/web_page.py --database-url sqlite:////tmp/corral-bench/corral.db
    .venv/bin/python bench/web_page.py --database-url postgresql://postgres@127.0.0.1:5432/corral_bench

Seed first (bench/seed.py). Signs in as a member of the big projects (a session made with
``services.web_sessions.create_session``, as the sign-in page makes it) and asks for the
Workloads page of ``foundation-models`` (200,000 workloads):

* server time, in-process: the whole ASGI app (routing, session lookup, the listing
  service, the template, gzip) called through httpx's ASGI transport, no sockets;
* over HTTP: the real server (``python -m uvicorn --factory corral.api.app:create_app``, one
  worker) with httpx and keep-alive, as a browser on the same machine would see it;
* bytes: the HTML as sent with ``Accept-Encoding: gzip`` (and uncompressed), and the CSS and
  JavaScript a first visit also fetches (cached for good afterwards).

Targets (issue 5): first page <= 50 ms server time, <= 100 KB transferred. Figures are printed
as markdown and saved to bench/results/web-page-<db>.md/.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

import _common as C  # noqa: E402
from corral.api.app import create_app  # noqa: E402
from corral.db.engine import write_tx  # noqa: E402
from corral.db.migrate import upgrade  # noqa: E402
from corral.db.tables import users  # noqa: E402
from corral.services.principal import Principal  # noqa: E402
from corral.services.web_sessions import create_session  # noqa: E402
from corral.settings import Settings  # noqa: E402

TARGET_MS = 50.0
TARGET_KB = 100.0


def cases(project: str) -> list[tuple[str, str, dict[str, str]]]:
    """(label, path and query, extra headers)."""
    base = f"/workloads?project={project}"
    return [
        ("first page (default view, 50 rows)", base, {}),
        ("first page, 100 rows", f"{base}&page_size=100", {}),
        ("first page, 20 rows", f"{base}&page_size=20", {}),
        ("table only (script's refresh/filter request)", base, {"X-Requested-With": "fetch"}),
        ("status=Running,Pending", f"{base}&status=Running&status=Pending", {}),
        ("name~llama (common word)", f"{base}&name=llama", {}),
        ("name~quokka (rare word)", f"{base}&name=quokka", {}),
        ("sort=name", f"{base}&sort=name", {}),
        ("deep page 500 (20 rows)", f"{base}&page_size=20&page=500", {}),
        ("workload details", "/workloads/{wid}", {}),
    ]


def sign_in(engine: Any, email: str) -> str:
    """A session cookie for the user, made as the sign-in page makes it."""
    with write_tx(engine) as conn:
        row = conn.execute(select(users.c.id, users.c.email, users.c.role).where(users.c.email == email)).one()
        token, _ = create_session(conn, Principal(row.id, row.email, row.role))
    return token


def measure_sizes(client: httpx.Client, path: str, headers: dict[str, str]) -> dict[str, int]:
    """Bytes on the wire with and without gzip (status line and headers included)."""
    out = {}
    for label, encoding in (("gzip", "gzip"), ("identity", "identity")):
        with client.stream("GET", path, headers={**headers, "Accept-Encoding": encoding}) as response:
            assert response.status_code == 200, (path, response.status_code)
            body = sum(len(chunk) for chunk in response.iter_raw())
            head = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n") + sum(
                len(k) + len(v) + 4 for k, v in response.headers.raw) + 2
        out[f"{label}_body"] = body
        out[f"{label}_total"] = body + head
    return out


async def in_process(app: Any, cookie: str, path: str, headers: dict[str, str], n: int, warmup: int) -> list[float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", cookies={"corral_session": cookie},
                                 headers={"Accept-Encoding": "gzip"}) as client:
        samples = []
        for i in range(warmup + n):
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            if i >= warmup:
                samples.append(elapsed)
    return samples


def over_http(client: httpx.Client, path: str, headers: dict[str, str], n: int, warmup: int) -> list[float]:
    samples = []
    for i in range(warmup + n):
        started = time.perf_counter()
        response = client.get(path, headers={**headers, "Accept-Encoding": "gzip"})
        response.read()
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (path, response.status_code)
        if i >= warmup:
            samples.append(elapsed)
    return samples


def breakdown(engine: Any, cookie: str, project: str, n: int) -> dict[str, dict[str, float]]:
    """Where the first page's server time goes, step by step (what the route does, in order)."""
    import gzip

    from corral.db.engine import read_tx
    from corral.services import listing, projects as project_service
    from corral.services.web_sessions import session_for
    from corral.web.pages.workloads import COLUMNS, PAGE_SIZES, Table, View
    from corral.web.templating import render

    steps: dict[str, list[float]] = {k: [] for k in ("session", "projects", "listing", "render", "gzip")}
    for _ in range(n):
        t0 = time.perf_counter()
        session = session_for(engine, cookie)
        t1 = time.perf_counter()
        with read_tx(engine) as conn:
            projects = project_service.list_projects(conn, session.principal)
            t2 = time.perf_counter()
            result = listing.list_workloads(conn, session.principal, listing.WorkloadQuery(project=project,
                                                                                           page_size=50))
        t3 = time.perf_counter()
        view = View(project=project)
        table = Table(view, items=result["items"], total=result["total"], exact=result["total_exact"])
        html = render("workloads.html", {
            "request": _FakeRequest(), "session": session, "flash": None, "projects": projects,
            "project": next(p for p in projects if p["name"] == project), "view": view, "table": table,
            "columns": COLUMNS, "page_sizes": PAGE_SIZES}).encode()
        t4 = time.perf_counter()
        gzip.compress(html, 6, mtime=0)
        t5 = time.perf_counter()
        for key, a, b in (("session", t0, t1), ("projects", t1, t2), ("listing", t2, t3), ("render", t3, t4),
                          ("gzip", t4, t5)):
            steps[key].append(b - a)
    return {k: C.summary(v) for k, v in steps.items()}


class _FakeRequest:
    class url:  # noqa: N801 - what the templates read of a request
        path = "/workloads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default="sqlite:////tmp/corral-bench/corral.db")
    ap.add_argument("--project", default=C.BIG_PROJECTS[0])
    ap.add_argument("--email", default=C.MEMBER_EMAIL, help="who signs in (default: a member of the big projects)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-http", action="store_true", help="in-process figures only")
    args = ap.parse_args()

    db = C.dialect_of(args.database_url)
    engine = C.engine_for(args.database_url, pool_size=20)
    upgrade(engine)  # a database seeded before the web UI existed lacks its tables
    cookie = sign_in(engine, args.email)
    admin_cookie = sign_in(engine, C.ADMIN_EMAIL)
    with engine.connect() as conn:
        from corral.db.tables import projects, workloads

        pid = conn.execute(select(projects.c.id).where(projects.c.name == args.project)).scalar_one()
        wid = conn.execute(select(workloads.c.id).where(workloads.c.project_id == pid)
                           .order_by(workloads.c.id.desc()).limit(1)).scalar_one()
    note = C.machine_note()
    print(f"# Web UI: Workloads page, {db}, project {args.project}\n\n{note}\n")

    settings = Settings(database_url=args.database_url, bootstrap=False)
    app = create_app(settings, engine)
    rows = []
    todo = [(label, path.format(wid=wid), headers, cookie) for label, path, headers in cases(args.project)]
    todo.append(("first page as an admin (1,001 projects in the selector)",
                 f"/workloads?project={args.project}", {}, admin_cookie))
    results: dict[str, Any] = {"database": db, "project": args.project, "note": note, "cases": []}

    def sizes_in_process(path: str, headers: dict[str, str], who: str) -> dict[str, int]:
        async def run() -> dict[str, int]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                         cookies={"corral_session": who}) as client:
                out = {}
                for label, encoding in (("gzip", "gzip"), ("identity", "identity")):
                    response = await client.get(path, headers={**headers, "Accept-Encoding": encoding})
                    assert response.status_code == 200
                    raw = response.headers.get("content-length")
                    out[f"{label}_body"] = int(raw) if raw else len(response.content)
                return out
        return asyncio.run(run())

    for label, path, headers, who in todo:
        samples = asyncio.run(in_process(app, who, path, headers, args.requests, args.warmup))
        sizes = sizes_in_process(path, headers, who)
        rows.append({"case": label, "path": path, "in_process": C.summary(samples), **sizes})
        print(f"  {label}: in-process p50 {rows[-1]['in_process']['p50']:.2f} ms, "
              f"gzip {sizes['gzip_body'] / 1024:.1f} KiB", flush=True)

    steps = breakdown(engine, cookie, args.project, args.requests)
    results["breakdown"] = steps
    print("  first page, step by step (p50 ms): " + ", ".join(f"{k} {v['p50']:.2f}" for k, v in steps.items()))

    static: dict[str, dict[str, int]] = {}
    if not args.no_http:
        with C.run_server(args.database_url, log_name=f"web-{db}") as server:
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                for name in ("app.css", "app.js"):
                    static[name] = measure_sizes(client, f"/static/{name}", {})
            for row, (label, path, headers, who) in zip(rows, todo):
                with httpx.Client(base_url=server.base_url, cookies={"corral_session": who}, timeout=30) as client:
                    row["http"] = C.summary(over_http(client, path, headers, args.requests, args.warmup))
                    row["wire"] = measure_sizes(client, path, headers)
                print(f"  {label}: HTTP p50 {row['http']['p50']:.2f} ms, on the wire {row['wire']['gzip_total']} B",
                      flush=True)

    lines = ["| case | in-process p50 | in-process p99 | HTTP p50 | HTTP p99 | HTML gzip | HTML uncompressed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        http = row.get("http", {})
        wire = row.get("wire", {})
        gz = wire.get("gzip_total", row["gzip_body"])
        plain = wire.get("identity_total", row["identity_body"])
        p99 = row["in_process"]["p99"]
        flag = "**" if p99 > TARGET_MS else ""
        lines.append(f"| {row['case']} | {row['in_process']['p50']:.2f} | {flag}{p99:.2f}{flag} | "
                     f"{http.get('p50', float('nan')):.2f} | {http.get('p99', float('nan')):.2f} | "
                     f"{gz / 1000:.1f} KB | {plain / 1000:.1f} KB |")
    if static:
        total = sum(s["gzip_total"] for s in static.values())
        lines.append("")
        lines.append("First visit also fetches (then cached for a year, the URL carries a content hash): "
                     + ", ".join(f"{n} {s['gzip_total'] / 1000:.1f} KB gzip ({s['identity_body'] / 1000:.1f} KB "
                                 "uncompressed)" for n, s in static.items())
                     + f"; {total / 1000:.1f} KB in all.")
    lines.append("")
    lines.append("First page (50 rows), where the server time goes, p50 (p99) ms: " + ", ".join(
        f"{k} {v['p50']:.2f} ({v['p99']:.2f})" for k, v in steps.items()) + ".")
    table = "\n".join(lines)
    print("\n" + table)
    results["cases"] = rows
    results["static"] = static
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    (C.RESULTS / f"web-page-{db}.md").write_text(f"{note}\n\n{table}\n")
    C.save_json(f"web-page-{db}.json", results)
    engine.dispose()


if __name__ == "__main__":
    main()
