"""Labels and annotations on every object Corral puts on a Kubernetes cluster (product.md).

Labels (selectable): the project, workload, component, the workload type and the
component's role. Annotations: who submitted the workload, and whether Corral created
the object or found it there (``created-by``: ``corral`` or ``discovered``).
Anything that carries the project label without a component label, or lives in a
project's namespace without being Corral's, is discovered as a Custom workload.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "corral.dev/"
PROJECT = PREFIX + "project"
WORKLOAD = PREFIX + "workload"
COMPONENT = PREFIX + "component"
TYPE = PREFIX + "type"
ROLE = PREFIX + "role"  # job | server | endpoint (the component's kind)
SUBMITTER = PREFIX + "submitter"
CREATED_BY = PREFIX + "created-by"
MANAGED_BY = "app.kubernetes.io/managed-by"
CREATED_BY_CORRAL = "corral"
CREATED_BY_DISCOVERED = "discovered"

# Selects every object Corral made (watches and lists use it).
CORRAL_SELECTOR = f"{MANAGED_BY}=corral,{COMPONENT}"


def labels(project: str, workload_id: int, component_id: int, workload_type: str, role: str) -> dict[str, str]:
    return {PROJECT: project, WORKLOAD: str(workload_id), COMPONENT: str(component_id),
            TYPE: workload_type.replace("_", "-"), ROLE: role, MANAGED_BY: "corral"}


def annotations(submitter: str | None) -> dict[str, str]:
    out = {CREATED_BY: CREATED_BY_CORRAL}
    if submitter:
        out[SUBMITTER] = submitter
    return out


def component_of(object_labels: Mapping[str, str] | None) -> int | None:
    """The Corral component an object belongs to, from its labels (None: not Corral's)."""
    value = (object_labels or {}).get(COMPONENT)
    if value is None or (object_labels or {}).get(MANAGED_BY) != "corral":
        return None
    try:
        return int(value)
    except ValueError:
        return None
