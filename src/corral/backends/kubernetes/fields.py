"""Reading nested fields of Kubernetes objects, as the official client's models and as plain
dicts (watch events, custom objects) alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dig(obj: Any, *path: str) -> Any:
    """Attribute or key access along ``path``; None where any step is missing."""
    for step in path:
        if obj is None:
            return None
        obj = obj.get(step) if isinstance(obj, Mapping) else getattr(obj, step, None)
    return obj
