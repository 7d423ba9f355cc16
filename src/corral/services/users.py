"""Users and their API tokens. Tokens are shown once and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from corral.db.engine import read_tx
from corral.db.tables import api_tokens, users
from corral.services import events
from corral.services.clock import utcnow
from corral.services.errors import Conflict, InvalidInput, NotFound
from corral.services.principal import Principal

TOKEN_PREFIX = "crl_"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
ROLES = ("admin", "member")


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret(prefix: str = TOKEN_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


def _user_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "display_name": row.display_name,
        "role": row.role,
        "created_at": row.created_at,
        "disabled": row.disabled_at is not None,
    }


_USER_COLUMNS = (users.c.id, users.c.email, users.c.display_name, users.c.role, users.c.created_at, users.c.disabled_at)


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidInput(f"{email!r} is not an email address", field="email")
    return email


def create_user(conn: Connection, *, email: str, display_name: str | None, role: str, actor: str) -> dict[str, Any]:
    email = normalise_email(email)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    display_name = (display_name or email.split("@")[0]).strip()[:128]
    now = utcnow()
    try:
        with conn.begin_nested():
            user_id = conn.execute(
                insert(users)
                .values(email=email, display_name=display_name, role=role, created_at=now)
                .returning(users.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a user with email {email} already exists", field="email", code="already_exists") from None
    events.record(conn, actor=actor, subject_type="user", subject_id=user_id, kind="user_created",
                  message=f"user {email} created with role {role}")
    return get_user(conn, user_id)


def get_user(conn: Connection, user_id: int) -> dict[str, Any]:
    row = conn.execute(select(*_USER_COLUMNS).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return _user_dict(row)


def get_user_by_email(conn: Connection, email: str) -> dict[str, Any]:
    row = conn.execute(select(*_USER_COLUMNS).where(users.c.email == email.strip().lower())).first()
    if row is None:
        raise NotFound(f"user {email} not found")
    return _user_dict(row)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    return [_user_dict(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(users.c.email))]


def update_user(
    conn: Connection, user_id: int, *, actor: str, display_name: str | None = None,
    role: str | None = None, disabled: bool | None = None,
) -> dict[str, Any]:
    current = get_user(conn, user_id)
    values: dict[str, Any] = {}
    if display_name is not None:
        values["display_name"] = display_name.strip()[:128]
    if role is not None:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
        values["role"] = role
    if disabled is not None:
        values["disabled_at"] = utcnow() if disabled else None
    if current["role"] == "admin" and not current["disabled"] and (role == "member" or disabled):
        _keep_an_admin(conn, user_id, current["email"])
    if values:
        conn.execute(update(users).where(users.c.id == user_id).values(**values))
        changes = ", ".join(f"{k}={'set' if k == 'disabled_at' else v}" for k, v in values.items())
        events.record(conn, actor=actor, subject_type="user", subject_id=user_id, kind="user_updated",
                      message=f"user updated: {changes}")
    return get_user(conn, user_id)


def _keep_an_admin(conn: Connection, user_id: int, email: str) -> None:
    """Refuse to demote or disable the last active administrator: nobody could administer."""
    # Every active admin row, locked in id order: two admins demoting each other take turns
    # (no deadlock), and the second sees the first's result (PostgreSQL re-checks rows it
    # waited for; SQLite writers are serial anyway).
    admins = conn.execute(
        select(users.c.id).where(users.c.role == "admin", users.c.disabled_at.is_(None))
        .order_by(users.c.id).with_for_update()
    ).scalars().all()
    if not [a for a in admins if a != user_id]:
        raise Conflict(f"{email} is the last active administrator: make another user an administrator first",
                       field="role", code="last_admin")


def create_token(
    conn: Connection, *, user_id: int, name: str, expires_at: datetime | None, actor: str
) -> tuple[str, dict[str, Any]]:
    """A new token for the user: (the secret, shown this once; its stored description)."""
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidInput("token name must be 1 to 128 characters", field="name")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expiry must be in the future", field="expires_at")
    secret = new_secret()
    token_id = conn.execute(
        insert(api_tokens)
        .values(user_id=user_id, name=name, prefix=secret[:8], token_hash=hash_token(secret),
                created_at=now, expires_at=expires_at)
        .returning(api_tokens.c.id)
    ).scalar_one()
    events.record(conn, actor=actor, subject_type="user", subject_id=user_id, kind="token_created",
                  message=f"API token {name!r} ({secret[:8]}...) created")
    return secret, get_token(conn, user_id, token_id)


_TOKEN_COLUMNS = (
    api_tokens.c.id, api_tokens.c.name, api_tokens.c.prefix, api_tokens.c.created_at,
    api_tokens.c.expires_at, api_tokens.c.revoked_at,
)


def _token_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked": row.revoked_at is not None,
    }


def get_token(conn: Connection, user_id: int, token_id: int) -> dict[str, Any]:
    row = conn.execute(
        select(*_TOKEN_COLUMNS).where(api_tokens.c.id == token_id, api_tokens.c.user_id == user_id)
    ).first()
    if row is None:
        raise NotFound(f"token {token_id} not found")
    return _token_dict(row)


def list_tokens(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(*_TOKEN_COLUMNS).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id))
    return [_token_dict(r) for r in rows]


def revoke_token(conn: Connection, *, user_id: int, token_id: int, actor: str) -> dict[str, Any]:
    token = get_token(conn, user_id, token_id)
    if not token["revoked"]:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=utcnow()))
        events.record(conn, actor=actor, subject_type="user", subject_id=user_id, kind="token_revoked",
                      message=f"API token {token['name']!r} ({token['prefix']}...) revoked")
    return get_token(conn, user_id, token_id)


_AUTH_QUERY = (
    select(users.c.id, users.c.email, users.c.role, users.c.disabled_at, api_tokens.c.expires_at,
           api_tokens.c.revoked_at)
    .join(users, users.c.id == api_tokens.c.user_id)
)


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The user behind a bearer token, in one query; None if unknown, revoked or expired."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    with read_tx(engine) as conn:
        row = conn.execute(_AUTH_QUERY.where(api_tokens.c.token_hash == hash_token(token))).first()
    return _principal_of(row, utcnow())


def principals_by_token_hash(conn: Connection, token_hashes: set[str]) -> dict[str, Principal]:
    """The users behind several tokens (by hash) in one query, by the same rules as
    ``authenticate``: unknown, revoked or expired tokens and disabled users are left out."""
    if not token_hashes:
        return {}
    now = utcnow()
    rows = conn.execute(_AUTH_QUERY.add_columns(api_tokens.c.token_hash)
                        .where(api_tokens.c.token_hash.in_(sorted(token_hashes)))).all()
    found = {row.token_hash: _principal_of(row, now) for row in rows}
    return {h: p for h, p in found.items() if p is not None}


def _principal_of(row: Any, now: datetime) -> Principal | None:
    if row is None or row.revoked_at is not None or row.disabled_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return Principal(user_id=row.id, email=row.email, role=row.role)
