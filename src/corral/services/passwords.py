"""Passwords for signing in to the web UI, stored as Argon2id hashes."""

from __future__ import annotations

import functools
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, select, update

from corral.db.tables import users
from corral.services import events
from corral.services.errors import InvalidInput, NotFound
from corral.services.principal import Principal

MIN_LENGTH = 8
MAX_LENGTH = 1024  # hashing a megabyte on every attempt would be an easy way to load the server

_HASHER = PasswordHasher()  # argon2-cffi's defaults (RFC 9106, low-memory profile)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown (or has no password), so that a miss
    costs as long as a wrong password and the timing does not tell which accounts exist."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def check_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_LENGTH} characters", field="password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"the password must have at most {MAX_LENGTH} characters", field="password")


def hash_password(password: str) -> str:
    check_password(password)
    return _HASHER.hash(password)


def generate_password() -> str:
    """A random password for a first administrator (about 144 bits)."""
    return secrets.token_urlsafe(18)


def set_password(conn: Connection, *, email: str, password: str, actor: str) -> dict[str, Any]:
    """Set (or replace) a user's password; the event says that it changed, never what to."""
    hashed = hash_password(password)
    row = conn.execute(select(users.c.id, users.c.email).where(users.c.email == email.strip().lower())).first()
    if row is None:
        raise NotFound(f"user {email} not found", field="email")
    conn.execute(update(users).where(users.c.id == row.id).values(password_hash=hashed))
    events.record(conn, actor=actor, subject_type="user", subject_id=row.id, kind="password_set",
                  message=f"password of {row.email} set")
    return {"id": row.id, "email": row.email}


def verify_credentials(conn: Connection, email: str, password: str) -> Principal | None:
    """The user with this email and password, or None (unknown, wrong, disabled, no password).

    Every failure looks the same to the caller, and costs about the same time. Only
    reads: the slow hash is checked outside any write transaction.
    """
    row = None
    if 0 < len(password) <= MAX_LENGTH:
        row = conn.execute(
            select(users.c.id, users.c.email, users.c.role, users.c.disabled_at, users.c.password_hash)
            .where(users.c.email == email.strip().lower())
        ).first()
    real = row is not None and bool(row.password_hash)
    stored = row.password_hash if real else _dummy_hash()
    try:
        _HASHER.verify(stored, password[:MAX_LENGTH] or "-")
        matched = real
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        matched = False
    if not matched or row is None or row.disabled_at is not None:
        return None
    return Principal(user_id=row.id, email=row.email, role=row.role)
