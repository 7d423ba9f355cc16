"""Files Corral serves as they are (the UI's CSS and JavaScript, the API docs' bundles):
read once, gzipped once, cached by browsers for good when asked for by their content hash.

Shared by the web UI (``/static``) and the API docs (``/docs/assets``), which may not
import each other.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str  # a hash of the content: URLs carry it as ?v=


def static_file(name: str, body: bytes, *, compress: bool = True) -> StaticFile:
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript", "image/svg+xml"):
        media_type += "; charset=utf-8"
    gzipped = gzip.compress(body, 9, mtime=0) if compress and len(body) > 512 else None
    return StaticFile(body, gzipped, media_type, hashlib.sha256(body).hexdigest()[:16])


def respond(found: StaticFile | None, request: Request) -> Response:
    """The file, gzipped when the client takes it; 304 when it has it; cached for good
    when asked for with its hash."""
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    headers = {"ETag": f'"{found.etag}"', "Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff",
               "Cache-Control": "public, max-age=31536000, immutable" if request.query_params.get("v") == found.etag
               else "no-cache"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    body = found.body
    if found.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["Content-Encoding"] = found.gzipped, "gzip"
    return Response(body, media_type=found.media_type, headers=headers)
