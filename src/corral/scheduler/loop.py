"""The admission loop: its own process beside the HTTP server (`corral serve` starts it),
so that a pass over a long queue never competes with requests for the interpreter.

Level-triggered: it reads the newest event id (every change that matters to admission, a
submission, a deletion, a finished workload, a quota or capacity change, writes an event)
and runs a pass when it moved or when the ``Admitter`` has work of its own (a cluster due
for a full pass, reasons still to write), plus one pass a minute as a safety net. Between
reads it waits for a wake-up (``corral.scheduler.wakeup``: a commit that wrote events, in
this process or another) or ``idle_poll_s`` (1 s), so an idle scheduler costs nothing;
while the ``Admitter`` has work of its own it looks every ``poll_s`` (20 ms). The
``Admitter`` keeps its state in memory and reads only what changed, so a read is one
indexed query and a pass after one submission a few milliseconds. A missed wake-up or a
crash costs one ``idle_poll_s``. After a long pass (over 50 ms: the first load, a backlog of
reasons written a budget at a time) it rests up to 100 ms, unless another writer's event
comes meanwhile; after a busy spell (over 0.5 s of CPU) it returns the memory it freed.
The process runs at a lower CPU priority (nice 5), so on a busy machine requests are
served first. Loops of several replicas take turns: a pass locks the cluster rows.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import threading
import time

from sqlalchemy import Engine, func, select

from corral.db.engine import make_engine, read_tx
from corral.db.tables import events
from corral.scheduler import wakeup
from corral.services.admission import PASS_EVENT_KINDS, Admitter

log = logging.getLogger(__name__)

FORCED_PASS_EVERY_S = 60.0
IDLE_POLL_S = 1.0
LONG_PASS_S = 0.05  # a pass longer than this is followed by a rest ...
MAX_REST_S = 0.1  # ... of twice its length, at most this, cut short by news
GIVE_BACK_AFTER_S = 0.5  # a busy spell of this much CPU (a load, a backlog) freed enough to return


class AdmissionLoop:
    def __init__(self, engine: Engine, *, poll_s: float = 0.02, starvation_after_s: float = 300.0,
                 idle_poll_s: float = IDLE_POLL_S) -> None:
        self._engine = engine
        self._poll_s = poll_s
        self._idle_poll_s = max(idle_poll_s, poll_s)
        self._wakeups = wakeup.for_engine(engine)
        self.admitter = Admitter(engine, starvation_after_s=starvation_after_s)
        self._stop = threading.Event()
        self._seen_event_id: int | None = None
        self._last_pass_at = 0.0
        self._spell_s = 0.0  # CPU time in passes of the busy spell under way
        self.passes = 0

    def stop(self) -> None:
        self._stop.set()
        self._wakeups.changed()

    def _latest_event_id(self) -> int:
        with read_tx(self._engine) as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())

    def run(self) -> None:
        while not self._stop.is_set():
            version = self._wakeups.version  # a change from now on wakes the wait below
            rest = 0.0
            try:
                rest = self.step()
            except Exception:  # noqa: BLE001 - the next pass reloads and repairs whatever this one left
                log.exception("admission pass failed; retrying")
                self._stop.wait(1.0)
            if rest:
                self._rest(rest)
            self._stop.wait(self._poll_s)  # passes at most every poll_s, as under a burst
            if not self.admitter.wants_pass():
                self._wakeups.wait(version, self._idle_poll_s - self._poll_s)

    def step(self) -> float:
        """One pass if there is news or work left; returns how long to rest after it."""
        latest = self._latest_event_id()
        due = time.monotonic() - self._last_pass_at >= FORCED_PASS_EVERY_S
        if latest == self._seen_event_id and not due and not self.admitter.wants_pass():
            return 0.0
        started, cpu_started = time.monotonic(), time.thread_time()
        result = self.admitter.run_pass()
        took = time.monotonic() - started
        # What this pass saw. Its own events are news once; that pass then decides nothing.
        self._seen_event_id = latest
        self._last_pass_at = time.monotonic()
        self.passes += 1
        if result.admitted >= 100 or result.preempted or took > 0.5:
            log.info("admission pass: %d admitted, %d preempted, %d decided waiting, %d clusters in full, "
                     "%d reasons left, in %.0f ms", result.admitted, result.preempted, result.waiting,
                     result.full_clusters, result.reasons_left, took * 1000)
        # A busy spell (passes back to back: a load, a backlog) ends when the admitter
        # wants no pass of its own; after a long one, what it freed goes back. Its length
        # is CPU time: a pass that mostly waited for a lock (another replica's) freed nothing.
        self._spell_s += time.thread_time() - cpu_started
        if not self.admitter.wants_pass():
            if self._spell_s > GIVE_BACK_AFTER_S:
                give_memory_back()
            self._spell_s = 0.0
        # A short breath after a long pass (a backlog of reasons is written a budget per
        # pass); the process also runs at a lower CPU priority (run_process), so requests
        # come first on a busy machine.
        return min(2 * took, MAX_REST_S) if took > LONG_PASS_S else 0.0

    def _rest(self, seconds: float) -> None:
        """Rest, unless there is news meanwhile (a submission, a finished workload): news
        is acted on now, not after the breath; that includes news that came during the
        pass. Wake-ups also come from this scheduler's own commits (and on SQLite from any
        write to the file), so each is checked against the events written since the pass
        began, less those the pass writes itself."""
        version = self._wakeups.version
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._news():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            now = self._wakeups.wait(version, left)
            if now == version:
                return  # rested in full
            version = now

    def _news(self) -> bool:
        """An event since the last pass began that no pass writes (admission's own are
        waiting, admitted and preempted)."""
        seen = self._seen_event_id or 0
        with read_tx(self._engine) as conn:
            newest = conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()
            return newest > seen and conn.execute(
                select(events.c.id).where(events.c.id > seen, events.c.id <= newest,
                                          events.c.kind.not_in(PASS_EVENT_KINDS)).limit(1)).first() is not None


try:
    _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim  # glibc's, found in the process itself
except (OSError, AttributeError):
    _MALLOC_TRIM = None


def give_memory_back() -> None:
    """Return what a busy spell freed to the system: the heap keeps freed pages otherwise,
    and the scheduler would stay near its peak for the rest of its life (~12 MB after a
    100,000-workload drain). glibc only; elsewhere the cycle collection alone."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def run_process(database_url: str, poll_s: float, starvation_after_s: float, *,
                until_stdin_closes: bool = False, unhealthy_after_s: float = 90.0) -> None:
    """Entry point of the scheduler process (`python -m corral.scheduler`, which `corral
    serve` starts). With ``until_stdin_closes`` it also stops when its stdin reaches end of
    file: stdin is a pipe only its parent holds, so however the parent ends (SIGTERM, a
    crash, kill -9) the scheduler ends too, after the pass in progress."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    os.nice(5)  # the API's requests first: admission passes may wait a little, users should not
    engine = make_engine(database_url, pool_size=2)
    loop = AdmissionLoop(engine, poll_s=poll_s, starvation_after_s=starvation_after_s)
    loop.admitter.unhealthy_after_s = unhealthy_after_s  # silent clusters are no placement
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, lambda *_: loop.stop())
    if until_stdin_closes:
        threading.Thread(target=_stop_at_eof, args=(loop,), name="parent-watch", daemon=True).start()
    try:
        loop.run()
    finally:
        engine.dispose()


def _stop_at_eof(loop: AdmissionLoop) -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    log.info("the process that started the scheduler is gone: stopping")
    loop.stop()
