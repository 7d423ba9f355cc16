"""The Workloads page (the seed's table), a workload's details, and deleting one.

The table is ``services.listing.list_workloads``, exactly what ``GET /api/v1/workloads``
serves: the filter, sort and page live in the URL, so a view can be shared and survives
a reload. The page's script asks for the table alone (``X-Requested-With: fetch``) when
filters change, and swaps it in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml
from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx, write_tx
from corral.domain.statuses import DEFAULT_VISIBLE_STATUSES, WorkloadStatus
from corral.domain.workloads import WorkloadType
from corral.services import app_origins, bulk_delete, listing, projects as project_service
from corral.services import workloads as workload_service
from corral.services.errors import Conflict, InvalidInput
from corral.web.http import (
    CheckedForm,
    Session,
    WebId,
    WebRoute,
    json_response,
    page,
    redirect,
    safe_next,
    wants_json,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)

PAGE_SIZES = (20, 50, 100)
DEFAULT_PAGE_SIZE = 50
DEFAULT_SORT = "-created_at"
_DEFAULT_STATUSES = frozenset(s.value for s in DEFAULT_VISIBLE_STATUSES)

# (sort key, header, css class); every column of the seed's table, each sortable.
COLUMNS = (
    ("name", "Name", ""), ("type", "Type", ""), ("cluster", "Cluster", ""), ("gpu", "GPU", "num"),
    ("cpu", "CPU", "num"), ("memory", "Memory", "num"), ("status", "Status", ""),
    ("created_by", "Created by", ""), ("created_at", "Created at", ""),
)
# Sorting by these starts with the largest (or newest) first.
_DESCENDING_FIRST = {"created_at", "gpu", "cpu", "memory"}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclass(frozen=True)
class View:
    """What the URL asks the table to show; ``url`` gives the URL of a changed view."""

    project: str | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    sort: str = DEFAULT_SORT
    name: str = ""
    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # empty: the default, every status but Deleted
    cursor: str = ""  # from a Next / Previous link: where that page starts (no OFFSET to walk)

    @classmethod
    def from_request(cls, request: Request) -> View:
        q = request.query_params
        statuses = tuple(dict.fromkeys(s for s in q.getlist("status") if s))
        if _normalised(statuses, WorkloadStatus) == _DEFAULT_STATUSES:
            statuses = ()
        page_size = _int(q.get("page_size"), DEFAULT_PAGE_SIZE)
        return cls(
            project=q.get("project") or None,
            page=max(1, _int(q.get("page"), 1)),
            page_size=page_size if page_size in PAGE_SIZES else DEFAULT_PAGE_SIZE,
            sort=q.get("sort") or DEFAULT_SORT,
            name=(q.get("name") or "").strip()[:128],
            types=tuple(dict.fromkeys(t for t in q.getlist("type") if t)),
            statuses=statuses,
            cursor=(q.get("cursor") or "")[:1024],
        )

    @property
    def filtered(self) -> bool:
        return bool(self.name or self.types or self.statuses)

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-+")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def shown_statuses(self) -> frozenset[str]:
        return _normalised(self.statuses, WorkloadStatus) if self.statuses else _DEFAULT_STATUSES

    @property
    def shown_types(self) -> frozenset[str]:
        return _normalised(self.types, WorkloadType)

    def params(self) -> list[tuple[str, Any]]:
        """Query parameters, leaving out those at their default (short, shareable URLs)."""
        out: list[tuple[str, Any]] = []
        if self.project:
            out.append(("project", self.project))
        if self.name:
            out.append(("name", self.name))
        out += [("type", t) for t in self.types]
        out += [("status", s) for s in self.statuses]
        if self.sort != DEFAULT_SORT:
            out.append(("sort", self.sort))
        if self.page_size != DEFAULT_PAGE_SIZE:
            out.append(("page_size", self.page_size))
        if self.page != 1:
            out.append(("page", self.page))
        if self.cursor:
            out.append(("cursor", self.cursor))
        return out

    def keep(self, *keys: str) -> list[tuple[str, Any]]:
        """The query parameters named (for hidden fields of a form that sets the others)."""
        return [(k, v) for k, v in self.params() if k in keys]

    def without(self, *keys: str) -> list[tuple[str, Any]]:
        """For a form that changes the view: the cursor never stays (it belongs to this view)."""
        return [(k, v) for k, v in self.params() if k not in keys and k != "cursor"]

    def url(self, **changes: Any) -> str:
        """Any change drops the cursor unless it gives one (a cursor belongs to one view)."""
        view = replace(self, **{"cursor": "", **changes}) if changes else self
        query = urlencode(view.params())
        return "/workloads" + (f"?{query}" if query else "")

    def sort_url(self, key: str) -> str:
        if self.sort_key == key:
            sort = key if self.descending else f"-{key}"
        else:
            sort = f"-{key}" if key in _DESCENDING_FIRST else key
        return self.url(sort=sort, page=1)


def _normalised(values: tuple[str, ...], enum: Any) -> frozenset[str]:
    out = set()
    for v in values:
        try:
            out.add(enum.parse(v).value)
        except ValueError:
            out.add(v)
    return frozenset(out)


@dataclass
class Table:
    """The table's part of the page: rows, totals and paging, or why there are none."""

    view: View
    items: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    exact: bool = True
    error: str | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None

    @property
    def first(self) -> int:
        return (self.view.page - 1) * self.view.page_size + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.view.page_size))

    def page_links(self) -> list[int]:
        current, pages = self.view.page, self.pages
        shown = {1, pages, *range(max(1, current - 2), min(pages, current + 2) + 1)}
        return sorted(shown)


