"""The sign-in form's throttle (``corral.domain.throttle``), one per app and server process.

Kept in memory: with several server replicas behind a load balancer each counts the
failures it sees, so a guesser spread over N replicas gets up to N times the tries
(README, "Security model"). The client address is the connection's, or the one a
trusted proxy forwards (uvicorn's --forwarded-allow-ips).
"""

from __future__ import annotations

import math
import threading
import time

from fastapi import Request

from corral.domain.throttle import SignInThrottle

_CREATE = threading.Lock()


def _throttle(request: Request) -> SignInThrottle:
    state = request.app.state
    throttle = getattr(state, "sign_in_throttle", None)
    if throttle is None:
        with _CREATE:
            throttle = getattr(state, "sign_in_throttle", None)
            if throttle is None:
                throttle = state.sign_in_throttle = SignInThrottle()
    return throttle


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def seconds_to_wait(request: Request, email: str) -> int:
    """0 if this address may try this account now, else whole seconds to wait."""
    return math.ceil(_throttle(request).retry_after(email, _address(request), time.monotonic()))


def record(request: Request, email: str, *, succeeded: bool) -> None:
    throttle = _throttle(request)
    if succeeded:
        throttle.succeeded(email, _address(request))
    else:
        throttle.failed(email, _address(request), time.monotonic())


def wait_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
