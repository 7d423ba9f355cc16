"""Backends: each turns components into things on its cluster and reports what it sees.

``base`` holds the interface (``Backend``) and the plain data it speaks (``Launch``,
``Observation``, ``Capacity``, ``Discovered``); ``recipes`` turns a workload's spec into
``Launch``es; ``local`` runs them as processes on this host.

The names are loaded lazily: the local backend's supervisor processes import this package
and must stay small (one runs per component).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing`: supervisors import this package and must stay small
if TYPE_CHECKING:
    from typing import Any

    from corral.backends.base import (
        Backend,
        BackendError,
        Capacity,
        Discovered,
        GpuDevice,
        Launch,
        NodeCapacity,
        Observation,
        Readiness,
        UnknownComponent,
    )

__all__ = [
    "Backend",
    "BackendError",
    "Capacity",
    "Discovered",
    "GpuDevice",
    "Launch",
    "NodeCapacity",
    "Observation",
    "Readiness",
    "UnknownComponent",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from corral.backends import base

        return getattr(base, name)
    raise AttributeError(name)
