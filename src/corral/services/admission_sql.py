"""The admission pass's bulk statements: one statement per chunk of ids, not one per row,
and the few places where SQLite and PostgreSQL differ."""


from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Connection, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from corral.db.dialect import id_in
from corral.db.tables import workloads
from corral.db.types import UTCDateTime
from corral.domain.scheduling import (
    QueuedWorkload,
)
from corral.domain.statuses import WorkloadStatus
from corral.services.status import count_delta


CHUNK = 5_000  # ids per IN list or array parameter
_PENDING = WorkloadStatus.PENDING.value


def moved_counts(conn: Connection, moved: list[tuple[QueuedWorkload, int]], postgres: bool) -> list[dict[str, Any]]:
    """The count deltas that make kept counts follow workloads placed on another cluster
    than their tentative one (written by the caller with its other counts)."""
    where = {w.id: (w, c) for w, c in moved}
    deltas = []
    for chunk in chunks(sorted(where)):
        for r in conn.execute(select(workloads.c.id, workloads.c.type, workloads.c.status)
                              .where(id_in(workloads.c.id, chunk, postgres))):
            w, c = where[r.id]
            deltas += [count_delta(w.project_id, w.cluster_id, r.type, r.status, -1),
                       count_delta(w.project_id, c, r.type, r.status, +1)]
    return deltas


def chunks(ids: list[int], size: int = CHUNK) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def insert_events(conn: Connection, postgres: bool, *, at: datetime, actor: str, kind: str, message: str,
                   ids: list[int], project_ids: list[int]) -> None:
    """One event per workload, all alike but for the subject."""
    if postgres:
        # One statement per chunk instead of one round of parameters per row.
        stmt = _PG_EVENTS_FOR_WORKLOADS
        for i in range(0, len(ids), CHUNK):
            conn.execute(stmt, {"at": at, "actor": actor, "kind": kind, "message": message,
                                "ids": ids[i:i + CHUNK], "pids": project_ids[i:i + CHUNK]})
        return
    if ids:  # SQLite: the subjects as one JSON parameter, not a round of parameters per row
        conn.execute(_SQLITE_EVENTS_FOR_WORKLOADS, {"at": at, "actor": actor, "kind": kind, "message": message,
                                                    "rows": orjson.dumps(list(zip(ids, project_ids))).decode()})


def set_reasons(conn: Connection, postgres: bool, items: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Waiting reasons, only on workloads that still wait; returns those written.

    On PostgreSQL rows another transaction holds are skipped (written by a later pass), so
    a pass never waits for, or deadlocks with, a request holding a workload it explains.

    ``items`` may be empty (a newcomers' pass whose newcomers were all admitted while older
    reasons wait for the budget): an executemany with no parameters would run the UPDATE
    once with none bound, which SQLAlchemy refuses."""
    if not items:
        return []
    if postgres:
        written: list[tuple[int, str]] = []
        for i in range(0, len(items), CHUNK):
            chunk = items[i:i + CHUNK]
            done = set(conn.execute(_PG_SET_REASONS, {"ids": [w for w, _ in chunk],
                                                      "reasons": [r for _, r in chunk]}).scalars())
            written.extend(item for item in chunk if item[0] in done)
        return written
    conn.execute(_SQLITE_SET_REASONS, {"items": orjson.dumps(items).decode()})
    return items


def _pg_statements() -> tuple[Any, Any]:
    ids = bindparam("ids", type_=ARRAY(BigInteger))
    pids = bindparam("pids", type_=ARRAY(BigInteger))
    insert_events = text(
        "INSERT INTO events (at, actor, subject_type, subject_id, project_id, kind, message) "
        "SELECT :at, :actor, 'workload', u.id, u.pid, :kind, :message FROM unnest(:ids, :pids) AS u(id, pid)"
    ).bindparams(ids, pids)
    set_reasons = text(
        "UPDATE workloads AS w SET status_reason = u.reason FROM unnest(:ids, :reasons) AS u(id, reason) "
        "WHERE w.id = u.id AND w.id IN (SELECT id FROM workloads WHERE id = ANY(:ids) AND status = 'Pending' "
        "AND admitted_at IS NULL FOR NO KEY UPDATE SKIP LOCKED) RETURNING w.id"
    ).bindparams(ids, bindparam("reasons", type_=ARRAY(workloads.c.status_reason.type)))
    return insert_events, set_reasons


_PG_EVENTS_FOR_WORKLOADS, _PG_SET_REASONS = _pg_statements()

# SQLite: pairs in one JSON parameter, read by json_each; the time through UTCDateTime.
_SQLITE_EVENTS_FOR_WORKLOADS = text(
    "INSERT INTO events (at, actor, subject_type, subject_id, project_id, kind, message) "
    "SELECT :at, :actor, 'workload', json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), :kind, :message "
    "FROM json_each(:rows) AS j"
).bindparams(bindparam("at", type_=UTCDateTime()))
_SQLITE_SET_REASONS = text(
    "UPDATE workloads SET status_reason = json_extract(j.value, '$[1]') FROM json_each(:items) AS j "
    f"WHERE workloads.id = json_extract(j.value, '$[0]') AND workloads.status = '{_PENDING}' "
    "AND workloads.admitted_at IS NULL"
)
