"""A short memory of tokens seen valid, so that a hot route can refuse a bad token (401)
before its body is validated (422) without a database lookup on every request.

Only for an early answer: the route checks the token again where it counts (in the
transaction that writes), so a token revoked within ``RECHECK_AFTER_S`` is still refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

RECHECK_AFTER_S = 30.0
_MAX_ENTRIES = 10_000


class SeenTokens:
    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, state: Any, name: str) -> SeenTokens:
        """The app's memory called ``name`` (made on first use)."""
        seen = getattr(state, name, None)
        if seen is None:
            seen = cls()
            setattr(state, name, seen)
        return seen

    async def valid(self, token_hash: str, look_up: Callable[[], Any]) -> bool:
        """Seen valid lately, or ``look_up()`` (in the thread pool) finds it: remembered."""
        if self.fresh(token_hash):
            return True
        if await run_in_threadpool(look_up) is None:
            return False
        self.add(token_hash)
        return True

    def fresh(self, token_hash: str) -> bool:
        until = self._until.get(token_hash)
        return until is not None and until > time.monotonic()

    def add(self, token_hash: str) -> None:
        with self._lock:
            if len(self._until) >= _MAX_ENTRIES:
                self._until.clear()
            self._until[token_hash] = time.monotonic() + RECHECK_AFTER_S