def _load_table(conn: Any, session: Session, view: View) -> Table:
    # With a cursor, its page is the page (the URL's number is only what the link said).
    query = listing.WorkloadQuery(project=view.project, page=None if view.cursor else view.page,
                                  page_size=view.page_size, sort=view.sort, name=view.name or None,
                                  types=list(view.types), statuses=list(view.statuses), cursor=view.cursor or None)
    try:
        result = listing.list_workloads(conn, session.principal, query)
    except InvalidInput as exc:
        return Table(view, error=exc.message)
    return Table(replace(view, page=result["page"]), items=result["items"], total=result["total"],
                 exact=result["total_exact"], next_cursor=result["next_cursor"], prev_cursor=result["prev_cursor"])


@router.get("/workloads")
def workloads_page(request: Request, session: Session) -> Response:
    view = View.from_request(request)
    engine = request.app.state.engine
    if wants_json(request):  # the page's script: the table alone
        if view.project is None:
            return json_response(request, {"error": {"message": "choose a project first"}}, 400)
        with read_tx(engine) as conn:
            project_service.resolve(conn, session.principal, view.project)
            table = _load_table(conn, session, view)
        return page(request, "_workloads_table.html", {"table": table, "view": table.view, "columns": COLUMNS},
                    status_code=200 if table.error is None else 422)
    with read_tx(engine) as conn:
        projects = project_service.list_projects(conn, session.principal)
        if view.project is None and len(projects) == 1:
            view = replace(view, project=projects[0]["name"])
        project = None
        if view.project is not None:
            project = next((p for p in projects if p["name"] == view.project), None)
        table = _load_table(conn, session, view) if project is not None else None
    if table is not None:
        view = table.view  # the page a cursor led to
    status_code = 200
    if view.project is not None and project is None:
        status_code = 404
    elif table is not None and table.error is not None:
        status_code = 422
    return page(request, "workloads.html", {
        "projects": projects, "project": project, "view": view, "table": table, "columns": COLUMNS,
        "page_sizes": PAGE_SIZES,
    }, status_code=status_code)


@router.get("/workloads/{workload_id:int}")
def workload_details(workload_id: WebId, request: Request, session: Session) -> Response:
    with read_tx(request.app.state.engine) as conn:
        workload = workload_service.get_workload(conn, session.principal, workload_id)
    # Endpoints on the workload's own origin, and the page that opens it (relative: this site).
    workload = app_origins.present(workload, request.app.state.app_origins)
    spec = yaml.safe_dump(workload["spec"], sort_keys=False, default_flow_style=False)
    return page(request, "workload.html", {"w": workload, "spec": spec,
                                           "list_url": f"/workloads?{urlencode({'project': workload['project']})}"})


@router.get("/workloads/{workload_id:int}/delete")
def confirm_delete(workload_id: WebId, request: Request, session: Session) -> Response:
    """Without JavaScript, Delete comes here: a page that names the workload and asks."""
    with read_tx(request.app.state.engine) as conn:
        workload = workload_service.get_workload(conn, session.principal, workload_id)
    back = _same_site_referer(request) or f"/workloads?{urlencode({'project': workload['project']})}"
    return page(request, "workload_delete.html", {"w": workload, "next": back})


@router.post("/workloads/{workload_id:int}/delete")
def delete_workload(workload_id: WebId, request: Request, session: Session, form: CheckedForm) -> Response:
    try:
        with write_tx(request.app.state.engine) as conn:
            detail = workload_service.request_delete(conn, session.principal, workload_id)
    except Conflict as exc:
        if wants_json(request):
            return json_response(request, {"error": {"message": exc.message}}, 409)
        return redirect(request, safe_next(form.get("next")), flash=f"Not deleted: {exc.message}.")
    label = WorkloadStatus(detail["status"]).label
    message = f"Workload {detail['name']!r} is queued for deletion ({label})."
    if detail["status"] == WorkloadStatus.DELETED.value:
        message = f"Workload {detail['name']!r} is deleted (it had not started on its cluster)."
    if wants_json(request):
        return json_response(request, {"id": detail["id"], "status": detail["status"], "status_label": label,
                                       "status_reason": detail["status_reason"], "message": message})
    default = f"/workloads?{urlencode({'project': detail['project']})}"
    return redirect(request, safe_next(form.get("next"), default), flash=message)


@router.post("/workloads/delete-selected")
def delete_selected(request: Request, session: Session, form: CheckedForm) -> Response:
    """The table's "Delete selected": ``step=preview`` (the default) says what would be
    deleted and changes nothing (the confirmation); ``step=delete`` deletes, and says what
    happened to each. Without JavaScript both are pages; the page's script asks for JSON."""
    try:
        ids = [int(v) for v in form.getlist("ids")]
    except ValueError:
        raise InvalidInput("workload ids are numbers", field="ids") from None
    if not ids:
        raise InvalidInput("select at least one workload", field="ids")
    dry_run = form.get("step", "preview") != "delete"
    back = safe_next(form.get("next"))
    with (read_tx if dry_run else write_tx)(request.app.state.engine) as conn:
        result = bulk_delete.delete_many(conn, session.principal, ids=ids, dry_run=dry_run)
    for item in result["items"]:
        item["status_label"] = WorkloadStatus(item["status"]).label if item["status"] else ""
    if wants_json(request):
        return json_response(request, result)
    return page(request, "workloads_delete_selected.html", {"result": result, "next": back})


def _same_site_referer(request: Request) -> str | None:
    referer = request.headers.get("referer")
    if not referer:
        return None
    parts = urlsplit(referer)
    if parts.netloc != request.url.netloc or not parts.path.startswith("/workloads"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
