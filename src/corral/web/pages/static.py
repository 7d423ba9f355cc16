"""The UI's CSS and JavaScript: read once, gzipped once, cached by the browser for good
(their URLs carry a hash of their content)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.web.templating import static_file

router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    found = static_file(name)
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
