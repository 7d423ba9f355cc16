"""Workload types, their typed specs, and the components each type is made of."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator
from pydantic_core import PydanticCustomError

from corral.domain.durations import EXAMPLES as DURATION_EXAMPLES
from corral.domain.durations import parse_duration
from corral.domain.names import WORKLOAD_NAME_RULE, check_workload_name
from corral.domain.resources import Resources, cores, parse_bytes, parse_millicores

# Re-exported: the types live in a module of their own (cheap to import).
from corral.domain.workload_types import SERVICE_TYPES, Priority, WorkloadType  # noqa: F401


def _cpu(value: Any) -> int:
    return parse_millicores(value)


def _bytes(value: Any) -> int:
    return parse_bytes(value)


def _time_limit(value: Any) -> int | None:
    return None if value is None else parse_duration(value)


class ResourceRequest(BaseModel):
    """Resources of one replica. CPU in cores or millicores ("500m"), memory as "16Gi"."""

    model_config = ConfigDict(extra="forbid")

    gpu: int = Field(0, ge=0, le=1024)
    cpu: Annotated[Any, AfterValidator(_cpu)] = 1000
    memory: Annotated[Any, AfterValidator(_bytes)] = 2 * 2**30
    ephemeral_storage: Annotated[Any, AfterValidator(_bytes)] = 0

    def to_resources(self) -> Resources:
        return Resources(self.gpu, self.cpu, self.memory, self.ephemeral_storage)

    @field_serializer("cpu")
    def _cpu_in_cores(self, millicores: int) -> int | float:
        # The stored spec is what the API shows and what a resubmission reads: cores, as given.
        return cores(millicores)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def field_error(field: str, message: str) -> PydanticCustomError:
    """A check across fields that names the field at fault (``ctx.field``, which the API's
    and the services' error shapes append to the location) instead of the whole body."""
    return PydanticCustomError("value_error", message.replace("{", "{{").replace("}", "}}"), {"field": field})


def error_field(error: Any) -> str | None:
    """The field a pydantic error is about, without workload type tags: its location plus
    the ``ctx.field`` a check across fields names (see ``field_error``)."""
    tags = {t.value for t in WorkloadType}
    parts = [str(p) for p in error.get("loc", ()) if p not in tags]
    named = (error.get("ctx") or {}).get("field")
    if isinstance(named, str):
        parts.append(named)
    return ".".join(parts) or None


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: Annotated[str, AfterValidator(check_workload_name),
                    Field(description=WORKLOAD_NAME_RULE)]
    project: str = Field(min_length=1, max_length=64)
    cluster: str | None = Field(None, min_length=1, max_length=64)
    priority: Priority = Priority.MEDIUM
    preemptible: bool | None = None
    resources: ResourceRequest = Field(default_factory=ResourceRequest)
    image: str | None = Field(None, min_length=1, max_length=512)
    command: list[str] | str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(
        default_factory=dict, description="environment variable name -> project secret name"
    )
    # Stored as whole seconds; the cluster ends the workload (Failed) once it has run this long.
    time_limit: Annotated[Any, AfterValidator(_time_limit)] = Field(
        None, description=f"how long it may run, then it is stopped and Failed: {DURATION_EXAMPLES}")

    @field_validator("env", "secrets")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @field_validator("env")
    @classmethod
    def _env_values(cls, value: dict[str, str]) -> dict[str, str]:
        # A process environment cannot hold NUL: it would end the value early, or not start.
        for key, item in value.items():
            if "\x00" in item:
                raise ValueError(f"the value of {key} must not contain NUL characters")
        return value

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | str | None) -> list[str] | str | None:
        if value is not None and not (value.strip() if isinstance(value, str) else value):
            raise ValueError("must not be empty")
        if value is not None and any("\x00" in part for part in ([value] if isinstance(value, str) else value)):
            raise ValueError("must not contain NUL characters")  # no argument of a process can
        return value

    def replicas_count(self) -> int:
        return 1

    def nodes_count(self) -> int:
        return 1


class _NeedsImageOrCommand(_Common):
    @model_validator(mode="after")
    def _image_or_command(self):  # type: ignore[no-untyped-def]
        if self.image is None and self.command is None:
            raise field_error("command", "give an image or a command to run")
        return self


class ModelDownloadSpec(_Common):
    type: Literal[WorkloadType.MODEL_DOWNLOAD]
    source: str = Field(
        min_length=3,
        max_length=1024,
        description="a Hugging Face repository (org/model), or an http(s):// or s3:// URL",
    )
    revision: str | None = Field(None, max_length=128)
    model_name: str | None = Field(None, min_length=1, max_length=128, description="name in the model store")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.startswith(("http://", "https://", "s3://")) or _HF_REPO.match(value):
            return value
        raise ValueError("must be a Hugging Face repository (org/model) or an http(s):// or s3:// URL")


