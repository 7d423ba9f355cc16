"""The agent's usage reports: every ``interval_s`` (``CORRAL_USAGE_INTERVAL_S``, default
10 s; 0 turns them off) what the backend's running components use
(``Backend.usage``, optional) goes to ``POST /agent/usage``.

Samples are a time series, not state: one that cannot be sent is dropped, not queued
(the next comes ``interval_s`` later). Reading costs a few small /proc files per running
component: nothing at all while nothing runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from corral.backends.base import Backend, Usage

log = logging.getLogger(__name__)

ENV_INTERVAL = "CORRAL_USAGE_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0
MAX_BATCH = 5000  # samples per request (the server takes at most this many)


def interval_from_env() -> float:
    text = os.environ.get(ENV_INTERVAL, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{ENV_INTERVAL}={text!r}: give seconds between usage samples (0: none)") from None
    if value < 0 or (0 < value < 0.5):
        raise ValueError(f"{ENV_INTERVAL}={text!r}: give 0 (no samples) or at least 0.5 seconds")
    return value


def sample_body(u: Usage) -> dict[str, Any]:
    return {"component_id": u.component_id, "at": u.sampled_at.isoformat(), "cpu": u.cpu_millicores,
            "memory": u.memory_bytes, "gpu_utilization": u.gpu_utilization, "gpu_memory": u.gpu_memory_bytes}


class UsageReporter:
    def __init__(self, backend: Backend, client: Any, interval_s: float | None = None) -> None:
        self.sample = getattr(backend, "usage", None)  # optional in the Backend interface
        self.post = getattr(client, "usage", None)
        self.interval_s = interval_from_env() if interval_s is None else interval_s
        self.next_at = time.monotonic() + min(self.interval_s, 1.0)  # the first soon after start

    @property
    def on(self) -> bool:
        return self.sample is not None and self.post is not None and self.interval_s > 0

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval_s`` until ``stop`` is set (the agent's usage thread)."""
        while not stop.is_set():
            self.report_if_due(time.monotonic())
            stop.wait(max(0.05, self.next_at - time.monotonic()))

    def report_if_due(self, now: float) -> None:
        if not self.on or now < self.next_at:
            return
        self.next_at = now + self.interval_s
        try:
            samples = self.sample()  # type: ignore[misc]
            for start in range(0, len(samples), MAX_BATCH):
                self.post([sample_body(u) for u in samples[start:start + MAX_BATCH]])
        except Exception as exc:  # noqa: BLE001 - samples are lossy: the next ones come soon
            log.debug("usage samples not sent: %s", exc)
