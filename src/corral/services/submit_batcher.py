"""Group commit for submissions: checks and writes of concurrent requests in one transaction.

A request hands its caller's token (hashed) and its validated spec to one writer thread and
waits on a future (the web form, whose session is checked per request, hands its
principal instead: ``submit_as``). The writer takes everything that queued while the last
batch committed and, in ONE write transaction, authenticates every token of the batch in one query, checks
each submission (project visibility, quota limit, cluster health: project and quota rows
read once per batch and caller), writes the accepted ones together and commits; only then
is any request answered. Nothing is acknowledged before its commit, so a kill -9 of the
server loses no acknowledged submission.

A submission refused by its checks (401, 404, 422, 503) gets its own error; the others
of the batch are written. If the batch's transaction fails as a whole (a database error,
a project deleted under it), each submission is retried alone in its own transaction, so
one bad item never fails the others.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from corral.db.engine import write_tx
from corral.services.errors import Conflict, ServiceError, Unauthenticated
from corral.services.principal import Principal
from corral.services.users import principals_by_token_hash
from corral.services.workloads import SubmissionLookups, prepare_submission, write_submissions

INVALID_TOKEN = "invalid, expired or revoked token"
# The longest a batch waits for the event loop to hand over the requests it holds.
LOOP_TURN_S = 0.005
# The longest a batch waits for the callers of the last one to come back, and how lately
# that one must have been answered for them to be expected.
RETURN_WAIT_S = 0.002
RETURN_WINDOW_S = 0.010


@dataclass(slots=True)
class Submission:
    token_hash: str | None  # an API caller's token, authenticated with the batch
    spec: Any  # a validated WorkloadSpec
    future: Future[dict[str, Any]]
    principal: Principal | None = None  # or a caller already authenticated (a web session)


class SubmitBatcher:
    def __init__(self, engine: Engine, *, unhealthy_after_s: float, max_batch: int = 256,
                 autostart: bool = True, loop_turn_s: float = LOOP_TURN_S,
                 return_wait_s: float = RETURN_WAIT_S, return_window_s: float = RETURN_WINDOW_S) -> None:
        """``autostart=False``: the writer starts on ``start()`` only (everything queued
        before it then forms one batch). The waits (seconds): see LOOP_TURN_S, RETURN_WAIT_S
        and RETURN_WINDOW_S."""
        self._engine = engine
        self._loop_turn_s = loop_turn_s
        self._return_wait_s = return_wait_s
        self._return_window_s = return_window_s
        self._autostart = autostart
        self._unhealthy_after_s = unhealthy_after_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_batch = (0, 0.0)  # the last batch's size and when it was answered (monotonic)
        self.batches = 0  # batches committed (for tests and benchmarks)

    def follow_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the requests arrive on: a batch waits for its current turn."""
        self._loop = loop

    def submit_async(self, token_hash: str, spec: Any) -> Future[dict[str, Any]]:
        """Queue one submission; the future holds the created workload once committed, or
        the ServiceError that refused it."""
        if self._autostart:
            self.start()
        future: Future[dict[str, Any]] = Future()
        self._queue.put(Submission(token_hash, spec, future))
        return future

    def submit(self, token_hash: str, spec: Any, timeout: float = 60.0) -> dict[str, Any]:
        return self.submit_async(token_hash, spec).result(timeout=timeout)

    def submit_as(self, principal: Principal, spec: Any, timeout: float = 60.0) -> dict[str, Any]:
        """For a caller authenticated otherwise (a web session): the created workload."""
        if self._autostart:
            self.start()
        future: Future[dict[str, Any]] = Future()
        self._queue.put(Submission(None, spec, future, principal))
        return future.result(timeout=timeout)

    def close(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=10)
                self._thread = None

    def start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="submit-batcher", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = self._take_queued(batch)
            if not stop and len(batch) < self._max_batch:
                self._loop_turn()  # however it ended, what was queued meanwhile comes along
                stop = self._take_queued(batch)
            if not stop:
                stop = self._wait_for_returning(batch)
            # A request whose caller went away before its write began is not written; from
            # here on none of these futures can be cancelled.
            batch = [s for s in batch if s.future.set_running_or_notify_cancel()]
            if batch:
                self._write(batch)
            if stop:
                return

    def _take_queued(self, batch: list[Submission], *, upto: int | None = None,
                     until: float | None = None) -> bool:
        """Move submissions into ``batch`` until it holds ``upto`` (default and at most: the
        batch size): those queued now, or with ``until`` (a monotonic deadline) those that
        arrive by then. True if told to stop."""
        upto = self._max_batch if upto is None else min(upto, self._max_batch)
        while len(batch) < upto:
            try:
                if until is None:
                    nxt = self._queue.get_nowait()
                else:
                    nxt = self._queue.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return False
            if nxt is None:
                return True
            batch.append(nxt)
        return False

    def _wait_for_returning(self, batch: list[Submission]) -> bool:
        """While fewer are in ``batch`` than the last batch answered moments ago, wait (a
        little) for those callers' next requests; True if told to stop."""
        size, answered_at = self._last_batch
        now = time.monotonic()
        if now - answered_at > self._return_window_s:
            return False
        return self._take_queued(batch, upto=size, until=now + self._return_wait_s)

    def _loop_turn(self) -> None:
        """Wait until the event loop has run what it had ready (requests it is handing
        over), or no longer than allowed (a busy loop); not at all without a loop or with
        a closed one."""
        loop = self._loop
        if loop is None:
            return
        turned = threading.Event()
        try:
            loop.call_soon_threadsafe(turned.set)
        except RuntimeError:  # the loop is closed
            return
        turned.wait(self._loop_turn_s)

    def _write(self, batch: list[Submission]) -> None:
        try:
            with write_tx(self._engine) as conn:
                outcomes = self._check_and_write(conn, batch)
        except Exception as exc:  # the transaction as a whole failed: nothing of it was written
            if len(batch) > 1:
                for one in batch:
                    self._write([one])
                return
            if isinstance(exc, IntegrityError):
                # The project or cluster went away between the checks and the write.
                exc = Conflict("the project or cluster changed while submitting; try again",
                               code="concurrent_change")
            batch[0].future.set_exception(exc)
            return
        self.batches += 1
        for submission, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                submission.future.set_exception(outcome)
            else:
                submission.future.set_result(outcome)
        self._last_batch = (len(batch), time.monotonic())

    def _check_and_write(self, conn: Connection, batch: list[Submission]) -> list[Any]:
        principals = principals_by_token_hash(conn, {s.token_hash for s in batch if s.token_hash is not None})
        lookups = SubmissionLookups()
        outcomes: list[Any] = []
        accepted: list[tuple[int, Any]] = []
        for index, submission in enumerate(batch):
            principal = submission.principal or principals.get(submission.token_hash)
            if principal is None:
                outcomes.append(Unauthenticated(INVALID_TOKEN))
                continue
            try:
                prepared = prepare_submission(conn, principal, submission.spec,
                                              unhealthy_after_s=self._unhealthy_after_s, lookups=lookups)
            except ServiceError as exc:  # refused by its checks: the others go on
                outcomes.append(exc)
                continue
            outcomes.append(None)
            accepted.append((index, prepared))
        if accepted:
            created = write_submissions(conn, [prepared for _, prepared in accepted])
            for (index, _), result in zip(accepted, created):
                outcomes[index] = result
        return outcomes
