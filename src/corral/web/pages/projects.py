"""Projects: the quota view (guaranteed, limit, used, borrowed, queued) and members, for
every member; creating projects, managing members and setting quotas, for admins."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx, write_tx
from corral.domain.resources import RESOURCE_NAMES, Limit, Resources, parse_bytes, parse_millicores
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


def _project(request: Request, session: Session, name: str, *, errors: dict[str, str] | None = None,
             values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    settings = request.app.state.settings
    with read_tx(request.app.state.engine) as conn:
        project = project_service.resolve(conn, session.principal, name)
        quotas = quota_service.list_quotas(conn, session.principal, name)
        members = project_service.list_members(conn, session.principal, name)
        clusters = (cluster_service.list_clusters(conn, session.principal, settings.cluster_unhealthy_after_s)
                    if session.principal.is_admin else [])
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


def _resources(form: Any, prefix: str) -> Resources:
    parsers = {"gpu": int, "cpu": parse_millicores, "memory": parse_bytes, "ephemeral_storage": parse_bytes}
    values = []
    for n in RESOURCE_NAMES:
        raw = form.get(f"{prefix}_{n}").strip() or "0"
        try:
            values.append(parsers[n](raw))
        except ValueError as exc:
            raise InvalidInput(f"{prefix} {n}: {exc}" if str(exc) else f"{prefix} {n}: not a number",
                               field=f"{prefix}.{n}") from None
    return Resources(*values)


def _limit(form: Any, guaranteed: Resources) -> Limit:
    """Each limit field: empty is the guarantee, "unbounded" is no limit."""
    parsers = {"gpu": int, "cpu": parse_millicores, "memory": parse_bytes, "ephemeral_storage": parse_bytes}
    values: list[int | None] = []
    for n in RESOURCE_NAMES:
        raw = form.get(f"limit_{n}").strip()
        if not raw:
            values.append(getattr(guaranteed, n))
        elif raw.lower() == UNBOUNDED:
            values.append(None)
        else:
            try:
                values.append(parsers[n](raw))
            except ValueError as exc:
                raise InvalidInput(f"limit {n}: {exc}" if str(exc) else f"limit {n}: not a number",
                                   field=f"limit.{n}") from None
    return Limit(*values)


@router.post("/projects/{name}/quotas")
def set_quota(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    cluster = form.get("cluster").strip()
    with read_tx(request.app.state.engine) as conn:
        project_service.resolve(conn, session.principal, name)  # 404 before 403, as everywhere
    session.principal.require_admin()
    try:
        guaranteed = _resources(form, "guaranteed")
        limit = _limit(form, guaranteed)
        with write_tx(request.app.state.engine) as conn:
            quota_service.set_quota(conn, session.principal, name, cluster, guaranteed=guaranteed, limit=limit)
    except (InvalidInput, NotFound) as exc:
        values = {k: v for k, v in form.pairs if k != "csrf_token"}
        return _project(request, session, name, errors={"quota": exc.message}, values=values, status_code=422)
    return redirect(request, project_url(name), flash=f"Quota of {name} on {cluster} set.")


@router.post("/projects/{name}/quotas/delete")
def delete_quota(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    cluster = form.get("cluster").strip()
    with write_tx(request.app.state.engine) as conn:
        quota_service.delete_quota(conn, session.principal, name, cluster)
    return redirect(request, project_url(name), flash=f"Quota of {name} on {cluster} removed.")
