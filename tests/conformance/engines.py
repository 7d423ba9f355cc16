"""The engines the conformance suite runs against, one class per backend.

Each test of ``test_conformance.py`` runs once per entry of ``ENGINES`` (the ``engine``
fixture in ``conftest.py``). An engine makes backends on a real cluster of its kind and
does the few things a test needs that the ``Backend`` interface does not offer: start
something outside Corral (for discovery) and clean up after the test. It also says how
the suite's own commands must be written on its cluster, where a container or a compute
node differs from a process on this host: where a service listens (``serve_command``:
on a host, the loopback address, as the built-in recipes do; in a pod, every address, or
its readiness probe cannot reach it), how a command dies by a signal (``die_by_signal``: a
shell that is a container's PID 1 ignores even SIGKILL sent from inside), how the test host
reaches a service's endpoint (``http_get``: directly, or through the API server where
cluster DNS names do not resolve) and the shortest time limit it enforces within seconds
(``time_limit_s``).

To add a backend (``kubernetes``): write ``KubernetesEngine(Engine)`` in a module of this
package (``engine_kubernetes.py``), add one line to ``ENGINES`` below, and let its
``unavailable()`` say why it cannot run here (for example no ``KUBECONFIG``): the tests
of that engine are then skipped with that reason (and ``CORRAL_FAIL_ON_SKIP=1`` makes the
run fail, so CI has to provide the engine).
"""

from __future__ import annotations

import importlib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.backends.base import Backend

# name -> "module:Class" in this package, imported only when that engine's tests run.
ENGINES = {
    "local": "engine_local:LocalEngine",
    "slurm": "engine_slurm:SlurmEngine",
    "kubernetes": "engine_kubernetes:KubernetesEngine",
}


@dataclass(frozen=True)
class Outsider:
    """Something running on the cluster that Corral did not start."""

    native_name: str  # as Discovered.native_name will say
    kind: str  # Discovered.kind
    project: str | None  # the project the cluster says it belongs to (None: it cannot tell)


class Engine:
    """One backend on a real cluster of its kind, for one test."""

    name = ""
    timeout = 20.0  # how long a state change may take to be observed
    python = "/usr/bin/python3"  # a Python that the project's user can run where the job runs
    bind_host = "127.0.0.1"  # where the suite's service listens (see serve_command)
    # The shortest time limit the cluster ends a command at within seconds (None: it cannot;
    # the suite then checks only that a limit is taken and a command within it completes).
    time_limit_s: int | None = 2

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp_path = tmp_path

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this engine cannot run here (its tests are skipped), or None."""
        return None

    def backend(self) -> Backend:
        """A backend on this test's cluster state. A second call, once the first backend
        is closed, is the agent restarted: the new backend must adopt what runs."""
        raise NotImplementedError

    @contextmanager
    def outsider(self) -> Iterator[Outsider]:
        """Starts a workload on the cluster outside Corral, ends it on leaving."""
        raise NotImplementedError
        yield  # pragma: no cover

    def serve_command(self) -> str:
        """Shell that runs an HTTP server on ``{port}`` (the backend puts the port there)."""
        return f"exec {self.python} -m http.server --bind {self.bind_host} {{port}}"

    def die_by_signal(self, signal_number: int) -> str:
        """Shell whose command ends killed by ``signal_number``."""
        return f"kill -{signal_number} $$"

    def http_get(self, backend: Backend, component_id: int, url: str) -> int:
        """The HTTP status of a GET of a service's ``endpoint_url``, from the test host."""
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status

    def expose(self, backend: Backend, component_id: int) -> None:
        """Make a running component of ours visible where discovery looks (where discovery
        sees only part of the cluster, as the local backend's GPU processes)."""

    def cleanup(self) -> None:
        """Leave nothing running (called after every test, also on failure)."""


def load(name: str) -> type[Engine]:
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(f"tests.conformance.{module}"), cls)
