"""The API's interactive documentation, served entirely by Corral.

FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN, so they are blank
on a machine without internet. These pages are FastAPI's, but their JavaScript, CSS and
icon come from /docs/assets/, files shipped by the fastapi-offline package (swagger-ui
bundle and css, redoc standalone, favicon); nothing is fetched from anywhere else
(tests/e2e/web/test_api_docs.py checks it in Chromium with every other host cut off).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse, Response

ASSETS = "/docs/assets"
_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
# The one thing either bundle fetches from elsewhere: ReDoc's "API docs by Redocly" logo.
# It becomes an empty image, so that the page asks nothing of any other host.
_REWRITES = {"redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg",
                                      b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E")]}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


@cache
def _asset(name: str) -> _Asset | None:
    if name not in _FILES:
        return None
    body = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    for old, new in _REWRITES.get(name, []):
        body = body.replace(old, new)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        media_type += "; charset=utf-8"
    gzipped = None if name.endswith(".png") else gzip.compress(body, 6, mtime=0)
    return _Asset(body, gzipped, media_type, hashlib.sha256(body).hexdigest()[:16])


def _url(name: str) -> str:
    found = _asset(name)
    return f"{ASSETS}/{name}?v={found.etag if found else '0'}"


def install(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc); the app must be made with docs_url=None, redoc_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=root + _url("swagger-ui-bundle.js"), swagger_css_url=root + _url("swagger-ui.css"),
            swagger_favicon_url=root + _url("favicon.png"), swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(oauth2_redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=root + _url("redoc.standalone.js"), redoc_favicon_url=root + _url("favicon.png"),
            with_google_fonts=False)

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    def asset(name: str, request: Request) -> Response:
        found = _asset(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        headers = {"ETag": f'"{found.etag}"', "Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "public, max-age=31536000, immutable"
                   if request.query_params.get("v") == found.etag else "no-cache"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        body = found.body
        if found.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body, headers["Content-Encoding"] = found.gzipped, "gzip"
        return Response(body, media_type=found.media_type, headers=headers)
