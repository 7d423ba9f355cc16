"""Project secrets: members (and admins) set, list and delete them; values are write-only.

Included by ``corral.api.routes.projects`` (they are a project's sub-resource).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from corral.api.deps import AppSettings, CurrentUser, Db
from corral.api.routing import ApiRoute
from corral.db.engine import read_tx, write_tx
from corral.services import keys as key_service, secrets as secret_service

router = APIRouter(tags=["secrets"], route_class=ApiRoute)


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # The byte limit (64 KiB of UTF-8) is the service's; this bounds what is parsed.
    value: str = Field(min_length=1, max_length=secret_service.VALUE_MAX_BYTES, repr=False,
                       description="the secret's value: stored encrypted, never returned")


class SecretOut(BaseModel):
    project: str
    name: str
    created_by: str
    created_at: datetime
    updated_at: datetime


@router.get("/projects/{name}/secrets", response_model=list[SecretOut])
def list_secrets(name: str, principal: CurrentUser, db: Db) -> list[dict]:
    """The project's secrets: names and dates, never values."""
    with read_tx(db) as conn:
        return secret_service.list_secrets(conn, principal, name)


@router.put("/projects/{name}/secrets/{secret}", response_model=SecretOut)
def set_secret(name: str, secret: str, body: SecretIn, principal: CurrentUser, db: Db,
               settings: AppSettings) -> dict:
    """Create a secret or replace its value (letters, digits, '-' and '_'; value up to 64 KiB)."""
    keys = key_service.for_settings(settings)
    with write_tx(db) as conn:
        return secret_service.set_secret(conn, principal, name, secret, body.value, keys=keys)


@router.delete("/projects/{name}/secrets/{secret}", status_code=status.HTTP_204_NO_CONTENT)
def delete_secret(name: str, secret: str, principal: CurrentUser, db: Db) -> Response:
    with write_tx(db) as conn:
        secret_service.delete_secret(conn, principal, name, secret)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
