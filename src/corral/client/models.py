"""What the REST API returns, as typed models for the client's callers.

These mirror the API's response bodies but are the client's own: the client never
imports the server. Unknown fields are ignored, so a newer server does not break an
older client. Secrets (new API and agent tokens) are left out of ``repr``.

No ``from __future__ import annotations`` here: pydantic would evaluate each annotation
string at import (~2 ms of a CLI call); a model names only models defined above it.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.domain.statuses import WorkloadStatus
from corral.domain.workload_types import WorkloadType


# Resource vectors as the API gives them and ``set_quota`` takes them back: gpu a count,
# cpu in cores (0.5 is 500m), memory and ephemeral_storage in bytes; in a limit, None is
# unbounded.
Amounts = dict[str, int | float]
Limits = dict[str, int | float | None]


class _Model(BaseModel):
    # defer_build: a model's validator is built when first used, not at import (a CLI
    # call uses one or two of these; building all of them cost ~20 ms per call).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


def _type_label(value: str) -> str:
    try:
        return WorkloadType(value).label
    except ValueError:
        return value


def _status_label(value: str) -> str:
    try:
        return WorkloadStatus(value).label
    except ValueError:
        return value


# --------------------------------------------------------------------------- identity

class User(_Model):
    id: int
    email: str
    display_name: str
    role: str
    created_at: datetime
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Token(_Model):
    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked: bool = False


class TokenCreated(Token):
    token: str = Field(repr=False, description="the secret; shown this once")


# --------------------------------------------------------------------------- projects

class Project(_Model):
    id: int
    name: str
    description: str = ""
    preemption_policy: str
    created_at: datetime


class Member(_Model):
    id: int
    email: str
    display_name: str
    added_at: datetime | None = None


class Membership(_Model):
    project: str
    email: str


class Quota(_Model):
    project: str
    cluster: str
    guaranteed: Amounts
    limit: Limits
    used: Amounts
    borrowed: Amounts
    available: Limits
    over_limit: list[str] = Field(default_factory=list)
    queued: int = 0
    updated_at: datetime


class Secret(_Model):
    """A project secret as the API lists it: its name and dates; the value is never returned."""

    project: str
    name: str
    created_by: str
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------- clusters

class Cluster(_Model):
    id: int
    name: str
    kind: str
    description: str = ""
    status: str
    capacity: Amounts
    nodes: list[Any] = Field(default_factory=list)
    last_heartbeat_at: datetime | None = None
    created_at: datetime


class ClusterCreated(Cluster):
    agent_token: str = Field(repr=False, description="the agent's token; shown this once")


# --------------------------------------------------------------------------- workloads

class _WorkloadLabels:
    """Labels people read, for models with ``type`` and ``status`` fields."""

    @property
    def type_label(self) -> str:
        return _type_label(self.type)  # type: ignore[attr-defined]

    @property
    def status_label(self) -> str:
        """The status as people read it ("Delete Failed")."""
        return _status_label(self.status)  # type: ignore[attr-defined]


class Workload(_Model, _WorkloadLabels):
    """One row of the Workloads table."""

    id: int
    name: str
    type: str
    project: str
    cluster: str
    resources: Amounts
    status: str
    status_reason: str = ""
    created_by: str
    created_at: datetime


WorkloadRow = Workload


class WorkloadPage(_Model):
    items: list[Workload]
    page: int
    page_size: int
    total: int
    total_exact: bool = Field(description="false: there are at least `total` matches")
    next_cursor: str | None = Field(None, description="`cursor` for the next page; None on the last")
    prev_cursor: str | None = Field(None, description="`cursor` for the previous page; None on the first")

    @property
    def first_index(self) -> int:
        """1-based position of the first row of this page (0 if the page is empty)."""
        return (self.page - 1) * self.page_size + 1 if self.items else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.page_size + len(self.items) if self.items else 0


class WorkloadCreated(_Model, _WorkloadLabels):
    id: int
    name: str
    type: str
    project: str
    cluster: str
    status: str
    status_reason: str = ""
    created_by: str
    created_at: datetime
    resources: Amounts


class Component(_Model):
    id: int
    kind: str
    name: str
    status: str
    reason: str = ""
    observed_at: datetime
    resources: Amounts
    # What it left when it finished: {"model": ...}, {"metrics": {...}} or {"error": ...}.
    result: dict[str, Any] | None = None


class Event(_Model):
    id: int
    at: datetime
    actor: str
    kind: str
    message: str


class QueuePosition(_Model):
    position: int
    of: int


class WorkloadDetail(_Model):
    id: int
    name: str
    type: str
    type_label: str = ""
    project: str
    cluster: str
    status: str
    status_label: str = ""
    status_reason: str = ""
    status_changed_at: datetime
    created_by: str
    created_at: datetime
    priority: str
    preemptible: bool
    resources: Amounts
    spec: dict[str, Any] = Field(default_factory=dict)
    time_limit: str | None = None  # spec.time_limit as people write it ("1h30m")
    endpoints: dict[str, Any] = Field(default_factory=dict)
    open_url: str | None = None  # Corral's page that opens the service in a browser
    delete_requested_at: datetime | None = None
    admitted_at: datetime | None = None
    first_running_at: datetime | None = None
    finished_at: datetime | None = None
    wait_seconds: float = 0.0
    run_seconds: float = 0.0
    queue_position: QueuePosition | None = None
    components: list[Component] = Field(default_factory=list)
    metrics: dict[str, Any] | None = None  # an evaluation's metrics, once reported
    events: list[Event] = Field(default_factory=list)

    def model_post_init(self, _context: Any) -> None:
        # Older servers may not send the labels: derive them.
        if not self.type_label:
            object.__setattr__(self, "type_label", _type_label(self.type))
        if not self.status_label:
            object.__setattr__(self, "status_label", _status_label(self.status))


class WorkloadStats(_Model):
    project: str
    total: int
    by_status: dict[str, int]
    by_type: dict[str, int]


class BulkDeleteItem(_Model):
    """One workload's answer to a bulk delete; ``name`` and ``project`` are None when not found."""

    id: int
    name: str | None = None
    project: str | None = None
    status: str | None = None  # after the request (before it, in a dry run)
    result: str  # done | already_deleting | already_deleted | not_found
    message: str = ""

    @property
    def status_label(self) -> str:
        return _status_label(self.status) if self.status else ""


