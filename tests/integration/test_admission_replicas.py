"""Admission with in-memory schedulers over a real database: two replicas racing, and
incremental passes that decide what a full pass would."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from corral.db.engine import read_tx, write_tx
from corral.db.tables import clusters, components, project_usage, quotas, workloads
from corral.domain.resources import Limit, Resources
from corral.domain.statuses import FINISHED_STATUSES, ComponentStatus
from corral.services import clusters as cluster_service
from corral.services import projects as project_service
from corral.services import quotas as quota_service
from corral.services import users as user_service
from corral.services import workloads as workload_service
from corral.services.admission import Admitter, RaceLost, decide_afresh
from corral.services.errors import Conflict
from corral.services.principal import SYSTEM, Principal
from corral.services.status import ComponentUpdate, apply_component_updates

FINISHED = [s.value for s in FINISHED_STATUSES]
GIB = 2**30
PROJECTS = {  # name -> (guaranteed gpu, limit gpu or None for unbounded, policy)
    "p0": (4, 8, "lower_priority"),
    "p1": (4, 4, "lower_priority"),
    "p2": (4, None, "never"),
    "p3": (4, 6, "lower_priority"),
}


def _setup(engine) -> Principal:
    with write_tx(engine) as conn:
        admin = user_service.create_user(conn, email="admin@example.com", display_name=None, role="admin",
                                         actor=SYSTEM)
        principal = Principal(admin["id"], admin["email"], "admin")
        for c in ("c0", "c1"):
            cluster_service.create_cluster(conn, principal, name=c, kind="kubernetes",
                                           capacity=Resources(gpu=16, cpu=256_000, memory=2048 * GIB),
                                           unhealthy_after_s=1e9)
        for name, (guaranteed, limit, policy) in PROJECTS.items():
            project_service.create_project(conn, principal, name=name, preemption_policy=policy)
            for c in ("c0", "c1"):
                quota_service.set_quota(
                    conn, principal, name, c, guaranteed=Resources(gpu=guaranteed, cpu=32_000, memory=256 * GIB),
                    limit=Limit(gpu=limit, cpu=None, memory=None, ephemeral_storage=None))
    return principal


def _submit(engine, principal: Principal, rng: random.Random, n: int, tag: str) -> None:
    batch = []
    for i in range(n):
        spec = workload_service.parse_spec({
            "type": "custom", "name": f"{tag}-{i}", "project": rng.choice(list(PROJECTS)),
            "cluster": rng.choice(["c0", "c1"]), "command": "x",
            "priority": rng.choice(["low", "medium", "high"]), "preemptible": rng.random() < 0.8,
            "resources": {"gpu": rng.choice([1, 1, 2, 3, 4]), "cpu": 1, "memory": "1Gi"}})
        with read_tx(engine) as conn:
            batch.append(workload_service.prepare_submission(conn, principal, spec, unhealthy_after_s=1e9))
        if len(batch) == 20:
            with write_tx(engine) as conn:
                workload_service.write_submissions(conn, batch)
            batch = []
    if batch:
        with write_tx(engine) as conn:
            workload_service.write_submissions(conn, batch)


def _finish_some(engine, rng: random.Random, n: int) -> None:
    """Admitted workloads complete (as their agent would report it); some queued ones are deleted."""
    with read_tx(engine) as conn:
        held = conn.execute(select(workloads.c.id).where(workloads.c.admitted_at.is_not(None),
                                                         workloads.c.status.not_in(FINISHED))).scalars().all()
        waiting = conn.execute(select(workloads.c.id).where(workloads.c.admitted_at.is_(None),
                                                            workloads.c.status == "Pending")).scalars().all()
    for wid in rng.sample(held, min(n, len(held))):
        with write_tx(engine) as conn:
            comps = conn.execute(select(components.c.id).where(components.c.workload_id == wid)).scalars().all()
            at = datetime.now(UTC) + timedelta(seconds=1)
            apply_component_updates(conn, [ComponentUpdate(c, ComponentStatus.COMPLETED, "done", at) for c in comps],
                                    "agent")
    for wid in rng.sample(waiting, min(n // 3, len(waiting))):
        try:
            with write_tx(engine) as conn:
                workload_service.request_delete(conn, Principal(0, "admin@example.com", "admin"), wid)
        except Conflict:
            pass  # admitted, finished or deleted meanwhile


def _violations(engine) -> list[str]:
    """Quota limits and cluster capacity, from the workloads themselves (not the kept usage)."""
    with read_tx(engine) as conn:
        held = conn.execute(
            select(workloads.c.project_id, workloads.c.cluster_id, func.sum(workloads.c.gpu))
            .where(workloads.c.admitted_at.is_not(None), workloads.c.status.not_in(FINISHED))
            .group_by(workloads.c.project_id, workloads.c.cluster_id)).all()
        limits = {(r.project_id, r.cluster_id): r.limit_gpu for r in conn.execute(select(quotas))}
        capacity = dict(conn.execute(select(clusters.c.id, clusters.c.capacity_gpu)).all())
    found, per_cluster = [], {}
    for p, c, gpu in held:
        per_cluster[c] = per_cluster.get(c, 0) + int(gpu)
        if limits[(p, c)] is not None and gpu > limits[(p, c)]:
            found.append(f"project {p} holds {gpu} GPUs on cluster {c}, limit {limits[(p, c)]}")
    found += [f"cluster {c} holds {gpu} of {capacity[c]} GPUs" for c, gpu in per_cluster.items() if gpu > capacity[c]]
    return found


def _settle(admitter: Admitter) -> None:
    for _ in range(50):
        admitter.run_pass()
        if not admitter.wants_pass():
            return
        time.sleep(0.01)
    raise AssertionError("the scheduler never settled")


def test_two_schedulers_with_thousands_of_submissions_never_exceed_quota_or_capacity(engine, db_url):
    principal = _setup(engine)
    total = 2_000
    stop = threading.Event()
    violations: list[str] = []
    errors: list[BaseException] = []
    passes = [0, 0]
    races = [0]

    def guarded(target, *args):  # type: ignore[no-untyped-def]
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
        return threading.Thread(target=run)

    def scheduler(index: int) -> None:
        admitter = Admitter(engine, preemption_delay_s=0.05)
        while not stop.is_set():
            try:
                admitter.run_pass()  # a GuardViolation (or any other error) fails the test
            except RaceLost:
                races[0] += 1  # a delete raced the pass: rolled back, decided again after a reload
            passes[index] += 1
            time.sleep(0.002)

    def checker() -> None:
        while not stop.is_set():
            violations.extend(_violations(engine))
            time.sleep(0.005)

    def churn() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            _finish_some(engine, rng, 10)
            time.sleep(0.05)

    threads = [guarded(scheduler, 0), guarded(scheduler, 1), guarded(checker), guarded(churn)]
    for t in threads:
        t.start()
    submitters = [guarded(_submit, engine, principal, random.Random(seed), total // 2, f"s{seed}")
                  for seed in (1, 2)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert violations == []
    assert min(passes) > 10, passes  # both replicas really took turns

    final = Admitter(engine, preemption_delay_s=0.0)  # settle: no preemption left for later
    _settle(final)
    assert _violations(engine) == []
    after = decide_afresh(engine)
    assert (after.admissions, after.preemptions) == ([], [])
    with read_tx(engine) as conn:
        assert conn.execute(select(func.count()).select_from(workloads)).scalar_one() == total
        kept = {(r.project_id, r.cluster_id): r.gpu for r in conn.execute(select(project_usage)) if r.gpu}
        real = {(p, c): int(g) for p, c, g in conn.execute(
            select(workloads.c.project_id, workloads.c.cluster_id, func.sum(workloads.c.gpu))
            .where(workloads.c.admitted_at.is_not(None), workloads.c.status.not_in(FINISHED))
            .group_by(workloads.c.project_id, workloads.c.cluster_id))}
        assert kept == {k: v for k, v in real.items() if v}
        unexplained = conn.execute(select(func.count()).where(
            workloads.c.status == "Pending", workloads.c.admitted_at.is_(None),
            workloads.c.status_reason.like("queued:%"))).scalar_one()
        admitted = conn.execute(select(func.count()).where(workloads.c.admitted_at.is_not(None))).scalar_one()
    assert unexplained == 0  # every waiting workload says why
    assert admitted > 50  # not a throughput figure: the schedulers really admitted (after settling)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_incremental_passes_decide_what_a_full_pass_would(engine, db_url, seed):
    principal = _setup(engine)
    rng = random.Random(seed)
    admitter = Admitter(engine, preemption_delay_s=0.0)
    checked = 0
    for step in range(25):
        _submit(engine, principal, rng, rng.randint(1, 30), f"r{step}")
        if step % 3 == 2:
            _finish_some(engine, rng, rng.randint(1, 8))
        _settle(admitter)
        after = decide_afresh(engine)
        assert after.admissions == [], f"step {step}: a full pass would still admit {after.admissions}"
        assert after.preemptions == [], f"step {step}: a full pass would still preempt {after.preemptions}"
        checked += 1
    assert checked == 25 and _violations(engine) == []
