"""Concurrent submissions and deletions keep the kept counts exact."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from corral.db.engine import read_tx, write_tx
from corral.db.tables import project_usage, workload_counts, workloads
from corral.services import workloads as workload_service
from corral.services.errors import Conflict
from corral.services.principal import Principal
from corral.services.users import get_user_by_email
from corral.services.submit_batcher import SubmitBatcher


def test_counts_stay_exact_under_concurrent_submits_and_deletes(world):
    engine = world.api.engine
    with read_tx(engine) as conn:
        alice = get_user_by_email(conn, "alice@example.com")
    principal = Principal(alice["id"], alice["email"], "member")
    writer = SubmitBatcher(engine, unhealthy_after_s=90, max_batch=16)

    def work(seed: int) -> int:
        rng = random.Random(seed)
        created = []
        for i in range(15):
            kind = rng.choice([{"type": "custom", "command": "x"}, {"type": "workspace"}])
            spec = workload_service.parse_spec({**kind, "name": f"t{seed}-{i}", "project": "vision"})
            created.append(writer.submit_as(principal, spec)["id"])
            if rng.random() < 0.4:
                victim = rng.choice(created)
                try:
                    with write_tx(engine) as conn:
                        workload_service.request_delete(conn, principal, victim)
                except Conflict:
                    pass  # already deleted by this thread earlier
        return len(created)

    with ThreadPoolExecutor(max_workers=6) as pool:
        total = sum(pool.map(work, range(6)))
    writer.close()

    with engine.connect() as conn:
        real = dict(conn.execute(select(workloads.c.status, func.count()).group_by(workloads.c.status)).all())
        kept = {s: int(n) for s, n in conn.execute(
            select(workload_counts.c.status, func.sum(workload_counts.c.count)).group_by(workload_counts.c.status)
        ).all() if n}
        queued = conn.execute(select(func.sum(project_usage.c.queued))).scalar_one()
    assert sum(real.values()) == total == 90
    assert kept == real
    assert queued == real.get("Pending", 0)
