"""Engine set-up and transactions; the few places where SQLite and PostgreSQL differ."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_database_file(Path(parsed.database))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine)
        return engine
    # No server-side prepared statements: a generic plan, chosen once for any parameter,
    # can be far worse for a skewed table (one project of 200,000 rows, most of 1,000
    # projects small) than planning each query with its values (~0.2 ms).
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size // 2,
                           connect_args={"prepare_threshold": None})
    _replace_dropped_connections(engine)
    return engine


PING_IDLE_AFTER_S = 1.0


def _replace_dropped_connections(engine: Engine) -> None:
    """A pooled connection that the server dropped (a restart, a failover, a terminated
    backend, an idle timeout) is replaced at checkout instead of failing the request, as
    ``pool_pre_ping`` does, at less cost: that pings on every checkout, a round trip and a
    statement on the server for each (8% of the API's CPU under a stream of submissions).
    Here a connection that sat unused for over ``PING_IDLE_AFTER_S`` is pinged; one back
    sooner is only looked at: a server that dropped it has sent its goodbye (or closed the
    socket), which leaves the idle socket readable, and nothing else is sent to an idle
    connection. A DisconnectionError makes the pool open a new one (SQLAlchemy's
    "pessimistic disconnect handling")."""
    import select

    from sqlalchemy.exc import DisconnectionError

    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: object, record: Any) -> None:
        record.info["corral_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_conn: Any, record: Any, _proxy: object) -> None:
        since = record.info.get("corral_idle_since")
        if since is None:
            return  # just opened
        try:
            poll = select.poll()
            poll.register(dbapi_conn.fileno(), select.POLLIN | select.POLLPRI)
            if poll.poll(0):
                raise DisconnectionError("the server closed this pooled connection")
            if time.monotonic() - since > PING_IDLE_AFTER_S:
                engine.dialect.do_ping(dbapi_conn)
        except (OSError, ValueError, dbapi_error) as exc:
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc


def _private_database_file(path: Path) -> None:
    """The database holds every user's hashes and the projects' encrypted secrets: it is
    created owner-only (0600, in a 0700 directory when this creates it). SQLite gives its
    -wal and -shm files the database file's mode, so they are owner-only too."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # an empty file is an empty database
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.exists() and file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)  # made by an older version, readable by others
        except PermissionError:
            log.warning("%s is readable by other users and not ours to change: chmod 600 %s", file, file)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling
        # starts transactions late and breaks atomic read-then-write).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # 4 MiB of page cache per connection: with a pool of ~20 the server stays small;
        # the OS page cache holds the rest of a hot database anyway.
        cursor.execute("PRAGMA cache_size=-4096")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        # Writers take the write lock up front: no deadlock upgrading a read lock later.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One atomic write: everything inside commits together or not at all."""
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """Reads without a transaction: each statement sees what is committed when it runs.

    Saves the BEGIN and ROLLBACK round trips on every request; no read path here needs
    several statements to agree on one snapshot.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn
