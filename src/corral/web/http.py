"""What every page needs: who is asking, the CSRF check of forms, HTML responses, errors.

Every page but sign-in depends on ``current_session``: without a live session a page
redirects to the sign-in page (and a script's request gets 401). Every POST reads its
form through ``checked_form``, which refuses it unless it carries the session's CSRF
token. Service errors become an HTML page that says what to do, never a traceback.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse, RedirectResponse, Response

from corral.services.errors import ServiceError
from corral.services.web_sessions import WebSession, csrf_matches, session_cookie_name, session_for
from corral.web.templating import render

log = logging.getLogger("corral.web")

FLASH_COOKIE = "corral_flash"
MAX_FORM_BYTES = 2 * 1024 * 1024  # a batch script may be up to a megabyte
GZIP_MIN_BYTES = 1024

# No inline script or style anywhere: the policy can forbid them outright.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SignInRequired(Exception):
    """No live session: the page sends the browser to sign in."""


class CsrfRejected(Exception):
    """A form without the session's CSRF token (forged, or from a session that ended)."""


def wants_json(request: Request) -> bool:
    """A request from the page's script (fetch), which wants data or a fragment back."""
    return request.headers.get("x-requested-with") == "fetch"


def here(request: Request) -> str:
    """The path and query of this request: where to come back to."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def safe_next(target: str | None, default: str = "/workloads") -> str:
    """Only a path on this site: an open redirect would make a good phishing link."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def sign_in_url(next_path: str | None = None) -> str:
    if not next_path or next_path in ("/", "/workloads"):
        return "/sign-in"
    return "/sign-in?" + urlencode({"next": next_path})


# ----------------------------------------------------------------------------- who is asking

def session_cookie(request: Request) -> str:
    """The session cookie's name for this request (``__Host-`` prefixed over https)."""
    return session_cookie_name(request.url.scheme == "https")


def current_session(request: Request) -> WebSession:
    token = request.cookies.get(session_cookie(request))
    session = session_for(request.app.state.engine, token) if token else None
    if session is None:
        raise SignInRequired()
    request.state.web_session = session
    return session


Session = Annotated[WebSession, Depends(current_session)]

# Ids in page paths are the database's 64-bit integers: outside them, an invalid-input page.
WebId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class Form:
    """A urlencoded form body: the first value of a field, or all of them."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, key: str, default: str = "") -> str:
        return next((v for k, v in self.pairs if k == key), default)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.pairs)


async def read_form(request: Request) -> Form:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ServiceErrorPage(413, "Too much data", "The form is larger than the server accepts (2 MB).")
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if body and content_type != "application/x-www-form-urlencoded":
        raise ServiceErrorPage(415, "Unsupported form", "Forms are sent as application/x-www-form-urlencoded.")
    pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    if any("\x00" in key or "\x00" in value for key, value in pairs):  # no database stores it as text
        raise ServiceErrorPage(422, "Invalid input", "The form contains a NUL character (%00), which no field "
                                                      "accepts.")
    return Form(pairs)


RawForm = Annotated[Form, Depends(read_form)]


def checked_form(session: Session, form: RawForm) -> Form:
    """The form of a signed-in user, refused unless it carries their session's CSRF token."""
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        raise CsrfRejected()
    return form


CheckedForm = Annotated[Form, Depends(checked_form)]


# ----------------------------------------------------------------------------- responses

def _finish(request: Request, response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if FLASH_COOKIE in request.cookies and getattr(request.state, "flash_shown", False):
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def page(request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200,
         session: WebSession | None = None) -> Response:
    """A page rendered from a template, gzipped when the browser accepts it."""
    session = session or getattr(request.state, "web_session", None)
    flash = None
    if not template.startswith("_"):  # a fragment for the page's script leaves the message to the page
        flash = unquote(request.cookies.get(FLASH_COOKIE, ""))[:500] or None
        request.state.flash_shown = flash is not None
    body = render(template, {"request": request, "session": session, "flash": flash, **(context or {})}).encode()
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding, X-Requested-With"}
    if len(body) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        # Level 6: nearly the size of 9 at a fraction of the time (a 50-row page: ~1 ms).
        body = gzip.compress(body, 6, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return _finish(request, Response(body, status_code=status_code, media_type="text/html; charset=utf-8",
                                     headers=headers))


def redirect(request: Request, url: str, flash: str | None = None) -> Response:
    """303 See Other (the browser follows with a GET), with a one-time message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(flash[:500]), max_age=60, path="/", httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
    return _finish(request, response)


def json_response(request: Request, content: Any, status_code: int = 200) -> Response:
    return _finish(request, JSONResponse(content, status_code=status_code, headers={"Cache-Control": "no-store"}))


# ----------------------------------------------------------------------------- errors

class ServiceErrorPage(Exception):
    """An error page with a status, a title and what to do."""

    def __init__(self, status_code: int, title: str, message: str, *, action: tuple[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status_code, self.title, self.message, self.action = status_code, title, message, action


_TITLES = {401: "Sign in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Invalid input",
           503: "Unavailable"}
_ADVICE = {
    403: "Only platform administrators may do this. Ask one if you need it done.",
    404: "It does not exist, or you are not a member of its project. Check the address, or pick a project "
         "from the list.",
    409: "Reload the page to see the current state, then try again if it still makes sense.",
    503: "Try again in a moment.",
}


def error_page(request: Request, status_code: int, title: str, message: str,
               action: tuple[str, str] | None = None) -> Response:
    if wants_json(request):
        return json_response(request, {"error": {"message": message, "title": title}}, status_code)
    return page(request, "error.html", {"title": title, "message": message, "action": action or ("/workloads",
                "Go to Workloads")}, status_code=status_code)


def _on_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignInRequired):
        if wants_json(request):
            return json_response(request, {"error": {"message": "your session has ended: sign in again",
                                                     "sign_in": sign_in_url(here(request))}}, 401)
        target = here(request) if request.method == "GET" else request.headers.get("referer")
        return redirect(request, sign_in_url(safe_next(_path_of(target), "/workloads")))
    if isinstance(exc, CsrfRejected):
        return error_page(request, 403, "This form has expired",
                          "The form did not carry the token of your current session (it may have been open "
                          "since before you signed in again). Go back, reload the page and submit it again.")
    if isinstance(exc, ServiceErrorPage):
        return error_page(request, exc.status_code, exc.title, exc.message, exc.action)
    if isinstance(exc, ServiceError):
        advice = _ADVICE.get(exc.status_code, "")
        return error_page(request, exc.status_code, _TITLES.get(exc.status_code, "Error"),
                          f"{exc.message[:1].upper()}{exc.message[1:]}. {advice}".strip())
    if isinstance(exc, RequestValidationError):
        return error_page(request, 422, _TITLES[422], "The address is not valid: " + "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', 'invalid')}" for e in exc.errors()))
    if isinstance(exc, SQLAlchemyError):
        log.exception("database error on %s %s", request.method, request.url.path)
        return error_page(request, 503, "The database did not answer",
                          "The page could not be read from the database. Try again in a moment; if it keeps "
                          "happening, the server's log says why.")
    raise exc


def _path_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class WebRoute(APIRoute):
    """Routes of the UI: errors become pages (or JSON for the page's script), not API errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            values = [*request.query_params.values(), *(str(v) for v in request.path_params.values())]
            if any("\x00" in value for value in values):  # %00: no database stores it as text
                return error_page(request, 422, _TITLES[422], "The address contains a NUL character (%00), which "
                                                              "no field accepts.")
            try:
                return await handler(request)
            except (SignInRequired, CsrfRejected, ServiceErrorPage, ServiceError, SQLAlchemyError,
                    RequestValidationError) as exc:
                return _on_error(request, exc)

        return handle
