"""The scheduler waits for wake-ups instead of polling: a submission made through the API
(another engine, as from another process: inotify on SQLite's files, NOTIFY on
PostgreSQL) is admitted long before the loop's slow timer would have looked."""

from __future__ import annotations

import threading
import time

import pytest

from corral.db.engine import make_engine
from corral.scheduler import wakeup
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


def _moved(read, since: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while read() == since:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_held_agent_polls_wake_only_for_events_agents_act_on(world, db_url):
    """A submission (it waits for admission) is news to the scheduler, not to agents (nothing for them
    to run): on PostgreSQL the agents' signal stays put, here (the server's engine) and in
    another process (NOTIFY's payload); an admission moves it. SQLite's wake-ups come from
    writes to its file, which cannot tell one event from another: there every one wakes."""
    postgres = db_url.startswith("postgresql")
    other = make_engine(db_url, pool_size=2)  # as in another process
    theirs, ours = wakeup.for_engine(other), wakeup.for_engine(world.api.engine)
    scheduler_engine = make_engine(db_url, pool_size=2)
    try:
        time.sleep(0.5)  # the other engine listens by now
        seen = {name: (s.version, s.agents.version) for name, s in (("theirs", theirs), ("ours", ours))}
        assert submit(world.alice, name="queues", resources={"gpu": 1}).status_code == 201
        for name, signal in (("theirs", theirs), ("ours", ours)):
            assert _moved(lambda s=signal: s.version, seen[name][0]), f"{name}: the submission woke nobody"
        time.sleep(0.3)
        for name, signal in (("theirs", theirs), ("ours", ours)):
            if postgres:
                assert signal.agents.version == seen[name][1], f"{name}: a queued submission woke the agents"
            else:
                assert signal.agents.version > seen[name][1]

        before = theirs.agents.version
        wid = submit(world.alice, name="fits", resources={"gpu": 1}).json()["id"]
        loop = AdmissionLoop(scheduler_engine)
        deadline = time.monotonic() + 30
        while world.alice.get(f"/api/v1/workloads/{wid}").json()["admitted_at"] is None:
            assert time.monotonic() < deadline, "not admitted"
            loop.step()
        assert _moved(lambda: theirs.agents.version, before), "an admission did not wake the agents"
    finally:
        other.dispose()
        scheduler_engine.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # NOTIFY: PostgreSQL's
def test_an_agents_notification_behind_another_in_one_batch_still_wakes_the_agents(db_url):
    """Notifications of one transaction arrive together, in order: the agents' one after a
    plain one must not be lost with the rest of the batch."""
    listener = make_engine(db_url, pool_size=1)
    signal = wakeup.for_engine(listener)
    try:
        time.sleep(0.5)  # listening
        agents = signal.agents.version
        with make_engine(db_url, pool_size=1).begin() as conn:
            conn.exec_driver_sql(f"NOTIFY {wakeup.CHANNEL}")
            conn.exec_driver_sql(f"NOTIFY {wakeup.CHANNEL}, '{wakeup.AGENT_PAYLOAD}'")
        assert _moved(lambda: signal.agents.version, agents), "the agents' notification was dropped"
    finally:
        listener.dispose()
