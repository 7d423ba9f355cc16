"""Runs admission passes: when woken (a submission, a deletion, a finished workload, a
quota or capacity change) and on a timer as a safety net. Level-triggered: each pass
reads what is and decides afresh, so a missed wake-up or a crash costs one interval.

A pass reads the whole queue, so two limits keep it from crowding out requests: a pass is
skipped when nothing was recorded since the last one (every change that matters writes an
event), except for one pass a minute (waiting times cross the anti-starvation threshold
without any event); and after a pass that took T the loop rests at least 2T.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine, func, select

from corral.db.engine import read_tx
from corral.db.tables import events
from corral.services.admission import run_pass

log = logging.getLogger(__name__)

FORCED_PASS_EVERY_S = 60.0


class AdmissionLoop:
    def __init__(self, engine: Engine, *, interval_s: float = 2.0, starvation_after_s: float = 300.0) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._starvation_after_s = starvation_after_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_event_id: int | None = None
        self._last_pass_at = 0.0
        self.passes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="admission-loop", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _latest_event_id(self) -> int:
        with read_tx(self._engine) as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                latest = self._latest_event_id()
                due = time.monotonic() - self._last_pass_at >= FORCED_PASS_EVERY_S
                if latest == self._seen_event_id and not due:
                    continue
                started = time.monotonic()
                result = run_pass(self._engine, starvation_after_s=self._starvation_after_s)
                took = time.monotonic() - started
                # What the pass saw (anything committed during it is news for the next one;
                # so are the pass's own events, once: that pass then finds nothing to write).
                self._seen_event_id = latest
                self._last_pass_at = time.monotonic()
                self.passes += 1
                if result.admitted or result.preempted:
                    log.info("admission pass: %d admitted, %d preempted, %d waiting in %.0f ms",
                             result.admitted, result.preempted, result.waiting, took * 1000)
                if took > 0.05:
                    self._stop.wait(2 * took)  # rest: at most a third of a core on passes
            except Exception:  # noqa: BLE001 - the next pass repairs whatever this one left
                log.exception("admission pass failed; retrying on the next wake-up")
