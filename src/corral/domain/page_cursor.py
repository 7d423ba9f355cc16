"""Opaque page cursors for a sorted table: where the next (or previous) page starts.

A cursor holds the edge row's sort key (the sort column's value, then created_at and id,
as the sort index orders them), the direction, the page number it leads to, and a
fingerprint of the query it was made for (sort, filters, page size). It holds no scope:
the reader applies the request's own project scope and filters, so a forged cursor can
only move the position within what the caller may see. Anything that does not decode to
exactly this shape is refused (ValueError), never passed on to the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

VERSION = 1
MAX_TOKEN = 1024
MAX_TEXT = 254
MAX_INT = 2**63 - 1
# The kind of each sort column's value; created_at and id always follow.
KINDS = {"name": str, "type": str, "cluster": str, "status": str, "created_by": str,
         "gpu": int, "cpu": int, "memory": int, "created_at": datetime}

Direction = Literal["after", "before"]


@dataclass(frozen=True)
class Cursor:
    direction: Direction  # after: the rows that follow `key`; before: those that precede it
    page: int  # the page number the rows make
    key: tuple[Any, ...]  # (sort value, created_at, id), or (created_at, id) when sorting by created_at


def fingerprint(*parts: Any) -> str:
    """A short digest of the query a cursor belongs to (not a secret: it only catches a cursor
    reused with another sort, filter or page size, which would page from the wrong place)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def key_kinds(sort_key: str) -> tuple[type, ...]:
    return (datetime, int) if sort_key == "created_at" else (KINDS[sort_key], datetime, int)


def encode(cursor: Cursor, sort_key: str, query_fingerprint: str) -> str:
    values = [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in cursor.key]
    raw = json.dumps([VERSION, cursor.direction, cursor.page, sort_key, query_fingerprint, values],
                     separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, sort_key: str, query_fingerprint: str, max_page: int) -> Cursor:
    """The cursor in ``token``, checked against the query it is used with; ValueError says why not."""
    if not token or len(token) > MAX_TOKEN:
        raise ValueError("the cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("the cursor is not one this server made") from None
    if not (isinstance(data, list) and len(data) == 6 and data[0] == VERSION):
        raise ValueError("the cursor is not one this server made")
    _, direction, page, cursor_sort, cursor_fingerprint, values = data
    if direction not in ("after", "before") or not _is_int(page) or not 1 <= page <= max_page:
        raise ValueError("the cursor is not one this server made")
    if cursor_sort != sort_key or cursor_fingerprint != query_fingerprint:
        raise ValueError("the cursor belongs to another sort, filter or page size; start again from page 1")
    kinds = key_kinds(sort_key)
    if not isinstance(values, list) or len(values) != len(kinds):
        raise ValueError("the cursor is not one this server made")
    return Cursor(direction, page, tuple(_value(v, kind) for v, kind in zip(values, kinds, strict=True)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value(value: Any, kind: type) -> Any:
    if kind is str and isinstance(value, str) and len(value) <= MAX_TEXT:
        return value
    if kind is int and _is_int(value) and -MAX_INT - 1 <= value <= MAX_INT:
        return value
    if kind is datetime and isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
    raise ValueError("the cursor is not one this server made")
