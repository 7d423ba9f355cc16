"""The Models page (the model stores of the user's projects), one model with its
evaluations side by side, and a project's evaluations filtered by model."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from corral.db.engine import read_tx
from corral.services import models as model_service, projects as project_service
from corral.web.http import Session, WebId, WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/models")
def models_page(request: Request, session: Session, project: str | None = Query(None, max_length=64),
                name: str | None = Query(None, max_length=128)) -> Response:
    with read_tx(request.app.state.engine) as conn:
        projects = project_service.list_projects(conn, session.principal)
        found = model_service.list_models(conn, session.principal, project=project or None, name=name or None,
                                          page_size=model_service.MAX_PAGE_SIZE)
    return page(request, "models.html", {"projects": projects, "project": project or "", "name": name or "",
                                         "models": found["items"], "total": found["total"]})


@router.get("/models/{model_id:int}")
def model_page(model_id: WebId, request: Request, session: Session) -> Response:
    with read_tx(request.app.state.engine) as conn:
        model = model_service.get_model(conn, session.principal, model_id)
    return page(request, "model.html", {"m": model})


@router.get("/evaluations")
def evaluations_page(request: Request, session: Session, project: str = Query(max_length=64),
                     model: str | None = Query(None, max_length=512)) -> Response:
    with read_tx(request.app.state.engine) as conn:
        found = model_service.list_evaluations(conn, session.principal, project=project, model=model or None)
        models = model_service.list_models(conn, session.principal, project=project,
                                           page_size=model_service.MAX_PAGE_SIZE)["items"]
    return page(request, "evaluations.html", {"project": project, "model": model or "", **found,
                                              "model_names": sorted({m["name"] for m in models})})
