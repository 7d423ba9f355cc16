"""The Workloads page's "Export CSV" (``services.export``): ``/workloads.csv`` takes the
page's own query parameters, so the link is the page's URL with ``.csv``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from corral.services import export, listing
from corral.services.errors import InvalidInput
from corral.web.http import SECURITY_HEADERS, Session, WebRoute
from corral.web.pages.workloads import View

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/workloads.csv")
def export_csv(request: Request, session: Session) -> Response:
    view = View.from_request(request)
    if view.project is None:
        raise InvalidInput("choose a project: /workloads.csv?project=NAME (with the table's filters)",
                           field="project")
    query = listing.WorkloadQuery(project=view.project, sort=view.sort, name=view.name or None,
                                  types=list(view.types), statuses=list(view.statuses))
    engine = request.app.state.engine
    export.check(engine, session.principal, query)
    filename = f"workloads-{view.project}.csv"
    return StreamingResponse(
        export.csv_lines(engine, session.principal, query), media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store"})
