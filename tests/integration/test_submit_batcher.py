"""Group commit of API submissions (services.submit_batcher): many requests, one transaction,
each answered with its own result only once committed."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from corral.db.engine import write_tx
from corral.db.tables import clusters, workload_counts, workloads
from corral.services.clock import utcnow
from corral.services.errors import ClusterUnavailable, InvalidInput, NotFound, Unauthenticated
from corral.services.submit_batcher import SubmitBatcher
from corral.services.users import hash_token
from corral.services.workloads import parse_spec
from tests.integration.conftest import submit


def _names(engine, project_name_prefix: str = "") -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(workloads.c.name).where(workloads.c.name.like(f"{project_name_prefix}%")))
                   .scalars())


def _spec(**overrides):
    body = {"type": "custom", "name": "job", "project": "vision", "command": "echo hi",
            "resources": {"gpu": 1, "cpu": 2, "memory": "8Gi"}}
    body.update(overrides)
    return parse_spec(body)


def test_concurrent_http_submissions_are_all_acknowledged_and_all_stored(world):
    def work(thread: int) -> list[int]:
        ids = []
        for i in range(12):
            response = submit(world.alice, name=f"c{thread}-{i}")
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        acknowledged = [wid for ids in pool.map(work, range(8)) for wid in ids]
    assert len(set(acknowledged)) == 96
    with world.api.engine.connect() as conn:
        stored = set(conn.execute(select(workloads.c.id).where(workloads.c.name.like("c%-%"))).scalars())
        kept = conn.execute(select(func.sum(workload_counts.c.count))).scalar_one()
    assert stored == set(acknowledged)
    assert kept == 96
    # Every acknowledged workload reads back as submitted.
    detail = world.alice.get(f"/api/v1/workloads/{acknowledged[-1]}")
    assert detail.status_code == 200 and detail.json()["status"] == "Pending"


def test_one_batch_writes_many_in_one_transaction(world):
    token = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, autostart=False)
    futures = [batcher.submit_async(token, _spec(name=f"b-{i}")) for i in range(40)]
    batcher.start()
    results = [f.result(timeout=60) for f in futures]
    batcher.close()
    assert batcher.batches == 1
    assert [r["name"] for r in results] == [f"b-{i}" for i in range(40)]
    assert len({r["id"] for r in results}) == 40
    assert _names(world.api.engine, "b-") == {f"b-{i}" for i in range(40)}
    with world.api.engine.connect() as conn:  # each answer names its own row (ids are drawn, then written)
        stored = dict(conn.execute(select(workloads.c.id, workloads.c.name)
                                   .where(workloads.c.id.in_([r["id"] for r in results]))).all())
    assert stored == {r["id"]: r["name"] for r in results}


@pytest.fixture
def event_loop_thread():
    """An event loop running in a thread of its own, as uvicorn's serves requests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_a_batch_takes_the_requests_the_event_loop_is_still_handing_over(world, event_loop_thread):
    """A burst of requests is handed over by the event loop one after the other: the writer,
    woken by the first, waits for the loop's turn and writes the whole burst together."""
    token = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, loop_turn_s=30)
    batcher.follow_loop(event_loop_thread)
    batcher.start()
    futures: list[Future] = []

    def burst() -> None:  # one turn of the loop: a request handed over, then the others
        futures.append(batcher.submit_async(token, _spec(name="burst-0")))
        time.sleep(0.3)  # the loop still busy with the next requests (the writer is awake by now)
        futures.extend(batcher.submit_async(token, _spec(name=f"burst-{i}")) for i in range(1, 5))

    event_loop_thread.call_soon_threadsafe(burst)
    deadline = time.monotonic() + 30
    while len(futures) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [f.result(timeout=60)["name"] for f in futures] == [f"burst-{i}" for i in range(5)]
    batcher.close()
    assert batcher.batches == 1


def test_a_batch_waits_for_a_busy_event_loop_only_so_long(world, event_loop_thread):
    token = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, loop_turn_s=0.05)
    batcher.follow_loop(event_loop_thread)
    batcher.start()
    seen: list[bool] = []

    def stuck() -> None:  # a turn of the loop that takes 20 s at most
        first = batcher.submit_async(token, _spec(name="not-held-0"))
        deadline = time.monotonic() + 20
        while not first.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(first.done())

    event_loop_thread.call_soon_threadsafe(stuck)
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    batcher.close()
    assert seen == [True]  # written while the loop was still busy
    assert _names(world.api.engine, "not-held-") == {"not-held-0"}


def test_what_arrives_while_a_busy_loop_is_waited_for_joins_the_batch(world, event_loop_thread):
    """The loop's turn times out (the loop is busy for longer), but what was queued
    meanwhile (here from another thread, as the web form's submissions come) joins the
    batch."""
    token = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, loop_turn_s=1.0)
    batcher.follow_loop(event_loop_thread)
    batcher.start()
    event_loop_thread.call_soon_threadsafe(time.sleep, 3)  # the loop, busy for 3 s
    time.sleep(0.1)
    first = batcher.submit_async(token, _spec(name="busy-loop-0"))
    time.sleep(0.3)  # the writer waits for the loop's turn by now
    second = batcher.submit_async(token, _spec(name="busy-loop-1"))
    assert first.result(timeout=60)["name"] == "busy-loop-0" and second.result(timeout=60)["name"] == "busy-loop-1"
    batcher.close()
    assert batcher.batches == 1


