"""The UI's pages, one module per area."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from corral.web.pages import account, clusters, export, models, open_workload, projects, static, submit, workloads

    return [static.router, account.router, workloads.router, open_workload.router, submit.router, projects.router,
            clusters.router, export.router, models.router]
