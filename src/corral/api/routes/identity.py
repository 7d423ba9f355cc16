"""Users (admins manage) and API tokens (each user manages their own)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status

from corral.api.deps import CurrentUser, Db
from corral.api.routing import ApiRoute, Id
from corral.api.schemas import TokenCreated, TokenIn, TokenOut, UserIn, UserOut, UserPatch
from corral.db.engine import read_tx, write_tx
from corral.services import users as user_service
from corral.services.clock import utcnow
from corral.services.errors import InvalidInput

router = APIRouter(tags=["users"], route_class=ApiRoute)


@router.get("/users/me", response_model=UserOut)
def me(principal: CurrentUser, db: Db) -> dict:
    with read_tx(db) as conn:
        return user_service.get_user(conn, principal.user_id)


@router.get("/users", response_model=list[UserOut])
def list_users(principal: CurrentUser, db: Db) -> list[dict]:
    principal.require_admin()
    with read_tx(db) as conn:
        return user_service.list_users(conn)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, principal: CurrentUser, db: Db) -> dict:
    principal.require_admin()
    with write_tx(db) as conn:
        return user_service.create_user(conn, email=body.email, display_name=body.display_name, role=body.role,
                                        actor=principal.email)


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: Id, principal: CurrentUser, db: Db) -> dict:
    principal.require_admin()
    with read_tx(db) as conn:
        return user_service.get_user(conn, user_id)


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(user_id: Id, body: UserPatch, principal: CurrentUser, db: Db) -> dict:
    principal.require_admin()
    with write_tx(db) as conn:
        return user_service.update_user(conn, user_id, actor=principal.email, display_name=body.display_name,
                                        role=body.role, disabled=body.disabled)


@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
def list_tokens(principal: CurrentUser, db: Db) -> list[dict]:
    with read_tx(db) as conn:
        return user_service.list_tokens(conn, principal.user_id)


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, tags=["tokens"])
def create_token(body: TokenIn, principal: CurrentUser, db: Db) -> dict:
    if body.expires_at is not None and body.expires_in_days is not None:
        raise InvalidInput("give expires_at or expires_in_days, not both", field="expires_in_days")
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        expires_at = utcnow() + timedelta(days=body.expires_in_days)
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidInput("expires_at needs a timezone (for example 2027-01-01T00:00:00Z)", field="expires_at")
    with write_tx(db) as conn:
        secret, token = user_service.create_token(conn, user_id=principal.user_id, name=body.name,
                                                  expires_at=expires_at, actor=principal.email)
    return {**token, "token": secret}


@router.delete("/tokens/{token_id}", response_model=TokenOut, tags=["tokens"])
def revoke_token(token_id: Id, principal: CurrentUser, db: Db) -> dict:
    with write_tx(db) as conn:
        return user_service.revoke_token(conn, user_id=principal.user_id, token_id=token_id, actor=principal.email)