class BulkDeleteResult(_Model):
    dry_run: bool
    items: list[BulkDeleteItem]
    counts: dict[str, int]


__all__ = [
    "BulkDeleteItem", "BulkDeleteResult", "Cluster", "ClusterCreated", "Component", "Event", "Member", "Membership", "Project", "QueuePosition", "Quota",
    "Secret", "Token", "TokenCreated", "User", "Workload", "WorkloadCreated", "WorkloadRow", "WorkloadDetail",
    "WorkloadPage", "WorkloadStats",
]


# --------------------------------------------------------------------------- models

class WorkloadRef(_Model):
    id: int
    name: str | None = None


class Model(_Model):
    """A model in a project's store on a cluster."""

    id: int
    name: str
    project: str
    cluster: str
    kind: str
    source: str | None = None
    revision: str | None = None
    base_model: str | None = None
    dataset: str | None = None
    files: int = 0
    bytes: int = 0
    workload: WorkloadRef | None = None  # the workload that produced it
    created_at: datetime | None = None
    reported_at: datetime


class ModelPage(_Model):
    items: list[Model]
    page: int
    page_size: int
    total: int


class Evaluation(_Model):
    """An evaluation workload and its metrics (None until reported)."""

    id: int
    name: str
    cluster: str
    status: str
    model: str | None = None
    dataset: str | None = None
    tasks: list[Any] | None = None
    created_at: datetime
    finished_at: datetime | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None


class Evaluations(_Model):
    evaluations: list[Evaluation] = Field(default_factory=list)
    metric_names: list[str] = Field(default_factory=list)  # a column each, to compare


class ModelDetail(Model):
    """A model and its evaluations (newest first), metrics side by side."""

    evaluations: list[Evaluation] = Field(default_factory=list)
    metric_names: list[str] = Field(default_factory=list)
