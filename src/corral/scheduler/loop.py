"""Runs admission passes: when woken (a submission, a deletion, a finished workload, a
quota or capacity change) and on a timer as a safety net. Level-triggered: each pass
reads what is and decides afresh, so a missed wake-up or a crash costs one interval."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from corral.services.admission import run_pass

log = logging.getLogger(__name__)


class AdmissionLoop:
    def __init__(self, engine: Engine, *, interval_s: float = 2.0, starvation_after_s: float = 300.0) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._starvation_after_s = starvation_after_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                result = run_pass(self._engine, starvation_after_s=self._starvation_after_s)
                self.passes += 1
                if result.admitted or result.preempted:
                    log.info("admission pass: %d admitted, %d preempted, %d waiting",
                             result.admitted, result.preempted, result.waiting)
            except Exception:  # noqa: BLE001 - the next pass repairs whatever this one left
                log.exception("admission pass failed; retrying on the next wake-up")
