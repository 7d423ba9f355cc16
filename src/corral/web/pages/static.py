"""The UI's CSS and JavaScript: read once, gzipped once, cached by the browser for good
(their URLs carry a hash of their content)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.static_assets import respond
from corral.web.templating import static_file

router = APIRouter(include_in_schema=False)


@router.get("/static/{name:path}")
async def static(name: str, request: Request) -> Response:
    return respond(static_file(name), request)
