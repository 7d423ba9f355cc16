"""Projects, members and quotas. Admins manage; members read their own projects."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from corral.api.deps import CurrentUser, Db
from corral.api.routing import ApiRoute
from corral.api.schemas import (
    LimitIn,
    MemberIn,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    QuotaIn,
    QuotaOut,
    QuotaPatch,
)
from corral.db.engine import read_tx, write_tx
from corral.domain.resources import Limit
from corral.services import events, projects as project_service, quotas as quota_service
from corral.services.errors import InvalidInput

router = APIRouter(tags=["projects"], route_class=ApiRoute)


@router.get("/projects", response_model=list[ProjectOut])
def list_projects(principal: CurrentUser, db: Db) -> list[dict]:
    with read_tx(db) as conn:
        return project_service.list_projects(conn, principal)


@router.post("/projects", response_model=ProjectOut, status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectIn, principal: CurrentUser, db: Db) -> dict:
    with write_tx(db) as conn:
        return project_service.create_project(conn, principal, name=body.name, description=body.description,
                                              preemption_policy=body.preemption_policy)


@router.get("/projects/{name}", response_model=ProjectOut)
def get_project(name: str, principal: CurrentUser, db: Db) -> dict:
    with read_tx(db) as conn:
        return project_service.resolve(conn, principal, name)


@router.patch("/projects/{name}", response_model=ProjectOut)
def update_project(name: str, body: ProjectPatch, principal: CurrentUser, db: Db) -> dict:
    with write_tx(db) as conn:
        return project_service.update_project(conn, principal, name, description=body.description,
                                              preemption_policy=body.preemption_policy)


@router.delete("/projects/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(name: str, principal: CurrentUser, db: Db) -> Response:
    with write_tx(db) as conn:
        project_service.delete_project(conn, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/projects/{name}/members")
def list_members(name: str, principal: CurrentUser, db: Db) -> list[dict]:
    with read_tx(db) as conn:
        return project_service.list_members(conn, principal, name)


@router.post("/projects/{name}/members", status_code=status.HTTP_201_CREATED)
def add_member(name: str, body: MemberIn, principal: CurrentUser, db: Db) -> dict:
    with write_tx(db) as conn:
        return project_service.add_member(conn, principal, name, body.email)


@router.delete("/projects/{name}/members/{email}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(name: str, email: str, principal: CurrentUser, db: Db) -> Response:
    with write_tx(db) as conn:
        project_service.remove_member(conn, principal, name, email)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/projects/{name}/events")
def project_events(name: str, principal: CurrentUser, db: Db) -> list[dict]:
    with read_tx(db) as conn:
        project = project_service.resolve(conn, principal, name)
        return events.list_for_project(conn, project["id"])


@router.get("/projects/{name}/quotas", response_model=list[QuotaOut], tags=["quotas"])
def list_quotas(name: str, principal: CurrentUser, db: Db) -> list[dict]:
    with read_tx(db) as conn:
        return quota_service.list_quotas(conn, principal, name)


@router.get("/projects/{name}/quotas/{cluster}", response_model=QuotaOut, tags=["quotas"])
def get_quota(name: str, cluster: str, principal: CurrentUser, db: Db) -> dict:
    with read_tx(db) as conn:
        return quota_service.get_quota(conn, principal, name, cluster)


@router.put("/projects/{name}/quotas/{cluster}", response_model=QuotaOut, tags=["quotas"])
def set_quota(name: str, cluster: str, body: QuotaIn, principal: CurrentUser, db: Db) -> dict:
    guaranteed = body.guaranteed.to_domain()
    if body.limit == "unbounded":
        limit: Limit | None = Limit()
    elif body.limit is None:
        limit = None
    else:
        limit = body.limit.to_domain(guaranteed)
    with write_tx(db) as conn:
        return quota_service.set_quota(conn, principal, name, cluster, guaranteed=guaranteed, limit=limit)


@router.patch("/projects/{name}/quotas/{cluster}", response_model=QuotaOut, tags=["quotas"])
def update_quota(name: str, cluster: str, body: QuotaPatch, principal: CurrentUser, db: Db) -> dict:
    """Change only the dimensions given (creating the quota if there is none): what is not
    given is read in the same transaction as the write, so concurrent changes of different
    dimensions are all kept."""
    if body.hard and body.limit == "unbounded":
        raise InvalidInput("give hard or an unbounded limit, not both", field="hard")
    guaranteed = body.guaranteed.to_domain().as_dict() if body.guaranteed is not None else {}
    given_g = {n: guaranteed[n] for n in (body.guaranteed.model_fields_set if body.guaranteed else ())}
    limit = body.limit if isinstance(body.limit, LimitIn) else None
    given_l = {n: getattr(limit, n) for n in limit.model_fields_set} if limit is not None else {}
    with write_tx(db) as conn:
        return quota_service.update_quota(conn, principal, name, cluster, guaranteed=given_g, limit=given_l,
                                          unbounded=body.limit == "unbounded", hard=body.hard)


@router.delete("/projects/{name}/quotas/{cluster}", status_code=status.HTTP_204_NO_CONTENT, tags=["quotas"])
def delete_quota(name: str, cluster: str, principal: CurrentUser, db: Db) -> Response:
    with write_tx(db) as conn:
        quota_service.delete_quota(conn, principal, name, cluster)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Project secrets (routes/secrets.py) are a project's sub-resource: mounted with the projects.
from corral.api.routes import secrets as _secrets  # noqa: E402

router.include_router(_secrets.router)
