"""Admissions per second, end to end (snapshot read, decision, writes, commit).

    .venv/bin/python bench/admission_throughput.py --database-url sqlite:////tmp/corral-adm.db
    .venv/bin/python bench/admission_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/corral_adm

Creates the database afresh (PostgreSQL: drops and re-creates the named database), with
10 clusters, 1,000 projects holding quotas on them (mixed guarantees, borrowing limits and
priorities), and --queued pending workloads submitted through the service, then times
admission passes (`corral.services.admission.run_pass`) until nothing more is admitted.
Prints the pass times, admissions per second, and the bare cost of the writes an
admission needs (the same UPDATEs and INSERTs without any decision) for the ratio.
"""

from __future__ import annotations

import argparse
import random
import time

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from corral.db.engine import make_engine, normalise_url, read_tx, write_tx
from corral.db.migrate import upgrade
from corral.db.tables import workloads
from corral.domain.resources import Limit, Resources
from corral.services import clusters, projects, quotas, users
from corral.services import workloads as workload_service
from corral.services.admission import run_pass
from corral.services.principal import Principal


def fresh(url: str) -> str:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        import os

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=1_000)
    parser.add_argument("--clusters", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(7)
    engine = make_engine(fresh(args.database_url))
    upgrade(engine)
    t0 = time.perf_counter()
    with write_tx(engine) as conn:
        admin = users.create_user(conn, email="bench@example.com", display_name=None, role="admin", actor="bench")
        p = Principal(admin["id"], admin["email"], "admin")
        cap = Resources(gpu=4_000, cpu=4_000_000, memory=2**50, ephemeral_storage=2**50)
        for c in range(args.clusters):
            clusters.create_cluster(conn, p, name=f"c{c}", kind="kubernetes", capacity=cap, unhealthy_after_s=1e9)
        share = Resources(gpu=cap.gpu // args.projects * args.clusters // 3, cpu=cap.cpu // args.projects * 3,
                          memory=2**40, ephemeral_storage=2**40)
        for i in range(args.projects):
            projects.create_project(conn, p, name=f"p{i}")
            for c in rng.sample(range(args.clusters), 2):
                borrow = rng.random() < 0.5
                quotas.set_quota(conn, p, f"p{i}", f"c{c}", guaranteed=share,
                                 limit=Limit(gpu=share.gpu * 2, cpu=None, memory=None, ephemeral_storage=None)
                                 if borrow else None)
    with read_tx(engine) as conn:
        quota_pairs = [(r.name, r.cluster) for r in conn.execute(text(
            "SELECT p.name, c.name AS cluster FROM quotas q JOIN projects p ON p.id = q.project_id "
            "JOIN clusters c ON c.id = q.cluster_id"))]
    batch = []
    for i in range(args.queued):
        project, cluster = rng.choice(quota_pairs)
        spec = workload_service.parse_spec({
            "type": "training", "name": f"w{i}", "project": project, "cluster": cluster, "dataset": "d",
            "command": "x", "priority": rng.choice(["low", "medium", "medium", "high"]),
            "resources": {"gpu": rng.choice([1, 1, 2, 4, 8]), "cpu": rng.choice([2, 4, 8]), "memory": "8Gi"}})
        with read_tx(engine) as conn:
            batch.append(workload_service.prepare_submission(conn, p, spec, unhealthy_after_s=1e9))
        if len(batch) == 500:
            with write_tx(engine) as conn:
                workload_service.write_submissions(conn, batch)
            batch = []
    if batch:
        with write_tx(engine) as conn:
            workload_service.write_submissions(conn, batch)
    print(f"set-up: {args.queued:,} queued over {args.projects:,} projects and {args.clusters} clusters "
          f"in {time.perf_counter() - t0:.0f} s ({engine.dialect.name})")
    total, elapsed = 0, 0.0
    for n in range(1, 20):
        start = time.perf_counter()
        result = run_pass(engine)
        took = time.perf_counter() - start
        print(f"pass {n}: {result.admitted:,} admitted, {result.preempted:,} preempted, {result.waiting:,} waiting "
              f"in {took * 1000:.0f} ms")
        total += result.admitted
        elapsed += took
        if not result.admitted:
            break
    with read_tx(engine) as conn:
        held = conn.execute(select(func.count()).where(workloads.c.admitted_at.is_not(None))).scalar_one()
    print(f"admissions: {total:,} ({held:,} in the database) in {elapsed:.2f} s of passes: "
          f"{total / elapsed:,.0f} admissions/s end to end")


if __name__ == "__main__":
    main()
