"""Admission throughput and latency, end to end (catch-up, decision, writes, commit).

    .venv/bin/python bench/admission_throughput.py --database-url sqlite:////tmp/corral-adm.db
    .venv/bin/python bench/admission_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/corral_adm

Creates the database afresh (PostgreSQL: drops and re-creates the named database) with 10
clusters, 1,000 projects holding quotas on two of them each (guarantees, half of them
borrowing up to 1.5 times their guarantee, half hard-limited: every queue keeps a backlog; mixed priorities and
preemption), one project `lat` with a guarantee on cluster c0 kept free for the latency
phase, and --queued pending workloads submitted through the service. Then:

1. drain: a fresh ``Admitter`` (as the scheduler process starts) passes until nothing more
   fits; the first pass loads everything from the database.
2. sustained: --rounds times, --release admitted workloads complete (through the status
   writer, untimed), then the scheduler's passes that refill the freed capacity are timed.
3. latency: the real scheduler process (``corral.scheduler.loop``) and API server run; a
   client submits --latency-samples workloads of `lat` that fit, one at a time, and polls
   ``GET /api/v1/workloads/{id}`` until ``admitted_at`` shows: submission to visible.
4. bare writes: the same UPDATEs and INSERTs an admission needs, without any decision,
   for the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url

from _common import machine_note, mint_token, run_server, summary
from corral.db.engine import make_engine, normalise_url, read_tx, write_tx
from corral.db.migrate import upgrade
from corral.db.tables import components, events, workloads
from corral.domain.resources import Limit, Resources
from corral.domain.statuses import FINISHED_STATUSES, ComponentStatus
from corral.services import clusters, projects, quotas, users
from corral.services import workloads as workload_service
from corral.services.admission import Admitter
from corral.services.principal import Principal
from corral.services.status import ComponentUpdate, apply_component_updates

FINISHED = [s.value for s in FINISHED_STATUSES]


def fresh(url: str) -> str:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(f"{parsed.database}{suffix}")
            except FileNotFoundError:
                pass
        return url
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    return url


def set_up(engine, args, rng: random.Random) -> Principal:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    with write_tx(engine) as conn:
        admin = users.create_user(conn, email="bench-admin@example.com", display_name=None, role="admin",
                                  actor="bench")
        p = Principal(admin["id"], admin["email"], "admin")
        cap = Resources(gpu=40_000, cpu=40_000_000, memory=2**55, ephemeral_storage=2**55)
        for c in range(args.clusters):
            clusters.create_cluster(conn, p, name=f"c{c}", kind="kubernetes", capacity=cap, unhealthy_after_s=1e9)
        share = Resources(gpu=100, cpu=100_000, memory=2**44, ephemeral_storage=2**44)
        for i in range(args.projects):
            projects.create_project(conn, p, name=f"p{i}", preemption_policy=rng.choice(["never", "lower_priority"]))
            for c in rng.sample(range(args.clusters), 2):
                borrow = rng.random() < 0.5
                quotas.set_quota(conn, p, f"p{i}", f"c{c}", guaranteed=share,
                                 limit=Limit(gpu=share.gpu * 3 // 2, cpu=None, memory=None, ephemeral_storage=None)
                                 if borrow else None)
        projects.create_project(conn, p, name="lat")
        quotas.set_quota(conn, p, "lat", "c0", guaranteed=Resources(gpu=1_000, cpu=1_000_000, memory=2**45),
                         limit=None)
        pairs = [(r.name, r.cluster) for r in conn.execute(text(
            "SELECT p.name, c.name AS cluster FROM quotas q JOIN projects p ON p.id = q.project_id "
            "JOIN clusters c ON c.id = q.cluster_id WHERE p.name <> 'lat'"))]
    specs = ({"type": "training", "name": f"w{i}", "project": project, "cluster": cluster, "dataset": "d",
              "command": "x", "priority": rng.choice(["low", "medium", "medium", "high"]),
              "resources": {"gpu": rng.choice([1, 1, 2, 4, 8]), "cpu": rng.choice([2, 4, 8]), "memory": "8Gi"}}
             for i, (project, cluster) in enumerate(rng.choice(pairs) for _ in range(args.queued)))
    submit_all(engine, p, specs)
    print(f"set-up: {args.queued:,} queued over {args.projects:,} projects and {args.clusters} clusters "
          f"in {time.perf_counter() - t0:.0f} s ({engine.dialect.name})", flush=True)
    return p


def submit_all(engine, p: Principal, specs) -> None:  # type: ignore[no-untyped-def]
    """Submit through the service (checks and all), 2,000 to a transaction."""
    batch = []
    with read_tx(engine) as conn:
        for body in specs:
            spec = workload_service.parse_spec(body)
            batch.append(workload_service.prepare_submission(conn, p, spec, unhealthy_after_s=1e9))
            if len(batch) == 2_000:
                with write_tx(engine) as wconn:
                    workload_service.write_submissions(wconn, batch)
                batch = []
    if batch:
        with write_tx(engine) as conn:
            workload_service.write_submissions(conn, batch)


def passes_until_quiet(admitter: Admitter, label: str) -> tuple[int, float]:
    """Passes until nothing is left to admit, preempt or say (the waiting reasons, written a
    budget a pass); returns what was admitted and the time of all those passes."""
    total, elapsed, to_last = 0, 0.0, 0.0
    for n in range(1, 200):
        start = time.perf_counter()
        result = admitter.run_pass()
        took = time.perf_counter() - start
        elapsed += took
        total += result.admitted
        if result.admitted:
            to_last = elapsed
        print(f"  {label} pass {n}: {result.admitted:,} admitted, {result.preempted:,} preempted, "
              f"{result.waiting:,} decided waiting, {result.full_clusters} clusters in full, "
              f"{result.reasons_left:,} reasons left, {took * 1000:.0f} ms", flush=True)
        if not result.admitted and not result.preempted and not result.reasons_left:
            break
    if to_last and to_last < elapsed:  # the rest wrote reasons only: the admissions waited for none of it
        print(f"  {label}: {total:,} admitted in {to_last:.2f} s of passes up to the last admission: "
              f"{total / to_last:,.0f} admissions/s", flush=True)
    return total, elapsed


def complete(engine, n: int, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    """n admitted workloads complete, reported the way an agent reports them."""
    with read_tx(engine) as conn:
        held = conn.execute(select(workloads.c.id).where(
            workloads.c.admitted_at.is_not(None), workloads.c.status.not_in(FINISHED))).scalars().all()
        chosen = rng.sample(held, min(n, len(held)))
        comps = conn.execute(select(components.c.id).where(components.c.workload_id.in_(chosen))).scalars().all() \
            if len(chosen) < 30_000 else []
    at = datetime.now(UTC) + timedelta(seconds=1)
    for i in range(0, len(comps), 500):
        with write_tx(engine) as conn:
            apply_component_updates(conn, [ComponentUpdate(c, ComponentStatus.COMPLETED, "done", at)
                                           for c in comps[i:i + 500]], "bench-agent")


def top_up(engine, args, rng: random.Random, p: Principal) -> None:  # type: ignore[no-untyped-def]
    """Queue more (over their projects' limits) until --queued wait, for the latency phase."""
    with read_tx(engine) as conn:
        waiting = conn.execute(select(func.count()).where(workloads.c.admitted_at.is_(None),
                                                          workloads.c.status == "Pending")).scalar_one()
    submit_all(engine, p, ({"type": "training", "name": f"more{i}", "project": f"p{rng.randrange(args.projects)}",
                            "dataset": "d", "command": "x", "resources": {"gpu": 90, "cpu": 2, "memory": "8Gi"}}
                           for i in range(args.queued - waiting)))


def latency(url: str, engine, samples: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    token, _ = mint_token(engine, "bench-admin@example.com")
    sched = subprocess.Popen([sys.executable, "-c", "from corral.scheduler.loop import run_process; "
                              f"run_process({url!r}, 0.02, 300.0)"], start_new_session=True)
    try:
        with run_server(url, log_name="admission-latency") as server:
            client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            time.sleep(20)  # the scheduler loads its state and writes the waiting reasons of 100k
            results = []
            for i in range(samples):
                start = time.perf_counter()
                created = client.post("/api/v1/workloads", json={
                    "type": "custom", "name": f"lat{i}", "project": "lat", "cluster": "c0", "command": "x",
                    "resources": {"gpu": 1, "cpu": 1, "memory": "1Gi"}})
                created.raise_for_status()
                wid = created.json()["id"]
                while client.get(f"/api/v1/workloads/{wid}").json()["admitted_at"] is None:
                    if time.perf_counter() - start > 30:
                        raise RuntimeError(f"workload {wid} not admitted in 30 s")
                    time.sleep(0.002)
                results.append(time.perf_counter() - start)
                time.sleep(0.02)
            return summary(results)
    finally:
        sched.terminate()
        sched.wait(timeout=30)


def bare_writes(engine, n: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per admission for the writes alone: the workload row, its components' reason,
    its event (usage is one upsert per project and cluster, negligible here). Any workloads do:
    the writes are rolled back (with a small --queued none may still wait by now)."""
    with read_tx(engine) as conn:
        ids = conn.execute(select(workloads.c.id, workloads.c.project_id).limit(n)).all()
    if not ids:
        return float("nan")
    now = datetime.now(UTC)
    start = time.perf_counter()
    with write_tx(engine) as conn:
        for i in range(0, len(ids), 5_000):
            chunk = [r.id for r in ids[i:i + 5_000]]
            conn.execute(update(workloads).where(workloads.c.id.in_(chunk)).values(
                status_reason="bare", version=workloads.c.version + 1))
            conn.execute(update(components).where(components.c.workload_id.in_(chunk)).values(reason="bare"))
        conn.execute(events.insert(), [{"at": now, "actor": "bench", "subject_type": "workload", "subject_id": r.id,
                                        "project_id": r.project_id, "kind": "bare", "message": "bare"} for r in ids])
        conn.rollback()
    return (time.perf_counter() - start) / max(1, len(ids))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=1_000)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--release", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=300)
    args = parser.parse_args()
    print(machine_note(), flush=True)
    rng = random.Random(7)
    url = fresh(args.database_url)
    engine = make_engine(url)
    upgrade(engine)
    admin = set_up(engine, args, rng)

    admitter = Admitter(engine)
    drained, drain_s = passes_until_quiet(admitter, "drain")
    print(f"drain: {drained:,} admitted in {drain_s:.2f} s of passes: {drained / drain_s:,.0f} admissions/s "
          "(first pass loads 100k queued from the database)", flush=True)

    sustained, sustained_s = 0, 0.0
    for r in range(args.rounds):
        complete(engine, args.release, rng)
        n, s = passes_until_quiet(admitter, f"round {r + 1}")
        sustained += n
        sustained_s += s
    if sustained_s:
        print(f"sustained: {sustained:,} admitted in {sustained_s:.2f} s of passes after {args.rounds} releases of "
              f"{args.release:,}: {sustained / sustained_s:,.0f} admissions/s", flush=True)
    per_admission = sustained_s / max(1, sustained)
    bare = bare_writes(engine, 20_000)
    print(f"bare writes: {bare * 1e6:.1f} us per admission; scheduler {per_admission * 1e6:.1f} us per admission "
          f"(ratio {per_admission / bare:.1f}x)", flush=True)
    if args.latency_samples:
        top_up(engine, args, rng, admin)
    with read_tx(engine) as conn:
        waiting = conn.execute(select(func.count()).where(workloads.c.admitted_at.is_(None),
                                                          workloads.c.status == "Pending")).scalar_one()
    engine.dispose()
    if args.latency_samples:
        lat = latency(url, make_engine(url), args.latency_samples)
        print(f"latency, submission to admission visible in the API, {waiting:,} others queued: "
              f"p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms "
              f"(n={lat['n']})", flush=True)


if __name__ == "__main__":
    main()
