"""A chunk of ids in one statement: an IN list (one parameter per id) against ``id_in``
(the ids as one parameter: an array on PostgreSQL, a JSON array on SQLite).

    .venv/bin/python bench/id_chunks.py --database-url sqlite:////tmp/corral-adm.db
    .venv/bin/python bench/id_chunks.py --database-url postgresql://postgres@127.0.0.1:5432/corral_adm

Needs a database with workloads (bench/admission_throughput.py leaves one). Times, in one
transaction rolled back, the statements an admission pass runs over a chunk of ids: the
admission UPDATE of workloads, the UPDATE of their components, and the read of their type
and status (the relocated workloads' counts), each matching no row (a status no workload
has), so only the statements' own cost is timed. Prints the median of --repeats, twice
each, alternating.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select, update

from corral.db.dialect import id_in
from corral.db.engine import make_engine
from corral.db.tables import components, workloads


def timed(engine: Engine, condition: Callable[[Any], Any], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        with engine.connect() as conn, conn.begin() as tx:
            started = time.perf_counter()
            conn.execute(update(workloads).where(condition(workloads.c.id), workloads.c.admitted_at.is_(None),
                                                 workloads.c.status == "NoSuch")
                         .values(version=workloads.c.version + 1))
            conn.execute(update(components).where(condition(components.c.workload_id),
                                                  components.c.status == "NoSuch").values(reason="x"))
            conn.execute(select(workloads.c.id, workloads.c.type, workloads.c.status)
                         .where(condition(workloads.c.id))).all()
            samples.append(time.perf_counter() - started)
            tx.rollback()
    return statistics.median(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--ids", type=int, default=5000, help="ids in the chunk (the admission pass's CHUNK)")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    engine = make_engine(args.database_url)
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        ids = list(conn.execute(select(workloads.c.id).order_by(workloads.c.id).limit(args.ids)).scalars())
    print(f"# {len(ids):,} ids, three statements, {engine.dialect.name}; median of {args.repeats}")
    for _ in range(2):
        print(f"IN list (a parameter per id): {timed(engine, lambda c: c.in_(ids), args.repeats):7.2f} ms")
        print(f"id_in (one parameter):        {timed(engine, lambda c: id_in(c, ids, postgres), args.repeats):7.2f} ms")


if __name__ == "__main__":
    main()
