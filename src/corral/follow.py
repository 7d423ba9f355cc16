"""Long-lived text streams (a workload's output with ``follow``) that hold no thread.

Used on both sides of log following: the control plane relaying to a user, and an agent
serving its backend's output. The body is an async iterator; the stream also ends, at
once, when the client leaves (``http.disconnect``) or when any of ``stop_when`` returns
(shutdown, revoked credentials). ``on_close`` always runs, so what the stream holds (an
upstream connection, a place in a per-user cap) is released whatever ended it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

Guard = Callable[[], Awaitable[None]]


class FollowResponse(Response):
    def __init__(self, body: AsyncIterator[bytes], *, media_type: str = "text/plain; charset=utf-8",
                 stop_when: Sequence[Guard] = (), on_close: Callable[[], Awaitable[None]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        # Not Response.__init__: it would render an empty body with Content-Length 0.
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        self._body = body
        self._guards = tuple(stop_when)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = False
        started = False
        try:
            async with anyio.create_task_group() as tg:
                async def until_disconnect() -> None:
                    nonlocal gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                    tg.cancel_scope.cancel()

                async def until(guard: Guard) -> None:
                    await guard()
                    tg.cancel_scope.cancel()

                tg.start_soon(until_disconnect)
                for guard in self._guards:
                    tg.start_soon(until, guard)
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                started = True
                try:
                    async for chunk in self._body:
                        if chunk:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except Exception:  # noqa: BLE001 - the source failed mid-stream: end it, as if it had ended
                    log.warning("a followed stream failed", exc_info=True)
                tg.cancel_scope.cancel()
            if started and not gone:
                # Ended here (source finished, shutdown, credentials revoked): a clean end
                # of the response, so the client sees the stream end rather than break.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # Shielded: this also runs when the server cancels the stream at shutdown.
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._body, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # noqa: BLE001 - closing must not hide why the stream ended
                        log.debug("closing a followed stream failed", exc_info=True)
                if self._on_close is not None:
                    await self._on_close()


def until_set(event: threading.Event, poll_s: float = 0.2) -> Guard:
    """A guard that returns once ``event`` is set (by a signal handler, another thread)."""
    async def guard() -> None:
        while not event.is_set():
            await anyio.sleep(poll_s)
    return guard
