"""Group commit for submissions: concurrent requests share one transaction.

Request threads hand a prepared submission to the writer thread and wait. While one
batch commits the next gathers, so under load many submissions cost one commit and one
update of each count row, and at low load a submission waits for nobody.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from corral.db.engine import write_tx
from corral.services.errors import Conflict
from corral.services.workloads import PreparedSubmission, write_submissions


class SubmissionWriter:
    def __init__(self, engine: Engine, max_batch: int = 256) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.Queue[tuple[PreparedSubmission, Future[dict[str, Any]]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, item: PreparedSubmission, timeout: float = 60.0) -> dict[str, Any]:
        self._ensure_started()
        future: Future[dict[str, Any]] = Future()
        self._queue.put((item, future))
        return future.result(timeout=timeout)

    def close(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=10)
                self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="submission-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[tuple[PreparedSubmission, Future[dict[str, Any]]]]) -> None:
        try:
            with write_tx(self._engine) as conn:
                results = write_submissions(conn, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                if isinstance(exc, IntegrityError):
                    # The project or cluster went away between the checks and the write.
                    exc = Conflict("the project or cluster changed while submitting; try again",
                                   code="concurrent_change")
                batch[0][1].set_exception(exc)
                return
            # One bad item must not fail the others: write each alone.
            for one in batch:
                self._write([one])
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)

