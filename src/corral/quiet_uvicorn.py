"""uvicorn's Server, waking once a second instead of ten times while nothing happens.

uvicorn's main loop sleeps 0.1 s between ticks (a tick refreshes the Date header, once a
second, and checks whether to exit): ten wake-ups a second for each of `corral serve`'s
two servers (the API and the built-in agent's log API) with nothing to do. This one ticks
once a second, and a request to exit (``request_exit``, a signal) wakes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn

TICK_S = 1.0


class QuietServer(uvicorn.Server):
    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while True:
            self._wake.clear()  # before the check: a request made after it sets it again
            if await self.on_tick(counter):
                return
            # uvicorn counts ticks of 0.1 s (the Date header every 10th): each of ours is 10.
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)

    def request_exit(self) -> None:
        """Stop serving, from any thread (or a signal handler)."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.request_exit()
