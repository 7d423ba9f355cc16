"""A finished component's result, as every backend words it in the component's reason
("completed: metrics recorded"). The rules a result must follow are the domain's
(``corral.domain.results``: ``normalise_result``, its size limit); this module only says
them the same way on every cluster kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def result_words(result: Mapping[str, Any]) -> str:
    """What a result adds to a Completed (or Failed) reason."""
    if result.get("model"):
        return f"model {result['model']} registered"
    if result.get("metrics") is not None:
        return "metrics recorded"
    if result.get("error"):
        return "its result was refused"
    return "result recorded"
