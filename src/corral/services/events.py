"""The append-only event log: what happened, when, by whom."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from corral.db.tables import events
from corral.services.clock import utcnow


def event_row(
    *,
    actor: str,
    subject_type: str,
    subject_id: int,
    kind: str,
    message: str,
    project_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "at": at or utcnow(),
        "actor": actor,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "project_id": project_id,
        "kind": kind,
        "message": message,
    }


def record(conn: Connection, **fields: Any) -> None:
    conn.execute(insert(events), [event_row(**fields)])


def record_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(events), rows)


def list_for_subject(conn: Connection, subject_type: str, subject_id: int, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(events.c.id, events.c.at, events.c.actor, events.c.kind, events.c.message)
        .where(events.c.subject_type == subject_type, events.c.subject_id == subject_id)
        .order_by(events.c.id.desc())
        .limit(limit)
    ).all()
    return [row._asdict() for row in reversed(rows)]


def list_for_project(conn: Connection, project_id: int, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            events.c.id, events.c.at, events.c.actor, events.c.subject_type, events.c.subject_id,
            events.c.kind, events.c.message,
        )
        .where(events.c.project_id == project_id)
        .order_by(events.c.id.desc())
        .limit(limit)
    ).all()
    return [row._asdict() for row in rows]
