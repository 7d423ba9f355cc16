"""The Workloads table as CSV: every row a list query matches (not only a page), in its
order, streamed as it is read. The web page's "Export CSV" (``/workloads.csv``, the
session's user) and the API (``GET /api/v1/workloads.csv``, a token) both write it here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from sqlalchemy import Engine

from corral.domain.resources import cores
from corral.services import listing
from corral.services.principal import Principal

HEADER = ("id", "name", "type", "project", "cluster", "gpu", "cpu_cores", "memory_bytes", "status", "status_reason",
          "created_by", "created_at")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# such text is written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FLUSH_EVERY = 500  # rows per piece sent


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_row(w: dict[str, Any]) -> list[Any]:
    return [w["id"], _text(w["name"]), w["type"], w["project"], w["cluster"], w["resources"]["gpu"],
            cores(w["resources"]["cpu"]), w["resources"]["memory"], w["status"],
            _text(w["status_reason"]), _text(w["created_by"]),
            w["created_at"].astimezone(UTC).isoformat(timespec="seconds")]


def check(engine: Engine, principal: Principal, query: listing.WorkloadQuery) -> None:
    """Raise what the query is refused for (an unknown project, a bad filter) before a
    response starts: an error then is an error, not a CSV cut short."""
    with engine.connect() as conn:
        listing.list_workloads(conn, principal, listing.WorkloadQuery(
            project=query.project, sort=query.sort, name=query.name, types=query.types, statuses=query.statuses,
            cluster=query.cluster, created_by=query.created_by, page_size=1))


def csv_lines(engine: Engine, principal: Principal, query: listing.WorkloadQuery) -> Iterator[str]:
    """The header, then every matching workload, in pieces of ``_FLUSH_EVERY`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(HEADER)
    with engine.connect() as conn, conn.begin():
        for n, workload in enumerate(listing.stream_workloads(conn, principal, query), 1):
            writer.writerow(csv_row(workload))
            if n % _FLUSH_EVERY == 0:
                yield flush()
    yield flush()
