"""Clusters with their health; registering one and replacing its agent's token, for admins."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx, write_tx
from corral.domain.clusters import CLUSTER_KINDS
from corral.domain.resources import Resources, parse_bytes, parse_millicores
from corral.services import clusters as cluster_service
from corral.services.errors import InvalidInput
from corral.web.http import CheckedForm, Session, WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _clusters(request: Request, session: Session, *, created: dict | None = None, error: str | None = None,
              values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    settings = request.app.state.settings
    with read_tx(request.app.state.engine) as conn:
        clusters = cluster_service.list_clusters(conn, session.principal, settings.cluster_unhealthy_after_s)
    return page(request, "clusters.html", {
        "clusters": clusters, "kinds": CLUSTER_KINDS, "created": created, "error": error, "values": values or {},
        "unhealthy_after_s": settings.cluster_unhealthy_after_s,
    }, status_code=status_code)


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