class InferenceSpec(_Common):
    type: Literal[WorkloadType.INFERENCE]
    model: str = Field(min_length=1, max_length=1024, description="model store name, Hugging Face repo or path")
    engine: Literal["vllm", "custom"] = "vllm"
    replicas: int = Field(1, ge=1, le=64)
    port: int = Field(8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _custom_needs_command(self):  # type: ignore[no-untyped-def]
        if self.engine == "custom" and self.command is None and self.image is None:
            raise field_error("command", "engine 'custom' needs a command or an image")
        return self

    def replicas_count(self) -> int:
        return self.replicas


class _MultiNode(_NeedsImageOrCommand):
    """Training types may span nodes: ``resources`` are then each node's, and the job holds
    ``nodes`` times them (Slurm: one task per node, started by srun; Kubernetes: an indexed
    Job, PyTorchJob or JobSet of that many pods; the local cluster is one host and refuses)."""

    nodes: int = Field(1, ge=1, le=64, description="how many nodes the job spans; resources are per node")

    def nodes_count(self) -> int:
        return self.nodes


class TrainingSpec(_MultiNode):
    type: Literal[WorkloadType.TRAINING]
    dataset: str = Field(min_length=1, max_length=1024)
    base_model: str | None = Field(None, max_length=1024)
    output_model: str | None = Field(None, min_length=1, max_length=128)


class PreTrainingSpec(_MultiNode):
    type: Literal[WorkloadType.PRE_TRAINING]
    dataset: str = Field(min_length=1, max_length=1024)
    output_model: str | None = Field(None, min_length=1, max_length=128)


class FineTuningSpec(_MultiNode):
    type: Literal[WorkloadType.FINE_TUNING]
    base_model: str = Field(min_length=1, max_length=1024)
    dataset: str = Field(min_length=1, max_length=1024)
    output_model: str | None = Field(None, min_length=1, max_length=128)


class EvaluationSpec(_NeedsImageOrCommand):
    type: Literal[WorkloadType.EVALUATION]
    model: str = Field(min_length=1, max_length=1024)
    dataset: str | None = Field(None, max_length=1024)
    tasks: list[str] = Field(default_factory=list, max_length=100,
                             description='harness tasks: a list, or one text "hellaswag" / "hellaswag,arc_easy"')

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks_as_text(cls, value: Any) -> Any:
        # `--set tasks=hellaswag,arc_easy` (and a form field) give text: as a person writes a list.
        if isinstance(value, str):
            return [task.strip() for task in value.split(",") if task.strip()]
        return value

    @model_validator(mode="after")
    def _dataset_or_tasks(self):  # type: ignore[no-untyped-def]
        if not self.dataset and not self.tasks:
            raise ValueError("give a dataset or evaluation tasks")
        return self


class WorkspaceSpec(_Common):
    type: Literal[WorkloadType.WORKSPACE]
    flavor: Literal["jupyterlab", "vscode"] = "jupyterlab"


class CustomSpec(_Common):
    """Anything not submitted through a typed form: a command, a manifest or a batch script."""

    type: Literal[WorkloadType.CUSTOM]
    manifest: dict[str, Any] | list[dict[str, Any]] | None = None
    batch_script: str | None = Field(None, max_length=1_000_000)
    service: bool = Field(False, description="long-running: serves until deleted")

    @model_validator(mode="after")
    def _one_payload(self):  # type: ignore[no-untyped-def]
        given = [k for k in ("command", "manifest", "batch_script") if getattr(self, k) is not None]
        if len(given) > 1:
            raise field_error(given[-1], f"give only one of command, manifest or batch_script, "
                                         f"not {' and '.join(given)}")
        if not given and not self.image:
            raise field_error("command", "give exactly one of command, manifest or batch_script (or an image alone)")
        return self


WorkloadSpec = Annotated[
    Union[
        ModelDownloadSpec,
        InferenceSpec,
        TrainingSpec,
        PreTrainingSpec,
        FineTuningSpec,
        EvaluationSpec,
        WorkspaceSpec,
        CustomSpec,
    ],
    Field(discriminator="type"),
]


def is_preemptible(spec: _Common) -> bool:
    """Services and workspaces default to non-preemptible; batch types to preemptible."""
    if spec.preemptible is not None:
        return spec.preemptible
    service = spec.type in SERVICE_TYPES or (isinstance(spec, CustomSpec) and spec.service)  # type: ignore[attr-defined]
    return not service


@dataclass(frozen=True, slots=True)
class ComponentPlan:
    """One thing a workload puts on its cluster, before any backend names it."""

    kind: str  # job | server | endpoint
    requests: Resources


def placement_units(spec: _Common) -> tuple[int, bool]:
    """How the request is split over a cluster's nodes (``domain.node_fit``): so many equal
    parts (``resources`` each), and whether each needs a node of its own. A multi-node job:
    one part per node, each on its own node; a service: one per replica, which may share."""
    if spec.type in SERVICE_TYPES or (isinstance(spec, CustomSpec) and spec.service):  # type: ignore[attr-defined]
        return spec.replicas_count(), False
    return spec.nodes_count(), spec.nodes_count() > 1


def plan_components(spec: _Common) -> list[ComponentPlan]:
    """The components a workload of this spec consists of.

    Batch types are one job (holding every node's resources when it spans ``nodes``). Services are a server (all replicas) and an endpoint, a
    passive object (a network service) that counts as Completed once it exists.
    """
    per_replica = spec.resources.to_resources()
    service = spec.type in SERVICE_TYPES or (isinstance(spec, CustomSpec) and spec.service)  # type: ignore[attr-defined]
    if service:
        return [
            ComponentPlan("server", per_replica.scaled(spec.replicas_count())),
            ComponentPlan("endpoint", Resources()),
        ]
    return [ComponentPlan("job", per_replica.scaled(spec.nodes_count()))]
