"""The backend with its API server unreachable (the official client against a port where
nothing listens): capacity raises BackendUnavailable (the agent sends no heartbeat, so the
cluster turns unhealthy), start raises it too (the agent tries the same step again, and
idempotent names make the retry create nothing twice), nothing hangs, and close() ends
the watches."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kubernetes import client

from corral.backends.base import BackendUnavailable, Launch
from corral.backends.kubernetes.backend import KubernetesBackend
from corral.backends.kubernetes.settings import KubeSettings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def backend():  # type: ignore[no-untyped-def]
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{closed_port()}"
    config.retries = 0
    made = KubernetesBackend(KubeSettings(), api_client=client.ApiClient(config))
    yield made
    made.close()


def test_unreachable_api_server(backend: KubernetesBackend) -> None:
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach the Kubernetes API server"):
        backend.capacity()
    launch = Launch(1, 1, "vision", "custom", "vision-w1-job", command=("true",))
    with pytest.raises(BackendUnavailable):
        backend.start(launch)
    with pytest.raises(BackendUnavailable):
        backend.start(launch)  # the agent's retry: still unavailable, not "already exists"
    assert backend.observe() == []  # nothing known yet, nothing invented
    assert backend.discover() == []  # from the discovery watches' (empty) caches, without waiting
    assert time.monotonic() - began < 15
    watchers = [t for t in threading.enumerate() if t.name.startswith("kube-watch-")]
    assert watchers
    backend.close()
    for thread in watchers:
        thread.join(timeout=20)
    assert not any(t.is_alive() for t in watchers)