def test_the_callers_of_a_batch_coming_back_one_by_one_are_written_together(world):
    token = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, autostart=False, return_wait_s=30,
                            return_window_s=30)
    first = [batcher.submit_async(token, _spec(name=f"round1-{i}")) for i in range(4)]
    batcher.start()
    for f in first:
        f.result(timeout=60)
    # Its four callers come back, the first ahead of the others.
    second = [batcher.submit_async(token, _spec(name="round2-0"))]
    time.sleep(0.3)
    second += [batcher.submit_async(token, _spec(name=f"round2-{i}")) for i in range(1, 4)]
    assert [f.result(timeout=60)["name"] for f in second] == [f"round2-{i}" for i in range(4)]
    batcher.close()
    assert batcher.batches == 2


def test_a_lone_caller_does_not_wait_for_others(world):
    token = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, return_wait_s=30, return_window_s=30)
    batcher.submit(token, _spec(name="lone-0"))
    started = time.monotonic()
    batcher.submit(token, _spec(name="lone-1"))  # the last batch held one: nobody else is expected
    batcher.close()
    assert time.monotonic() - started < 10


def test_refused_items_get_their_own_errors_and_the_rest_of_the_batch_is_written(world):
    alice = hash_token(world.api.tokens["alice@example.com"])
    bob = hash_token(world.api.tokens["bob@example.com"])
    # gpu-b: a cluster whose agent fell silent an hour ago (unhealthy), quota for vision there.
    created = world.admin.post("/api/v1/clusters", json={"name": "gpu-b", "kind": "kubernetes",
                                                           "capacity": {"gpu": 4, "cpu": 8, "memory": "64Gi"}})
    assert created.status_code == 201, created.text
    quota = world.admin.put("/api/v1/projects/vision/quotas/gpu-b",
                            json={"guaranteed": {"gpu": 1, "cpu": 2, "memory": "8Gi"}})
    assert quota.status_code == 200, quota.text
    with write_tx(world.api.engine) as conn:
        conn.execute(update(clusters).where(clusters.c.name == "gpu-b")
                     .values(last_heartbeat_at=utcnow() - timedelta(hours=1)))
    limit = world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                            json={"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}, "limit": {"gpu": 8}})
    assert limit.status_code == 200, limit.text

    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, autostart=False)
    items = [
        (alice, _spec(name="ok-1")),
        (bob, _spec(name="not-bobs")),                                 # bob cannot see vision: 404
        (alice, _spec(name="too-big", cluster="gpu-a", resources={"gpu": 9})),  # over the limit: 422
        (hash_token("crl_not-a-real-token"), _spec(name="no-token")),  # 401
        (alice, _spec(name="silent-cluster", cluster="gpu-b")),        # unhealthy cluster: 503
        (alice, _spec(name="ok-2", secrets={"API_KEY": "missing"})),   # unknown secret: 422
        (bob, _spec(name="ok-3", project="speech")),
    ]
    futures = [batcher.submit_async(token, spec) for token, spec in items]
    batcher.start()
    outcomes = [f.exception(timeout=60) or f.result() for f in futures]
    batcher.close()

    assert batcher.batches == 1  # the refusals did not split the batch
    assert outcomes[0]["name"] == "ok-1" and outcomes[6]["name"] == "ok-3"
    assert isinstance(outcomes[1], NotFound)
    assert isinstance(outcomes[2], InvalidInput) and outcomes[2].code == "exceeds_quota_limit"
    assert isinstance(outcomes[3], Unauthenticated)
    assert isinstance(outcomes[4], ClusterUnavailable)
    assert outcomes[5].status_code == 422 and outcomes[5].field == "secrets.API_KEY"
    names = _names(world.api.engine)
    assert {"ok-1", "ok-3"} <= names
    assert not names & {"not-bobs", "too-big", "no-token", "silent-cluster", "ok-2"}


def test_a_batch_whose_transaction_fails_is_retried_item_by_item(world):
    """One item the database refuses (on PostgreSQL) fails the joint write: every item is
    then written alone, and only that one fails."""
    alice = hash_token(world.api.tokens["alice@example.com"])
    batcher = SubmitBatcher(world.api.engine, unhealthy_after_s=90, autostart=False)
    good = [batcher.submit_async(alice, _spec(name=f"g-{i}")) for i in range(5)]
    # A spec that passed validation but that the database refuses when written: PostgreSQL
    # stores no NUL in text (the API refuses one in the body: here it is put in by hand).
    bad_spec = _spec(name="bad")
    object.__setattr__(bad_spec, "name", "bad\x00name")
    bad = batcher.submit_async(alice, bad_spec)
    batcher.start()
    assert [f.result(timeout=60)["name"] for f in good] == [f"g-{i}" for i in range(5)]
    failure = bad.exception(timeout=60)
    batcher.close()
    if failure is None:  # SQLite does not enforce VARCHAR lengths: then it was simply written
        assert world.api.engine.dialect.name == "sqlite"
    else:
        assert world.api.engine.dialect.name == "postgresql"
    assert _names(world.api.engine, "g-") == {f"g-{i}" for i in range(5)}


def test_a_token_revoked_after_it_was_seen_writes_nothing(world):
    assert submit(world.alice, name="before").status_code == 201  # the token is now known as valid
    tokens = world.alice.get("/api/v1/tokens").json()
    revoked = world.alice.delete(f"/api/v1/tokens/{tokens[0]['id']}")
    assert revoked.status_code in (200, 204), revoked.text
    response = submit(world.alice, name="after-revocation")
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert "after-revocation" not in _names(world.api.engine)


@pytest.mark.parametrize("token", [None, "crl_wrong", "nonsense"])
def test_a_bad_token_is_refused_before_the_body_is_looked_at(world, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = world.api.anonymous.post("/api/v1/workloads", json={"type": "custom"}, headers=headers)
    assert response.status_code == 401, response.text
