"""The scheduler waits for wake-ups instead of polling: a submission made through the API
(another engine, as from another process: inotify on SQLite's files, NOTIFY on
PostgreSQL) is admitted long before the loop's slow timer would have looked."""

from __future__ import annotations

import threading
import time

from corral.db.engine import make_engine
from corral.scheduler.loop import AdmissionLoop
from tests.integration.conftest import submit


def test_a_submission_wakes_an_idle_scheduler(world, db_url):
    engine = make_engine(db_url, pool_size=2)
    loop = AdmissionLoop(engine, idle_poll_s=60.0)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while loop.passes < 1 or loop.admitter.wants_pass():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # idle now: waiting for a wake-up, its timer 60 s away
        passes = loop.passes
        started = time.monotonic()
        wid = submit(world.alice, name="woken", resources={"gpu": 1}).json()["id"]
        while world.alice.get(f"/api/v1/workloads/{wid}").json()["admitted_at"] is None:
            assert time.monotonic() - started < 30, "the submission did not wake the scheduler"
            time.sleep(0.02)
        assert loop.passes > passes
    finally:
        loop.stop()
        thread.join(10)
        engine.dispose()
    assert not thread.is_alive()  # stop() ends the wait at once


def test_news_cuts_the_rest_after_a_long_pass_short(world, db_url):
    """After a long pass (a backlog of reasons) the loop rests; a submission meanwhile is
    news to act on at once, while wake-ups without news (the loop's own commits, a write
    to SQLite's file) and the events its own pass wrote do not end the rest."""
    engine = make_engine(db_url, pool_size=2)
    loop = AdmissionLoop(engine)
    try:
        submit(world.alice, name="first", resources={"gpu": 9})  # waits: its pass writes a waiting event
        loop.step()  # a pass, as before a rest; what it wrote itself is no news
        started = time.monotonic()
        loop._rest(0.3)
        assert 0.25 <= time.monotonic() - started < 5  # nothing new: the full rest

        resting = threading.Thread(target=loop._rest, args=(60.0,), daemon=True)
        resting.start()
        for _ in range(5):  # wake-ups that bring no event
            loop._wakeups.changed()
            time.sleep(0.05)
        assert resting.is_alive()
        submitted = time.monotonic()
        submit(world.alice, name="news", resources={"gpu": 1})
        resting.join(10)
        assert not resting.is_alive(), "a submission did not end the rest"
        assert time.monotonic() - submitted < 10
    finally:
        loop.stop()
        engine.dispose()
