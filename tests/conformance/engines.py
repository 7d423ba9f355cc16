"""The engines the conformance suite runs against, one class per backend.

Each test of ``test_conformance.py`` runs once per entry of ``ENGINES`` (the ``engine``
fixture in ``conftest.py``). An engine makes backends on a real cluster of its kind and
does the few things a test needs that the ``Backend`` interface does not offer: start
something outside Corral (for discovery) and clean up after the test.

To add a backend (``kubernetes``): write ``KubernetesEngine(Engine)`` in a module of this
package (``engine_kubernetes.py``), add one line to ``ENGINES`` below, and let its
``unavailable()`` say why it cannot run here (for example no ``KUBECONFIG``): the tests
of that engine are then skipped with that reason (and ``CORRAL_FAIL_ON_SKIP=1`` makes the
run fail, so CI has to provide the engine).
"""

from __future__ import annotations

import importlib
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

    def expose(self, backend: Backend, component_id: int) -> None:
        """Make a running component of ours visible where discovery looks (where discovery
        sees only part of the cluster, as the local backend's GPU processes)."""

    def cleanup(self) -> None:
        """Leave nothing running (called after every test, also on failure)."""


def load(name: str) -> type[Engine]:
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(f"tests.conformance.{module}"), cls)
