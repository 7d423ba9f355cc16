"""Signing in and out, and the user's own API tokens."""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx, write_tx
from corral.services import users as user_service
from corral.services.clock import utcnow
from corral.services.errors import InvalidInput
from corral.services.passwords import verify_credentials
from corral.services.web_sessions import SESSION_LIFETIME, create_session, csrf_matches, end_session, session_for
from corral.web import sign_in_limit
from corral.web.http import (
    CheckedForm,
    RawForm,
    Session,
    WebId,
    WebRoute,
    page,
    redirect,
    safe_next,
    session_cookie,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)

# Before there is a session, the sign-in form is protected by a double-submit token: a
# random cookie that a page of another site can neither read nor set, echoed in the form.
# Over https it is __Host- prefixed, like the session's: a workload's page on a sibling
# host name could otherwise plant one (Domain=<parent>) and sign the viewer in as someone else.
SIGN_IN_COOKIE = "corral_sign_in"


def _sign_in_cookie(request: Request) -> str:
    return f"__Host-{SIGN_IN_COOKIE}" if request.url.scheme == "https" else SIGN_IN_COOKIE
FAILED = "The email or password is not right. Check both and try again."


@router.get("/")
def home(session: Session, request: Request) -> Response:
    return redirect(request, "/workloads")


def _sign_in_page(request: Request, *, next_path: str, email: str = "", error: str | None = None,
                  status_code: int = 200) -> Response:
    token = request.cookies.get(_sign_in_cookie(request)) or secrets.token_urlsafe(24)
    response = page(request, "sign_in.html", {"csrf": token, "next": next_path, "email": email, "error": error},
                    status_code=status_code)
    response.set_cookie(_sign_in_cookie(request), token, max_age=3600, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> Response:
    token = request.cookies.get(session_cookie(request))
    if token and session_for(request.app.state.engine, token) is not None:
        return redirect(request, safe_next(next))  # signed in already
    return _sign_in_page(request, next_path=safe_next(next))


@router.post("/sign-in")
def sign_in(request: Request, form: RawForm) -> Response:
    next_path = safe_next(form.get("next"))
    email = form.get("email").strip()
    if not csrf_matches(request.cookies.get(_sign_in_cookie(request), ""), form.get("csrf_token")):
        return _sign_in_page(request, next_path=next_path, email=email, status_code=403,
                             error="The sign-in form had expired. Please sign in again.")
    engine = request.app.state.engine
    # Throttled before the password is even checked: a paused guesser learns nothing.
    wait = sign_in_limit.seconds_to_wait(request, email)
    if wait > 0:
        response = _sign_in_page(request, next_path=next_path, email=email, status_code=429,
                                 error=sign_in_limit.wait_message(wait))
        response.headers["Retry-After"] = str(wait)
        return response
    with read_tx(engine) as conn:
        principal = verify_credentials(conn, email, form.get("password"))
    sign_in_limit.record(request, email, succeeded=principal is not None)
    if principal is None:
        return _sign_in_page(request, next_path=next_path, email=email, error=FAILED, status_code=401)
    with write_tx(engine) as conn:
        token, _ = create_session(conn, principal)
    response = redirect(request, next_path)
    # Host-only (no Domain), HttpOnly, SameSite=Lax; __Host- prefixed over https.
    response.set_cookie(session_cookie(request), token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                        httponly=True, samesite="lax", secure=request.url.scheme == "https")
    response.delete_cookie(_sign_in_cookie(request), path="/", secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
def sign_out(request: Request, session: Session, form: CheckedForm) -> Response:
    with write_tx(request.app.state.engine) as conn:
        end_session(conn, session)
    response = redirect(request, "/sign-in", flash="You have signed out.")
    response.delete_cookie(session_cookie(request), path="/", secure=request.url.scheme == "https")
    return response


# ----------------------------------------------------------------------------- API tokens

def _tokens_page(request: Request, session: Session, *, created: dict | None = None,
                 error: InvalidInput | None = None, values: dict | None = None, status_code: int = 200) -> Response:
    with read_tx(request.app.state.engine) as conn:
        tokens = user_service.list_tokens(conn, session.principal.user_id)
    return page(request, "tokens.html", {"tokens": tokens[::-1], "created": created, "error": error,
                                         "values": values or {}}, status_code=status_code)


@router.get("/tokens")
def tokens(request: Request, session: Session) -> Response:
    return _tokens_page(request, session)


@router.post("/tokens")
def create_token(request: Request, session: Session, form: CheckedForm) -> Response:
    name, days = form.get("name").strip(), form.get("expires_in_days").strip()
    values = {"name": name, "expires_in_days": days}
    try:
        expires_at = None
        if days:
            if not days.isdigit() or not 1 <= int(days) <= 3650:
                raise InvalidInput("expiry must be a whole number of days from 1 to 3650", field="expires_in_days")
            expires_at = utcnow() + timedelta(days=int(days))
        with write_tx(request.app.state.engine) as conn:
            secret, token = user_service.create_token(conn, user_id=session.principal.user_id, name=name,
                                                      expires_at=expires_at, actor=session.principal.email)
    except InvalidInput as exc:
        return _tokens_page(request, session, error=exc, values=values, status_code=422)
    # Shown in this response only: it is not stored anywhere it could be shown again.
    return _tokens_page(request, session, created={**token, "token": secret}, status_code=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: WebId, request: Request, session: Session, form: CheckedForm) -> Response:
    with write_tx(request.app.state.engine) as conn:
        token = user_service.revoke_token(conn, user_id=session.principal.user_id, token_id=token_id,
                                          actor=session.principal.email)
    return redirect(request, "/tokens", flash=f"Token {token['name']!r} ({token['prefix']}...) is revoked; "
                                              "it no longer works.")
