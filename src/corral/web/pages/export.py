"""The Workloads table as CSV: every row its filters and sort match (not only the page),
streamed as it is read. ``/workloads.csv`` takes the page's own query parameters, so the
page's "Export CSV" link is its URL with ``.csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from corral.services import listing
from corral.services.errors import InvalidInput
from corral.web.http import SECURITY_HEADERS, Session, WebRoute
from corral.web.pages.workloads import View

router = APIRouter(route_class=WebRoute, include_in_schema=False)

HEADER = ("id", "name", "type", "project", "cluster", "gpu", "cpu_cores", "memory_bytes", "status", "status_reason",
          "created_by", "created_at")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# such text is written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_row(w: dict[str, Any]) -> list[Any]:
    cpu = w["resources"]["cpu"]
    return [w["id"], _text(w["name"]), w["type"], w["project"], w["cluster"], w["resources"]["gpu"],
            cpu // 1000 if cpu % 1000 == 0 else cpu / 1000, w["resources"]["memory"], w["status"],
            _text(w["status_reason"]), _text(w["created_by"]),
            w["created_at"].astimezone(UTC).isoformat(timespec="seconds")]


def _lines(engine: Any, session: Any, query: listing.WorkloadQuery) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(HEADER)
    with engine.connect() as conn, conn.begin():
        for n, workload in enumerate(listing.stream_workloads(conn, session.principal, query), 1):
            writer.writerow(csv_row(workload))
            if n % 500 == 0:
                yield flush()
    yield flush()


@router.get("/workloads.csv")
def export_csv(request: Request, session: Session) -> Response:
    view = View.from_request(request)
    if view.project is None:
        raise InvalidInput("choose a project: /workloads.csv?project=NAME (with the table's filters)",
                           field="project")
    query = listing.WorkloadQuery(project=view.project, sort=view.sort, name=view.name or None,
                                  types=list(view.types), statuses=list(view.statuses))
    engine = request.app.state.engine
    # Checked before the response starts (an unknown project or a bad filter is an error
    # page, not a CSV cut short).
    with engine.connect() as conn:
        listing.list_workloads(conn, session.principal, listing.WorkloadQuery(
            project=query.project, sort=query.sort, name=query.name, types=query.types, statuses=query.statuses,
            page_size=1))
    filename = f"workloads-{view.project}.csv"
    return StreamingResponse(
        _lines(engine, session, query), media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store"})
