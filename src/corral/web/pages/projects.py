"""Projects: the quota view (guaranteed, limit, used, borrowed, queued) and members, for
every member; creating projects, managing members and setting quotas, for admins."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx, write_tx
from corral.domain.resources import RESOURCE_NAMES, format_millicores, format_quantity, parse_bytes, parse_millicores
from corral.services import clusters as cluster_service, projects as project_service, quotas as quota_service
from corral.services.errors import InvalidInput, NotFound
from corral.services.projects import PREEMPTION_POLICIES
from corral.web.http import CheckedForm, Session, WebRoute, page, redirect

router = APIRouter(route_class=WebRoute, include_in_schema=False)

UNBOUNDED = "unbounded"


def project_url(name: str) -> str:
    return f"/projects/{quote(name)}"


@router.get("/projects")
def projects_page(request: Request, session: Session) -> Response:
    return _projects(request, session)


def _projects(request: Request, session: Session, *, error: InvalidInput | None = None,
              values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    with read_tx(request.app.state.engine) as conn:
        projects = project_service.list_projects(conn, session.principal)
    return page(request, "projects.html", {"projects": projects, "error": error, "values": values or {},
                                           "policies": PREEMPTION_POLICIES}, status_code=status_code)


@router.post("/projects")
def create_project(request: Request, session: Session, form: CheckedForm) -> Response:
    session.principal.require_admin()
    values = {k: form.get(k).strip() for k in ("name", "description", "preemption_policy")}
    try:
        with write_tx(request.app.state.engine) as conn:
            project = project_service.create_project(
                conn, session.principal, name=values["name"], description=values["description"],
                preemption_policy=values["preemption_policy"] or "lower_priority")
    except InvalidInput as exc:
        return _projects(request, session, error=exc, values=values, status_code=422)
    return redirect(request, project_url(project["name"]),
                    flash=f"Project {project['name']} created. Add members and give it a quota below.")


def input_amount(name: str, value: int | None) -> str:
    """A stored amount as the quota form takes it back unchanged: cpu as cores or "500m",
    bytes in the largest binary unit that divides them exactly ("16Gi"), None "unbounded"."""
    if value is None:
        return UNBOUNDED
    if name == "cpu":
        return format_millicores(value)
    if name in ("memory", "ephemeral_storage"):
        for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if value and value % factor == 0:
                return f"{value // factor}{unit}"
    return str(value)


def quota_form_values(quota: dict[str, Any] | None, cluster: str) -> dict[str, str]:
    """The quota form, filled in with the quota's current values; a limit equal to its
    guarantee is left empty (it follows the guarantee)."""
    values = {"cluster": cluster}
    for n in RESOURCE_NAMES:
        guaranteed = quota["guaranteed"][n] if quota else 0
        limit = quota["limit"][n] if quota else guaranteed
        values[f"guaranteed_{n}"] = input_amount(n, guaranteed) if quota else ""
        values[f"limit_{n}"] = "" if limit == guaranteed else input_amount(n, limit)
    return values


_LABELS = {"gpu": "GPU", "cpu": "CPU", "memory": "Memory", "ephemeral_storage": "Ephemeral storage"}


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%"


def quota_bar(quota: dict[str, Any], n: str) -> dict[str, Any]:
    """One resource of a quota as a bar: used within the guarantee, borrowed above it, the
    guarantee's extent and the limit's mark, as percentages of the largest of them."""
    guaranteed, used, limit = quota["guaranteed"][n], quota["used"][n], quota["limit"][n]
    scale = max(guaranteed, used, limit or 0, 1)
    within, borrowed = min(used, guaranteed), max(0, used - guaranteed)
    words = (f"{_LABELS[n]}: {format_quantity(n, used)} used of {format_quantity(n, guaranteed)} guaranteed"
             + (f" ({format_quantity(n, borrowed)} borrowed)" if borrowed else "")
             + f", limit {format_quantity(n, limit)}")
    return {"guaranteed": _pct(guaranteed, scale), "within": _pct(within, scale), "borrowed_x": _pct(within, scale),
            "borrowed": _pct(borrowed, scale), "limit": None if limit is None else _pct(limit, scale),
            "label": words}


def _project(request: Request, session: Session, name: str, *, errors: dict[str, str] | None = None,
             values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    settings = request.app.state.settings
    with read_tx(request.app.state.engine) as conn:
        project = project_service.resolve(conn, session.principal, name)
        quotas = quota_service.list_quotas(conn, session.principal, name)
        members = project_service.list_members(conn, session.principal, name)
        clusters = (cluster_service.list_clusters(conn, session.principal, settings.cluster_unhealthy_after_s)
                    if session.principal.is_admin else [])
    if session.principal.is_admin and clusters and not (values or {}).get("cluster"):
        # The form edits the cluster asked for (?cluster=), else the first with a quota.
        names = [c["name"] for c in clusters]
        editing = request.query_params.get("cluster")
        if editing not in names:
            editing = quotas[0]["cluster"] if quotas else names[0]
        current = next((q for q in quotas if q["cluster"] == editing), None)
        values = {**quota_form_values(current, editing), **(values or {})}
    for q in quotas:
        q["bars"] = {n: quota_bar(q, n) for n in RESOURCE_NAMES}
    return page(request, "project.html", {
        "project": project, "quotas": quotas, "members": members, "clusters": clusters,
        "resource_names": RESOURCE_NAMES, "policies": PREEMPTION_POLICIES, "errors": errors or {},
        "values": values or {},
    }, status_code=status_code)


@router.get("/projects/{name}")
def project_page(name: str, request: Request, session: Session) -> Response:
    return _project(request, session, name)


@router.post("/projects/{name}")
def update_project(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    with write_tx(request.app.state.engine) as conn:
        project_service.update_project(conn, session.principal, name, description=form.get("description"),
                                       preemption_policy=form.get("preemption_policy") or None)
    return redirect(request, project_url(name), flash=f"Project {name} updated.")


@router.post("/projects/{name}/delete")
def delete_project(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    with write_tx(request.app.state.engine) as conn:
        project_service.delete_project(conn, session.principal, name)
    return redirect(request, "/projects", flash=f"Project {name} deleted.")


@router.post("/projects/{name}/members")
def add_member(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    email = form.get("email").strip()
    try:
        with write_tx(request.app.state.engine) as conn:
            project_service.add_member(conn, session.principal, name, email)
    except (InvalidInput, NotFound) as exc:
        return _project(request, session, name, errors={"member": exc.message}, values={"email": email},
                        status_code=422)
    return redirect(request, project_url(name), flash=f"{email} is now a member of {name}.")


@router.post("/projects/{name}/members/remove")
def remove_member(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    email = form.get("email").strip()
    with write_tx(request.app.state.engine) as conn:
        project_service.remove_member(conn, session.principal, name, email)
    return redirect(request, project_url(name), flash=f"{email} was removed from {name}.")


def _given(form: Any, prefix: str) -> dict[str, int | None]:
    """The dimensions filled in (an empty field is not given: it keeps its value); a limit
    may be "unbounded" (None)."""
    parsers = {"gpu": int, "cpu": parse_millicores, "memory": parse_bytes, "ephemeral_storage": parse_bytes}
    given: dict[str, int | None] = {}
    for n in RESOURCE_NAMES:
        raw = form.get(f"{prefix}_{n}").strip()
        if not raw:
            continue
        if prefix == "limit" and raw.lower() == UNBOUNDED:
            given[n] = None
            continue
        try:
            given[n] = parsers[n](raw)
        except ValueError as exc:
            raise InvalidInput(f"{prefix} {n}: {exc}" if str(exc) else f"{prefix} {n}: not a number",
                               field=f"{prefix}.{n}") from None
    return given


@router.post("/projects/{name}/quotas")
def set_quota(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    cluster = form.get("cluster").strip()
    with read_tx(request.app.state.engine) as conn:
        project_service.resolve(conn, session.principal, name)  # 404 before 403, as everywhere
    session.principal.require_admin()
    try:
        guaranteed = {n: v for n, v in _given(form, "guaranteed").items() if v is not None}
        limit = _given(form, "limit")
        with write_tx(request.app.state.engine) as conn:
            # Only what is filled in changes, read and written in one transaction.
            quota_service.update_quota(conn, session.principal, name, cluster, guaranteed=guaranteed, limit=limit)
    except (InvalidInput, NotFound) as exc:
        values = {k: v for k, v in form.pairs if k != "csrf_token"}
        return _project(request, session, name, errors={"quota": exc.message}, values=values, status_code=422)
    return redirect(request, f"{project_url(name)}?cluster={quote(cluster)}",
                    flash=f"Quota of {name} on {cluster} set.")


@router.post("/projects/{name}/quotas/delete")
def delete_quota(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    cluster = form.get("cluster").strip()
    with write_tx(request.app.state.engine) as conn:
        quota_service.delete_quota(conn, session.principal, name, cluster)
    return redirect(request, project_url(name), flash=f"Quota of {name} on {cluster} removed.")
