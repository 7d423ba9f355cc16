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

Agents act on a few kinds of event only (``dispatch.AGENT_EVENT_KINDS``: an admission, a
preemption, a deletion): ``signal.agents`` moves only for commits that wrote one of those
(NOTIFY's payload says so across processes), so a stream of submissions, which queue,
does not wake every held poll to read nothing. Where the kinds cannot be told (SQLite's
file wake-ups, parameters it cannot read) it moves with every wake-up.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from corral import fswatch
from corral.services.dispatch import AGENT_EVENT_KINDS

log = logging.getLogger(__name__)

CHANNEL = "corral_events"
_WRITTEN = "corral_events_written"
_FOR_AGENTS = "corral_events_for_agents"
_COMMITTED = "corral_events_committed"
AGENT_PAYLOAD = "agents"  # NOTIFY's payload for a commit that wrote events agents act on
STAT_POLL_S = 0.05  # SQLite without inotify
LISTEN_WAIT_S = 2.0  # PostgreSQL: how soon a listener notices its engine was disposed
SETTLE_S = 0.005  # after a file wake-up, a second look: the commit may land just after its write


class EventSignal:
    """A counter that moves whenever events may have been written, with waiters."""

    def __init__(self, *, agents: EventSignal | None = None) -> None:
        self.agents = agents  # the signal of the events agents act on (a signal of its own has none)
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

    def changed_for_all(self) -> None:
        """A change that may matter to agents too (or whose events cannot be told)."""
        self.changed()
        if self.agents is not None:
            self.agents.changed()

    def close(self) -> None:
        self._closed = True
        if self._close_hook is not None:
            self._close_hook()
        self.changed()
        if self.agents is not None:
            self.agents.close()


_signals: weakref.WeakKeyDictionary[Engine, EventSignal] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def for_engine(engine: Engine, *, cross_process: bool = True) -> EventSignal:
    """The engine's signal; the first call installs the hooks (and, with ``cross_process``,
    starts the thread that hears other processes' commits)."""
    with _lock:
        signal = _signals.get(engine)
        if signal is None:
            signal = _signals[engine] = EventSignal(agents=EventSignal())
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
    def _note(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        # An INSERT INTO events, alone or in a WITH of several tables' writes
        # (dialect.write_together).
        if statement[:18].upper() == "INSERT INTO EVENTS" or (
                statement[:4].upper() == "WITH" and "INSERT INTO events " in statement):
            conn.info[_WRITTEN] = True
            if not conn.info.get(_FOR_AGENTS) and _for_agents(parameters):
                conn.info[_FOR_AGENTS] = True

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        if conn.info.pop(_WRITTEN, False):
            agents = conn.info.pop(_FOR_AGENTS, False)
            if postgres:  # transactional: delivered when (and only if) this commits
                conn.connection.driver_connection.execute(
                    f"NOTIFY {CHANNEL}, '{AGENT_PAYLOAD}'" if agents else f"NOTIFY {CHANNEL}")
            if agents or not conn.info.get(_COMMITTED):  # an earlier commit's "agents" stands
                conn.info[_COMMITTED] = AGENT_PAYLOAD if agents else "others"

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        conn.info.pop(_WRITTEN, None)
        conn.info.pop(_FOR_AGENTS, None)

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        committed = record.info.pop(_COMMITTED, None)
        if committed == AGENT_PAYLOAD:
            signal.changed_for_all()
        elif committed:
            signal.changed()


def _for_agents(parameters: Any) -> bool:
    """Whether inserted events include a kind agents act on: the ``kind`` values of the
    statement's parameters (one row, several, one multi-row INSERT's ``kind__N``, or the
    JSON rows ``events__rows`` of dialect.write_together). True when it cannot tell
    (positional parameters: SQLite)."""
    rows = parameters if isinstance(parameters, (list, tuple)) else [parameters]
    told = False
    for row in rows:
        if not isinstance(row, Mapping):
            return True
        if "events__rows" in row:
            return any(event.get("kind") in AGENT_EVENT_KINDS for event in orjson.loads(row["events__rows"]))
        for key, value in row.items():
            if key == "kind" or key.startswith("kind__"):
                told = True
                if value in AGENT_EVENT_KINDS:
                    return True
    return not told


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
                signal.changed_for_all()  # whatever happened while no one listened
                delay = 0.5
                while not signal._closed:  # a closed signal is noticed within a wait
                    # Every notification of the batch that came (stop_after ends the wait,
                    # not the batch): one wake-up for it, the agents' too if any asks.
                    notes = list(conn.notifies(timeout=LISTEN_WAIT_S, stop_after=1))
                    if any(note.payload == AGENT_PAYLOAD for note in notes):
                        signal.changed_for_all()
                    elif notes:
                        signal.changed()
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
            if watch.wait(None):  # a write to the file: which events, it cannot tell
                signal.changed_for_all()
                time.sleep(SETTLE_S)
                watch.changed()  # what the same commit wrote meanwhile
                signal.changed_for_all()
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
            signal.changed_for_all()
