"""Request and response bodies of the REST API (also its OpenAPI documentation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from corral.domain.resources import (
    MAX_BYTES,
    MAX_GPUS,
    MAX_MILLICORES,
    Limit,
    Resources,
    cores,
    parse_bytes,
    parse_millicores,
)
from corral.domain.results import check_result


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _utc(value: datetime) -> datetime:
    # Stored in UTC: a time whose UTC falls outside years 1-9999 cannot be (a 500 before).
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


# A time with its zone, in UTC (what the database stores).
Timestamp = Annotated[AwareDatetime, AfterValidator(_utc)]
Cpu = Annotated[Any, AfterValidator(parse_millicores)]
Bytes = Annotated[Any, AfterValidator(parse_bytes)]


class ResourcesIn(_In):
    """A resource vector: gpu devices, cpu in cores or "500m", memory as bytes or "16Gi"."""

    gpu: int = Field(0, ge=0, le=MAX_GPUS)
    cpu: Cpu = 0
    memory: Bytes = 0
    ephemeral_storage: Bytes = 0

    def to_domain(self) -> Resources:
        return Resources(self.gpu, self.cpu, self.memory, self.ephemeral_storage)


class LimitIn(_In):
    """A limit vector; a dimension that is null is unbounded, one left out equals the guarantee."""

    gpu: int | None = Field(None, ge=0, le=MAX_GPUS)
    cpu: Annotated[Any, AfterValidator(lambda v: None if v is None else parse_millicores(v))] = None
    memory: Annotated[Any, AfterValidator(lambda v: None if v is None else parse_bytes(v))] = None
    ephemeral_storage: Annotated[Any, AfterValidator(lambda v: None if v is None else parse_bytes(v))] = None

    def to_domain(self, guaranteed: Resources) -> Limit:
        given = self.model_fields_set
        return Limit(*(getattr(self, n) if n in given else getattr(guaranteed, n)
                       for n in ("gpu", "cpu", "memory", "ephemeral_storage")))


# Responses show CPU in cores, the number a request reads as the same amount: a quota
# read and written back is unchanged. Stored and computed in millicores; converted here
# (and by ``shown_vector`` on the paths that skip pydantic).
CoresOut = Annotated[int, PlainSerializer(cores, return_type=int | float),
                     WithJsonSchema({"type": "number", "description": "cores (0.5 is 500m)"})]
_BYTES = "bytes"


class ResourcesOut(BaseModel):
    """A resource vector: GPU devices, CPU in cores, memory and ephemeral storage in bytes
    (a dimension a stored vector lacks, such as a node reported by an older agent, is 0)."""

    gpu: int = 0
    cpu: CoresOut = 0
    memory: int = Field(0, description=_BYTES)
    ephemeral_storage: int = Field(0, description=_BYTES)


class RowResourcesOut(BaseModel):
    """What a workload requests, as the Workloads table shows it (CPU in cores, memory in bytes)."""

    gpu: int
    cpu: CoresOut
    memory: int = Field(description=_BYTES)


class LimitOut(BaseModel):
    """A limit vector, units as ``ResourcesOut``; null: unbounded."""

    gpu: int | None
    cpu: CoresOut | None
    memory: int | None = Field(description=_BYTES)
    ephemeral_storage: int | None = Field(description=_BYTES)


def shown_vector(amounts: dict[str, Any]) -> dict[str, Any]:
    """A stored resource vector as responses show it (CPU in cores), for the responses
    written without pydantic (FastJSONResponse)."""
    cpu = amounts.get("cpu")
    return amounts if cpu is None else {**amounts, "cpu": cores(cpu)}


class UserIn(_In):
    email: str = Field(max_length=254)
    display_name: str | None = Field(None, max_length=128)
    role: Literal["admin", "member"] = "member"


class UserPatch(_In):
    display_name: str | None = Field(None, max_length=128)
    role: Literal["admin", "member"] | None = None
    disabled: bool | None = None


class UserOut(BaseModel):
    id: int
    email: str
    display_name: str
    role: str
    created_at: datetime
    disabled: bool


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=128)
    expires_at: Timestamp | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


class TokenCreated(TokenOut):
    token: str = Field(description="the secret; shown this once, store it now")


class ProjectIn(_In):
    name: str = Field(description="DNS label, 2-41 characters, immutable")
    description: str = Field("", max_length=2000)
    preemption_policy: Literal["never", "lower_priority"] = "lower_priority"


class ProjectPatch(_In):
    description: str | None = Field(None, max_length=2000)
    preemption_policy: Literal["never", "lower_priority"] | None = None


class ProjectOut(BaseModel):
    id: int
    name: str
    description: str
    preemption_policy: str
    created_at: datetime


class MemberIn(_In):
    email: str


class ClusterIn(_In):
    name: str
    kind: Literal["local", "kubernetes", "slurm"]
    description: str = Field("", max_length=2000)
    capacity: ResourcesIn | None = Field(None, description="expected capacity until the agent reports it")


class ClusterPatch(_In):
    description: str | None = Field(None, max_length=2000)
    capacity: ResourcesIn | None = None


class NodeOut(BaseModel):
    name: str
    capacity: ResourcesOut
    gpu_vendor: str | None = None
    gpu_model: str | None = None


class ClusterOut(BaseModel):
    id: int
    name: str
    kind: str
    description: str
    status: Literal["verifying", "healthy", "unhealthy"]
    capacity: ResourcesOut
    nodes: list[NodeOut]
    last_heartbeat_at: datetime | None
    created_at: datetime
    isolation: str | None = Field(None, description="how the cluster keeps workloads apart, as its agent reports")


class ClusterCreated(ClusterOut):
    agent_token: str = Field(description="the agent's token; shown this once")


class QuotaIn(_In):
    guaranteed: ResourcesIn
    limit: LimitIn | Literal["unbounded"] | None = Field(
        None, description="omitted: equal to guaranteed (a hard limit); 'unbounded': may borrow any idle capacity"
    )


class QuotaPatch(_In):
    """Change only what is given; the rest is kept, read in the same transaction as the write."""

    guaranteed: ResourcesIn | None = Field(None, description="the dimensions given are set; the others kept")
    limit: LimitIn | Literal["unbounded"] | None = Field(
        None, description="the dimensions given are set (null: unbounded); one not given keeps its value, or "
                          "follows its guarantee if it equals it; 'unbounded': no limit at all")
    hard: bool = Field(False, description="each limit not given equals its guarantee")


class QuotaOut(BaseModel):
    project: str
    cluster: str
    guaranteed: ResourcesOut
    limit: LimitOut
    used: ResourcesOut
    borrowed: ResourcesOut
    available: LimitOut = Field(description="what the project may still be admitted before its limit "
                                            "(null: unbounded)")
    over_limit: list[str]
    queued: int
    updated_at: datetime


class WorkloadRow(BaseModel):
    id: int
    name: str
    type: str
    project: str
    cluster: str
    resources: RowResourcesOut
    status: str
    status_reason: str
    created_by: str
    created_at: datetime


class WorkloadPage(BaseModel):
    items: list[WorkloadRow]
    page: int
    page_size: int
    total: int
    total_exact: bool = Field(description="false: there are at least `total` matches (name/creator filters)")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last")
    prev_cursor: str | None = Field(None, description="pass as `cursor` for the previous page; null on the first")


class WorkloadCreated(BaseModel):
    id: int
    name: str
    type: str
    project: str
    cluster: str
    status: str
    status_reason: str
    created_by: str
    created_at: datetime
    resources: ResourcesOut


class ComponentOut(BaseModel):
    id: int
    kind: str
    name: str
    status: str
    reason: str
    observed_at: AwareDatetime
    resources: ResourcesOut
    # What it left when it finished: a model it registered ({"model": ..., "bytes": ...}),
    # evaluation metrics ({"metrics": {...}}), or {"error": why it was refused}.
    result: dict[str, Any] | None = None


class EventOut(BaseModel):
    id: int
    at: datetime
    actor: str
    kind: str
    message: str


class WorkloadDetail(BaseModel):
    id: int
    name: str
    type: str
    type_label: str
    project: str
    cluster: str
    status: str
    status_label: str
    status_reason: str
    status_changed_at: datetime
    created_by: str
    created_at: datetime
    priority: str
    preemptible: bool
    resources: ResourcesOut
    spec: dict[str, Any]
    time_limit: str | None = None  # spec.time_limit (seconds) as people write it: "2h", "1h30m"
    # The service's URL on the workload's own origin (API clients send their token there).
    endpoints: dict[str, Any]
    # Corral's page that opens the service in a browser (signs the viewer in to its origin).
    open_url: str | None = None
    delete_requested_at: datetime | None
    admitted_at: datetime | None
    first_running_at: datetime | None
    finished_at: datetime | None
    wait_seconds: float
    run_seconds: float
    queue_position: dict[str, int] | None
    components: list[ComponentOut]
    # An evaluation's metrics (its components' results together), None until it reported any.
    metrics: dict[str, Any] | None = None
    events: list[EventOut]


class WorkloadStats(BaseModel):
    project: str
    total: int
    by_status: dict[str, int]
    by_type: dict[str, int]


class NodeIn(_In):
    name: str = Field(max_length=253)
    capacity: ResourcesIn
    gpu_vendor: str | None = Field(None, max_length=64)
    gpu_model: str | None = Field(None, max_length=128)


class HeartbeatIn(_In):
    capacity: ResourcesIn | None = None
    nodes: list[NodeIn] | None = Field(None, max_length=10_000)
    agent_version: str | None = Field(None, max_length=64)
    agent_url: str | None = Field(None, max_length=512, pattern=r"^https?://")
    isolation: str | None = Field(None, max_length=500)


class ComponentStatusIn(_In):
    component_id: int = Field(ge=1, le=2**63 - 1)
    status: Literal["Pending", "Running", "Completed", "Failed", "Deleted", "DeleteFailed", "Unknown"]
    reason: str = Field("", max_length=4000)
    observed_at: Timestamp
    native_name: str | None = Field(None, max_length=253)
    endpoint_url: str | None = Field(None, max_length=2048, pattern=r"^https?://")
    removed: bool = False  # gone from the cluster after a preemption
    # What a finished component left (domain/results.py: at most 16 KiB, metrics numbers or short texts).
    result: Annotated[dict[str, Any] | None, AfterValidator(check_result)] = None


class FoundIn(_In):
    native_name: str = Field(min_length=1, max_length=253)
    kind: str = Field("process", min_length=1, max_length=32)
    command: str = Field("", max_length=4000)
    gpu: int = Field(0, ge=0, le=1024)
    cpu: int = Field(0, ge=0, le=MAX_MILLICORES, description="CPU it holds, in millicores")
    memory: int = Field(0, ge=0, le=MAX_BYTES, description="memory it holds, in bytes")
    ephemeral_storage: int = Field(0, ge=0, le=MAX_BYTES, description="ephemeral storage it holds, in bytes")
    started_at: Timestamp | None = None
    project: str | None = Field(None, max_length=64)


class FoundBatch(_In):
    items: list[FoundIn] = Field(max_length=10_000)


class ComponentStatusBatch(_In):
    updates: list[ComponentStatusIn] = Field(max_length=10_000)
