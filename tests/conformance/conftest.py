"""The ``engine`` fixture: every conformance test runs once per backend of
``engines.ENGINES`` (ids ``local``, ``slurm``, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.engines import ENGINES, Engine, load
from tests.integration.backends.slurm_support import make_slurm, slurm_cluster

FIXTURES = (make_slurm, slurm_cluster)  # the Slurm engine asks for them by name


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    cls = load(request.param)
    why = cls.unavailable()
    if why:
        pytest.skip(f"{request.param} backend: {why}")
    made = cls(request, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
