"""Browser sessions of the web UI.

The cookie holds a random token (256 bits); the table stores only its SHA-256, so a
copy of the database lets nobody sign in. Each session has its own CSRF token, which
every form of the UI sends back. A session ends when it expires or when its user signs
out (the row is deleted) or is disabled.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update

from corral.db.engine import read_tx, write_tx
from corral.db.tables import users, web_sessions
from corral.services import events
from corral.services.clock import utcnow
from corral.services.principal import Principal

SESSION_LIFETIME = timedelta(days=14)
# A session unused for this long ends even before it expires.
IDLE_TIMEOUT = timedelta(days=2)
# last_seen_at is written at most this often: most requests only read.
TOUCH_EVERY = timedelta(minutes=5)


SESSION_COOKIE = "corral_session"  # the web UI's; log reads accept it too. Named by session_cookie_name


def session_cookie_name(secure: bool) -> str:
    """The session cookie's name: over https ``__Host-`` prefixed, so that the browser keeps
    it host-only (Secure, Path=/, no Domain) and no other host, not even a workload's on
    a sibling name, can set or replace it. Over http, browsers allow no such prefix."""
    return f"__Host-{SESSION_COOKIE}" if secure else SESSION_COOKIE


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    id: str
    principal: Principal
    csrf_token: str
    display_name: str


def create_session(conn: Connection, principal: Principal, *, now: datetime | None = None) -> tuple[str, str]:
    """A new session for a user who has just proven who they are: (cookie token, CSRF token)."""
    now = now or utcnow()
    # Sessions of this user that ended are removed here rather than by a background job.
    conn.execute(delete(web_sessions).where(web_sessions.c.user_id == principal.user_id,
                                            web_sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(insert(web_sessions).values(id=_hash(token), user_id=principal.user_id, csrf_token=csrf,
                                             created_at=now, last_seen_at=now, expires_at=now + SESSION_LIFETIME))
    events.record(conn, actor=principal.email, subject_type="user", subject_id=principal.user_id,
                  kind="signed_in", message="signed in to the web UI", at=now)
    return token, csrf


_LOOKUP = (
    select(web_sessions.c.id, web_sessions.c.csrf_token, web_sessions.c.last_seen_at, web_sessions.c.expires_at,
           users.c.id.label("user_id"), users.c.email, users.c.role, users.c.display_name, users.c.disabled_at)
    .join(users, users.c.id == web_sessions.c.user_id)
)


def session_for(engine: Engine, token: str) -> WebSession | None:
    """The live session behind a cookie token, in one read; None if unknown, ended or disabled."""
    if not token or len(token) > 100:
        return None
    session_id = _hash(token)
    with read_tx(engine) as conn:
        row = conn.execute(_LOOKUP.where(web_sessions.c.id == session_id)).first()
    now = utcnow()
    if row is None or row.disabled_at is not None or row.expires_at <= now or now - row.last_seen_at > IDLE_TIMEOUT:
        return None
    if now - row.last_seen_at > TOUCH_EVERY:
        with write_tx(engine) as conn:
            conn.execute(update(web_sessions).where(web_sessions.c.id == session_id).values(last_seen_at=now))
    return WebSession(id=session_id, principal=Principal(row.user_id, row.email, row.role),
                      csrf_token=row.csrf_token, display_name=row.display_name)


def end_session(conn: Connection, session: WebSession) -> None:
    """Sign out: the row goes, so the cookie is worthless even if it was copied."""
    conn.execute(delete(web_sessions).where(web_sessions.c.id == session.id))
    events.record(conn, actor=session.principal.email, subject_type="user", subject_id=session.principal.user_id,
                  kind="signed_out", message="signed out of the web UI")


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(expected.encode(), (given or "").encode())
