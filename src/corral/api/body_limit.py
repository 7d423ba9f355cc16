"""Request bodies are bounded: 413 before anything is parsed.

A pure ASGI middleware, so it sees the bytes as they arrive: a Content-Length over the
limit is refused before a byte of the body is read, and a chunked body is cut off as
soon as what has arrived passes the limit. Nothing downstream ever holds more than the
limit (plus one chunk) of a body in memory.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.responses import FastJSONResponse


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit: FastAPI re-raises HTTP
    exceptions met while reading a body, so it ends up as the JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the server accepts ({limit} bytes)")


def _too_large(limit: int) -> FastJSONResponse:
    detail = f"the request body is larger than the server accepts ({limit} bytes)"
    return FastJSONResponse({"error": {"code": "too_large", "message": detail, "field": None}}, status_code=413,
                            headers={"Connection": "close"})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = False  # the server itself refuses a malformed Content-Length
            if too_large:
                # Answered without reading the body; the server then closes the connection.
                await _too_large(limit)(scope, receive, send)
                return
        received = 0
        exceeded = started = replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if exceeded and message["status"] != 413:
                    # A reader caught the error and answered something else: the answer is 413.
                    replaced = True
                    await _too_large(limit)(scope, receive, send)
                    return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # Whoever read the body let the error through (or turned it into another one).
            if not exceeded or started:
                raise
            await _too_large(limit)(scope, receive, send)
