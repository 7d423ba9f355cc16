"""Clusters with their health; registering one, replacing its agent's token and removing it, for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx, write_tx
from corral.domain.clusters import CLUSTER_KINDS
from corral.domain.resources import RESOURCE_NAMES, Resources, format_quantity, parse_bytes, parse_millicores
from corral.services import clusters as cluster_service, quotas as quota_service
from corral.services.errors import Conflict, InvalidInput
from corral.web.http import CheckedForm, Session, WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _clusters(request: Request, session: Session, *, created: dict | None = None, error: str | None = None,
              values: dict[str, str] | None = None, removed: str | None = None, refused: str | None = None,
              status_code: int = 200) -> Response:
    settings = request.app.state.settings
    with read_tx(request.app.state.engine) as conn:
        clusters = cluster_service.list_clusters(conn, session.principal, settings.cluster_unhealthy_after_s)
        allocations = (quota_service.cluster_allocations(conn, session.principal)
                       if session.principal.is_admin else {})
    for c in clusters:
        if session.principal.is_admin:
            c["bars"] = {n: allocation_bar(c, allocations.get(c["name"]), n) for n in RESOURCE_NAMES}
    return page(request, "clusters.html", {
        "clusters": clusters, "kinds": CLUSTER_KINDS, "created": created, "error": error, "values": values or {},
        "unhealthy_after_s": settings.cluster_unhealthy_after_s, "removed": removed, "refused": refused,
    }, status_code=status_code)


_LABELS = {"gpu": "GPU", "cpu": "CPU", "memory": "Memory", "ephemeral_storage": "Ephemeral storage"}


def allocation_bar(cluster: dict[str, Any], allocation: dict[str, dict[str, int]] | None, n: str) -> dict[str, Any]:
    """One resource of a cluster as a bar: held by admitted workloads, and guaranteed to
    projects, against its capacity (percentages of the largest of the three)."""
    capacity = cluster["capacity"][n]
    used = allocation["used"][n] if allocation else 0
    guaranteed = allocation["guaranteed"][n] if allocation else 0
    scale = max(capacity, used, guaranteed, 1)
    label = (f"{_LABELS[n]}: {format_quantity(n, used)} allocated of {format_quantity(n, capacity)}, "
             f"{format_quantity(n, guaranteed)} guaranteed to projects")
    return {"capacity": f"{100 * capacity / scale:.2f}%", "guaranteed": f"{100 * guaranteed / scale:.2f}%",
            "used": f"{100 * used / scale:.2f}%", "label": label}


@router.get("/clusters")
def clusters_page(request: Request, session: Session) -> Response:
    return _clusters(request, session)


def _capacity(values: dict[str, str]) -> Resources:
    try:
        return Resources(
            gpu=int(values["gpu"] or 0), cpu=parse_millicores(values["cpu"] or 0),
            memory=parse_bytes(values["memory"] or 0), ephemeral_storage=parse_bytes(values["ephemeral_storage"] or 0))
    except ValueError as exc:
        raise InvalidInput(f"capacity: {exc}" if str(exc) else "capacity: not a number", field="capacity") from None


@router.post("/clusters")
def create_cluster(request: Request, session: Session, form: CheckedForm) -> Response:
    session.principal.require_admin()
    values = {k: form.get(k).strip() for k in ("name", "kind", "description", "gpu", "cpu", "memory",
                                               "ephemeral_storage")}
    try:
        with write_tx(request.app.state.engine) as conn:
            token, cluster = cluster_service.create_cluster(
                conn, session.principal, name=values["name"], kind=values["kind"],
                description=values["description"], capacity=_capacity(values),
                unhealthy_after_s=request.app.state.settings.cluster_unhealthy_after_s)
    except InvalidInput as exc:
        return _clusters(request, session, error=exc.message, values=values, status_code=422)
    # The agent's token is in this response only.
    return _clusters(request, session, created={"name": cluster["name"], "agent_token": token,
                                                "rotated": False}, status_code=201)


@router.post("/clusters/{name}/agent-token")
def rotate_agent_token(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    with write_tx(request.app.state.engine) as conn:
        token = cluster_service.rotate_agent_token(conn, session.principal, name,
                                                   request.app.state.settings.cluster_unhealthy_after_s)
    return _clusters(request, session, created={"name": name, "agent_token": token, "rotated": True})


@router.post("/clusters/{name}/delete")
def delete_cluster(name: str, request: Request, session: Session, form: CheckedForm) -> Response:
    """Remove a cluster (admins; one with workloads is refused, as `corral clusters delete`)."""
    try:
        with write_tx(request.app.state.engine) as conn:
            cluster_service.delete_cluster(conn, session.principal, name,
                                           request.app.state.settings.cluster_unhealthy_after_s)
    except Conflict as exc:
        return _clusters(request, session, refused=exc.message, status_code=409)
    return _clusters(request, session, removed=name)
