"""Who may see a workload's origin: tickets, workload credentials, and the check behind them.

A viewer signed in to Corral opens ``/workloads/<id>/open`` on Corral's origin. It checks
that they may see the workload, then redirects the browser to the workload's origin
with a **ticket**: signed, for that workload and user only, valid 60 seconds. The
workload origin trades it for a **credential**, a signed cookie of its own origin
(host-only, HttpOnly) naming the user, the workload and what the user signed in with
(their web session or API token), valid a few hours and renewed while used. Neither
ever holds Corral's session or an API token, and each works on its own workload's
origin only.

Every request to the workload then checks again, in the database, that the user is
not disabled, that the session (or token) they signed in with is still live, and that
they may still see the workload (``reach.service_endpoint``): signing out of Corral,
revoking the token or leaving the project ends access at the next request.

Signing needs no secret of its own: the key is derived (HKDF) from the server's secret
key (``services.keys``), so every replica agrees and rotating it rotates this too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import Connection, select

from corral.db.tables import api_tokens, users, web_sessions
from corral.services import keys as server_keys
from corral.services.clock import utcnow
from corral.services.principal import Principal

TICKET_TTL_S = 60
CREDENTIAL_TTL_S = 8 * 3600
# A credential used after half its life is replaced by a fresh one.
RENEW_AFTER_S = CREDENTIAL_TTL_S // 2
_MAX_LEN = 1024
_PURPOSE = b"corral workload origins v1"


@dataclass(frozen=True, slots=True)
class Grant:
    """A user's access to one workload's origin, and what it rests on: ``s:<web session id>``
    or ``t:<API token hash>`` (both already hashes: neither signs anyone in)."""

    user_id: int
    workload_id: int
    via: str


class AppSigner:
    """Signs and checks tickets and credentials (two salts: one is never taken for the other)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        # Ours are newest first; itsdangerous signs with the last and checks with all.
        secret = list(reversed(keys))
        self._tickets = URLSafeSerializer(secret, salt="corral.workload-ticket")
        self._credentials = URLSafeSerializer(secret, salt="corral.workload-credential")

    def ticket(self, grant: Grant, *, now: float | None = None) -> str:
        return self._dump(self._tickets, grant, TICKET_TTL_S, now)

    def check_ticket(self, value: str | None, workload_id: int, *, now: float | None = None) -> Grant | None:
        found = self._load(self._tickets, value, workload_id, now)
        return found[0] if found else None

    def credential(self, grant: Grant, *, now: float | None = None) -> str:
        return self._dump(self._credentials, grant, CREDENTIAL_TTL_S, now)

    def check_credential(self, value: str | None, workload_id: int, *,
                         now: float | None = None) -> tuple[Grant, int] | None:
        """The grant and its expiry (epoch seconds), if the credential is genuine, unexpired
        and for this workload."""
        return self._load(self._credentials, value, workload_id, now)

    @staticmethod
    def _dump(serializer: URLSafeSerializer, grant: Grant, ttl: int, now: float | None) -> str:
        expires = int(time.time() if now is None else now) + ttl
        return serializer.dumps({"u": grant.user_id, "w": grant.workload_id, "v": grant.via, "e": expires})

    @staticmethod
    def _load(serializer: URLSafeSerializer, value: str | None, workload_id: int,
              now: float | None) -> tuple[Grant, int] | None:
        if not value or len(value) > _MAX_LEN:
            return None
        try:
            data = serializer.loads(value)
        except BadData:
            return None
        if not isinstance(data, dict):
            return None
        user, workload, via, expires = data.get("u"), data.get("w"), data.get("v"), data.get("e")
        if not (isinstance(user, int) and isinstance(workload, int) and isinstance(via, str)
                and isinstance(expires, int)):
            return None
        if workload != workload_id or expires <= (time.time() if now is None else now):
            return None
        return Grant(user, workload, via), expires


def viewer(conn: Connection, grant: Grant) -> Principal | None:
    """The user behind a grant, if they are not disabled and what they signed in with still
    holds; None otherwise. Whether they may see the workload is the caller's next check."""
    row = conn.execute(select(users.c.id, users.c.email, users.c.role, users.c.disabled_at)
                       .where(users.c.id == grant.user_id)).first()
    if row is None or row.disabled_at is not None:
        return None
    kind, _, ref = grant.via.partition(":")
    now = utcnow()
    if kind == "s":
        session = conn.execute(select(web_sessions.c.expires_at).where(
            web_sessions.c.id == ref, web_sessions.c.user_id == grant.user_id)).first()
        if session is None or session.expires_at <= now:
            return None
    elif kind == "t":
        token = conn.execute(select(api_tokens.c.revoked_at, api_tokens.c.expires_at).where(
            api_tokens.c.token_hash == ref, api_tokens.c.user_id == grant.user_id)).first()
        if token is None or token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
            return None
    else:
        return None
    return Principal(user_id=row.id, email=row.email, role=row.role)


_signers: dict[int, AppSigner] = {}


def signer_for(settings: Any) -> AppSigner:
    """The signer for the server's keys (keys are read once per process; so is this)."""
    keys = server_keys.for_settings(settings)
    signer = _signers.get(id(keys))  # the keys object lives as long as the process: its id is stable
    if signer is None:
        signer = _signers[id(keys)] = AppSigner(keys.derive(_PURPOSE))
    return signer
