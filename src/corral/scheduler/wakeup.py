"""Wake-ups when an event is written, so that loops wait instead of polling.

Every change that matters to admission or to a cluster's agent writes a row of ``events``
(a submission, an admission, a deletion, a finished workload, a capacity change). The
scheduler waits for the next such change before it reads anything, and the agent's
long poll (``GET /agent/work?wait=``) is held open until one comes:

- in this process: a commit that inserted into ``events`` (seen by SQLAlchemy's engine
  events) wakes the waiters once its connection is returned to the pool, after the
  commit;
- across processes on PostgreSQL: that commit also sends ``NOTIFY corral_events``, and a
  ``LISTEN`` connection per process wakes the waiters;
- across processes on SQLite: inotify on the database's directory (every commit writes
  the database file or its write-ahead log), else a stat of the two files every 50 ms.

A wake-up only says "look again": waiters re-read what they need (one indexed read), so a
spurious one costs a query and a missed one costs the waiter's slow timer (a second).

    signal = for_engine(engine)          # one per engine, hooks installed once
    version = signal.version
    ...read...
    signal.wait(version, timeout=1.0)    # or: await signal.wait_async(version, timeout)
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from corral import fswatch

log = logging.getLogger(__name__)

CHANNEL = "corral_events"
_WRITTEN = "corral_events_written"
_COMMITTED = "corral_events_committed"
STAT_POLL_S = 0.05  # SQLite without inotify
LISTEN_WAIT_S = 2.0  # PostgreSQL: how soon a listener notices its engine was disposed
SETTLE_S = 0.005  # after a file wake-up, a second look: the commit may land just after its write


class EventSignal:
    """A counter that moves whenever events may have been written, with waiters."""

    def __init__(self) -> None:
        self.version = 0
        self._cond = threading.Condition()
        self._listeners: set[Callable[[], None]] = set()
        self._closed = False
        self._watcher: threading.Thread | None = None
        self._close_hook: Callable[[], None] | None = None

    def changed(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def wait(self, version: int, timeout: float | None) -> int:
        """Until ``version`` is no longer current or ``timeout`` passes; the version now."""
        with self._cond:
            if self.version == version and not self._closed:
                self._cond.wait_for(lambda: self.version != version or self._closed, timeout)
            return self.version

    async def wait_async(self, version: int, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        with self._cond:
            self._listeners.add(wake)
        try:
            if self.version == version:
                try:
                    await asyncio.wait_for(woken.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            with self._cond:
                self._listeners.discard(wake)
        return self.version

    def close(self) -> None:
        self._closed = True
        if self._close_hook is not None:
            self._close_hook()
        self.changed()


_signals: weakref.WeakKeyDictionary[Engine, EventSignal] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def for_engine(engine: Engine, *, cross_process: bool = True) -> EventSignal:
    """The engine's signal; the first call installs the hooks (and, with ``cross_process``,
    starts the thread that hears other processes' commits)."""
    with _lock:
        signal = _signals.get(engine)
        if signal is None:
            signal = _signals[engine] = EventSignal()
            _install_hooks(engine, signal)
            # The watcher thread holds no reference to the engine: it ends with it.
            event.listen(engine, "engine_disposed", lambda *_: signal.close())
            weakref.finalize(engine, signal.close)
        if cross_process and signal._watcher is None:
            _start_watcher(engine, signal)
        return signal


def _install_hooks(engine: Engine, signal: EventSignal) -> None:
    postgres = engine.dialect.name == "postgresql"

    @event.listens_for(engine, "before_cursor_execute")
    def _note(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement[:18].upper() == "INSERT INTO EVENTS":
            conn.info[_WRITTEN] = True

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        if conn.info.pop(_WRITTEN, False):
            if postgres:  # transactional: delivered when (and only if) this commits
                conn.connection.driver_connection.execute(f"NOTIFY {CHANNEL}")
            conn.info[_COMMITTED] = True

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        conn.info.pop(_WRITTEN, None)

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        if record.info.pop(_COMMITTED, False):
            signal.changed()


def _start_watcher(engine: Engine, signal: EventSignal) -> None:
    url = engine.url
    if url.get_backend_name() == "postgresql":
        target: Callable[[], None] = lambda: _listen_postgres(url.render_as_string(hide_password=False), signal)
    elif url.database and url.database != ":memory:":
        path = Path(url.database).resolve()
        target = lambda: _watch_sqlite(path, signal)
    else:
        return
    signal._watcher = threading.Thread(target=target, name="event-wakeups", daemon=True)
    signal._watcher.start()


def _listen_postgres(url: str, signal: EventSignal) -> None:
    import psycopg

    url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    while not signal._closed:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                signal.changed()  # whatever happened while no one listened
                delay = 0.5
                while not signal._closed:  # a closed signal is noticed within a wait
                    if any(True for _ in conn.notifies(timeout=LISTEN_WAIT_S)):
                        signal.changed()  # one wake-up per batch: the waiters re-read anyway
        except Exception as exc:  # noqa: BLE001 - the database restarts: listen again
            if signal._closed:
                return
            log.debug("event wake-ups: LISTEN failed (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _watch_sqlite(path: Path, signal: EventSignal) -> None:
    names = (path.name, path.name + "-wal")
    try:
        watch = fswatch.DirWatch([path.parent], names=names, mask=fswatch.IN_MODIFY | fswatch.IN_CREATE
                                 | fswatch.IN_CLOSE_WRITE | fswatch.IN_MOVED_TO)
    except OSError as exc:
        log.debug("event wake-ups: no inotify (%s); polling the database files", exc)
        _poll_sqlite(path, names, signal)
        return
    signal._close_hook = watch.wake
    try:
        while not signal._closed:
            if watch.wait(None):
                signal.changed()
                time.sleep(SETTLE_S)
                watch.changed()  # what the same commit wrote meanwhile
                signal.changed()
    finally:
        watch.close()


def _poll_sqlite(path: Path, names: tuple[str, ...], signal: EventSignal) -> None:
    def state() -> tuple[Any, ...]:
        out = []
        for name in names:
            try:
                st = os.stat(path.parent / name)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    last = state()
    while not signal._closed:
        time.sleep(STAT_POLL_S)
        now = state()
        if now != last:
            last = now
            signal.changed()
