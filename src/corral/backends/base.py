"""The backend interface: how a cluster agent puts components on a cluster and watches them.

One implementation per cluster kind (``local`` now; ``kubernetes`` and ``slurm`` later).
The agent loop drives a backend with plain data only:

- :class:`Launch` says what to run for one component (built by ``corral.backends.recipes``
  from a workload's spec);
- :class:`Observation` says what the cluster reports about one component, already mapped
  onto the component statuses of ``shared/spec/statuses.md`` (``ComponentStatus``) with a
  human reason and the time it was observed;
- :class:`Capacity` describes the cluster's nodes for the heartbeat;
- :class:`Discovered` describes something running on the cluster that Corral did not start.

Contract every backend keeps (the agent relies on it):

- ``start`` and ``stop`` are idempotent and return quickly; slow work (waiting for a
  process to exit, a grace period, a readiness check) happens elsewhere and shows up
  later in ``observe``.
- ``observe`` returns only what changed since its previous call (or since
  ``all_observations``), at most one observation per component, the newest. It is polled
  often (every ~100 ms) and must stay cheap with a thousand components on the cluster.
- ``all_observations`` returns the full current state (agent start, resync).
- Observations carry ``observed_at``: the time the state was reached on the cluster (a
  process's exit time, not the time it was noticed), so that the control plane can drop
  updates that arrive out of order.
- Deleted is final: after a component is reported Deleted the backend never reports it
  in another status.

Optional: ``usage() -> list[Usage]``, what the running components use now (CPU over the
interval since the previous call, memory, GPUs where the cluster's tools tell). The agent
calls it every few seconds when the backend has it; a backend without it reports none.
The local backend implements it (cgroup v2 files or /proc, nvidia-smi / rocm-smi), Slurm
(``sstat`` on the running steps) and Kubernetes (the metrics API, ``metrics.k8s.io``
PodMetrics: CPU and memory; GPUs would need DCGM exporter).

This module imports only the standard library and ``corral.domain`` (pure), so the
supervisor processes that import the package stay small.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from corral.domain.durations import format_duration
from corral.domain.resources import Resources
from corral.domain.statuses import ComponentStatus

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Capacity",
    "ComponentStatus",
    "Discovered",
    "GpuDevice",
    "Launch",
    "NodeCapacity",
    "Observation",
    "OutputRead",
    "Readiness",
    "UnknownComponent",
    "Usage",
]


class BackendError(Exception):
    """A backend cannot do what was asked (bad launch, state directory in use, ...)."""


class BackendUnavailable(Exception):  # noqa: N818 - a state, not a mistake
    """The cluster cannot be reached now (its controller is down): nothing is wrong with
    the request. Not a ``BackendError``, which fails the component: the agent skips its
    heartbeat (the cluster turns unhealthy), still reports what the backend observes (the
    last known statuses, saying the cluster is unreachable) and tries the step again."""


class UnknownComponent(BackendError, KeyError):
    """The backend has no record of this component id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown component"


@dataclass(frozen=True, slots=True)
class OutputRead:
    """A piece of a component's output (``Backend.read_output``)."""

    data: bytes
    offset: int  # where the next read starts
    over: bool  # the component has finished and this read reached the end: nothing more will come


@dataclass(frozen=True, slots=True)
class Readiness:
    """How to tell that a service is ready to serve.

    ``http_path``: an HTTP GET of ``http://127.0.0.1:<port><http_path>`` answering with a
    status from 200 to 399 (as a Kubernetes httpGet probe). Without it, a TCP connection
    to the port that succeeds means ready.
    """

    http_path: str | None = "/"
    interval_s: float = 0.25

    @property
    def kind(self) -> Literal["http", "tcp"]:
        return "http" if self.http_path is not None else "tcp"


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything a backend needs to run one component.

    Exactly one of ``command`` (an argv list, run without a shell) and ``script`` (run by
    ``/bin/sh``, or by its own ``#!`` line) is given, except for ``kind="endpoint"``, a
    passive object for which nothing runs (it counts as Completed once it exists).

    Services (``kind="server"``) with ``needs_port`` get a free TCP port: it is put in the
    environment as ``PORT`` and substituted for the text ``{port}`` in the command, the
    script and the environment values. ``fixed_port`` asks for that port instead. A
    server stays Pending until ``readiness`` passes (no readiness: Running once started),
    and its observation then carries ``endpoint_url`` =
    ``http://127.0.0.1:<port><endpoint_path>``.

    Resources: ``gpu`` devices (exclusive; the component sees them through
    ``CUDA_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES`` and ``ROCR_VISIBLE_DEVICES``),
    ``cpu_millicores`` and ``memory_bytes`` (limits, 0 = none); for a job spanning
    ``nodes`` (> 1: the spec's ``nodes`` of a training type), the sum over its nodes, each
    holding an equal share: Slurm allocates that many nodes and starts the command on each
    with ``srun``, Kubernetes makes that many pods (indexed Job, PyTorchJob or JobSet), the
    local cluster (one host) refuses it (Failed).

    ``time_limit_s`` (the spec's ``time_limit``, whole seconds; None = no limit): how long
    the command may run once started (a server: once started, ready or not). The backend
    then ends it as ``stop`` would (SIGTERM, a hard kill after the cluster's grace period)
    and reports it Failed with the reason ``time limit of <limit> reached`` (the limit as
    ``time_limit_text`` writes it, "2h"): the local supervisor counts it, Slurm gets
    ``--time`` (its TIMEOUT end), Kubernetes ``activeDeadlineSeconds`` (DeadlineExceeded).
    """

    component_id: int
    workload_id: int
    project: str
    workload_type: str  # a WorkloadType value ("training", ...)
    native_name: str
    kind: Literal["job", "server", "endpoint"] = "job"
    command: tuple[str, ...] | None = None
    script: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    gpu: int = 0
    cpu_millicores: int = 0
    memory_bytes: int = 0
    needs_port: bool = False
    fixed_port: int | None = None
    readiness: Readiness | None = None
    endpoint_path: str = "/"
    working_dir: str | None = None
    # What to install or configure when the command's program is not found on the host
    # ("vllm is not installed on this host: ..."): a backend adds it to that Failed reason.
    missing_hint: str | None = None
    time_limit_s: int | None = None
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.command is not None and not isinstance(self.command, tuple):
            object.__setattr__(self, "command", tuple(self.command))
        if self.kind not in ("job", "server", "endpoint"):
            raise BackendError(f"component {self.component_id}: unknown kind {self.kind!r}")
        if self.kind != "endpoint" and (self.command is None) == (self.script is None):
            raise BackendError(f"component {self.component_id}: give exactly one of command and script")
        if self.command is not None and not self.command:
            raise BackendError(f"component {self.component_id}: the command is empty")
        if min(self.gpu, self.cpu_millicores, self.memory_bytes) < 0:
            raise BackendError(f"component {self.component_id}: negative resources")
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise BackendError(f"component {self.component_id}: nodes must be a whole number, at least 1")
        if self.nodes > 1 and self.kind != "job":
            raise BackendError(f"component {self.component_id}: only a job spans nodes, not a {self.kind}")
        if self.time_limit_s is not None and (isinstance(self.time_limit_s, bool) or
                                              not isinstance(self.time_limit_s, int) or self.time_limit_s < 1):
            raise BackendError(f"component {self.component_id}: the time limit must be a whole number of "
                               f"seconds, at least 1")

    @property
    def time_limit_text(self) -> str | None:
        """The time limit as people write it ("2h", "1h30m"), or None."""
        return format_duration(self.time_limit_s) if self.time_limit_s else None

    def time_limit_reason(self) -> str:
        """The Failed reason of a component its time limit ended."""
        return f"time limit of {self.time_limit_text} reached"

    @property
    def is_service(self) -> bool:
        return self.kind == "server"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"] = list(self.command) if self.command is not None else None
        data["env"] = dict(self.env)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Launch:
        values = dict(data)
        if values.get("readiness") is not None:
            values["readiness"] = Readiness(**values["readiness"])
        if values.get("command") is not None:
            values["command"] = tuple(values["command"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the cluster says about one component, mapped onto ``ComponentStatus``.

    ``observed_at`` is timezone-aware UTC. ``exit_code`` is set once a process has exited
    (negative: killed by that signal, as in ``subprocess``). ``endpoint_url`` is set for a
    ready service. ``progress`` is what a download (or any job that reports progress)
    last wrote, e.g. ``{"bytes_done": 120_000_000, "bytes_total": 400_000_000}``.
    ``result`` is what a finished job left behind: a registered model
    (``{"model": name, "path": ...}``) or evaluation metrics (``{"metrics": {...}}``).
    """

    component_id: int
    native_name: str
    status: ComponentStatus
    reason: str
    observed_at: datetime
    workload_id: int | None = None
    exit_code: int | None = None
    endpoint_url: str | None = None
    progress: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None

    def same_state(self, other: Observation | None) -> bool:
        """True when nothing a user could see differs (the time aside)."""
        return other is not None and (
            self.status, self.reason, self.exit_code, self.endpoint_url, self.progress, self.result
        ) == (other.status, other.reason, other.exit_code, other.endpoint_url, other.progress, other.result)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one running component uses, sampled at ``sampled_at`` (timezone-aware UTC).

    ``cpu_millicores``: the mean over the interval since the previous sample (the first:
    since the component started); ``memory_bytes``: resident now; ``gpu_utilization``:
    percent (0-100), the mean over its devices; ``gpu_memory_bytes``: used on its devices.
    None: the cluster cannot tell."""

    component_id: int
    sampled_at: datetime
    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    gpu_utilization: float | None = None
    gpu_memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    vendor: str  # nvidia | amd | fake
    model: str
    memory_bytes: int = 0
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    name: str
    cpu_millicores: int
    memory_bytes: int
    gpus: tuple[GpuDevice, ...] = ()
    ephemeral_storage_bytes: int = 0

    def resources(self) -> Resources:
        return Resources(len(self.gpus), self.cpu_millicores, self.memory_bytes, self.ephemeral_storage_bytes)

    @property
    def gpu_vendor(self) -> str | None:
        return self.gpus[0].vendor if self.gpus else None

    @property
    def gpu_model(self) -> str | None:
        return self.gpus[0].model if self.gpus else None


@dataclass(frozen=True, slots=True)
class Capacity:
    nodes: tuple[NodeCapacity, ...]
    # How workloads are kept apart on this cluster, in one line (identity.Identities.notice):
    # shown on the cluster page, so nobody shares a cluster that does not isolate unknowingly.
    isolation: str = ""

    def total(self) -> Resources:
        total = Resources()
        for node in self.nodes:
            total = total + node.resources()
        return total


@dataclass(frozen=True, slots=True)
class Discovered:
    """A workload running on the cluster that no Corral component owns.

    The agent reports these; the control plane records them as Custom workloads of the
    project that owns them (``project``: a namespace, partition or account; None when
    the cluster cannot tell, as on the local cluster).
    """

    native_name: str
    kind: str  # "process" (local), "pod"/"deployment" (kubernetes), "job" (slurm)
    command: str = ""
    pid: int | None = None
    user: str | None = None
    gpu_indices: tuple[int, ...] = ()
    gpu_memory_bytes: int = 0
    started_at: datetime | None = None
    project: str | None = None
    # What it holds, counted against its project's quota: GPUs where the cluster knows
    # no device indices (Slurm), CPU, memory and ephemeral storage where the cluster knows
    # them (0: unknown).
    gpu: int = 0
    cpu_millicores: int = 0
    memory_bytes: int = 0
    ephemeral_storage_bytes: int = 0


def model_inventory(backend: Any) -> list[dict[str, Any]] | None:
    """What the cluster's model stores hold: one dict per model with ``project``, ``name``
    and its manifest's fields (``kind``, ``source``, ``revision``, ``base_model``,
    ``dataset``, ``files``, ``bytes``, ``created_at``, ``workload_id``), from a backend's
    optional ``model_inventory()`` method. None (the default): the backend cannot list its
    store, and the control plane knows its models only from finished components' results."""
    method = getattr(backend, "model_inventory", None)
    return method() if method is not None else None


@runtime_checkable
class Backend(Protocol):
    """What the agent calls. See the module docstring for the contract."""

    kind: str  # "local", "kubernetes", "slurm"

    def capacity(self) -> Capacity:
        """The cluster's nodes and their allocatable resources."""
        ...

    def start(self, launch: Launch) -> None:
        """Create the component (idempotent: a second call with the same component id
        does nothing). Returns at once; progress shows up in ``observe``."""
        ...

    def stop(self, component_id: int, grace_s: float = 30.0) -> None:
        """Remove the component: SIGTERM (or the cluster's equivalent), a hard kill after
        ``grace_s``; Deleted (or DeleteFailed) shows up in ``observe``. Idempotent; an
        unknown id is reported Deleted."""
        ...

    def observe(self) -> list[Observation]:
        """Observations that changed since the previous call. Cheap enough to poll every
        ~100 ms with a thousand components."""
        ...

    def all_observations(self) -> list[Observation]:
        """The current observation of every component the backend knows (resync)."""
        ...

    def discover(self) -> list[Discovered]:
        """Workloads on the cluster that Corral did not start."""
        ...

    def logs(self, component_id: int, tail_lines: int = 100) -> str:
        """The last ``tail_lines`` lines of the component's output (stdout and stderr)."""
        ...

    def follow_logs(self, component_id: int, tail_lines: int = 0, poll_s: float = 0.25,
                    stop: Any = None) -> Iterator[str]:
        """Yield the output as it grows (after the last ``tail_lines`` lines); ends once the
        component has finished and everything was yielded, or when ``stop`` (a
        ``threading.Event``) is set."""
        ...

    def read_output(self, component_id: int, offset: int | None = None, tail_lines: int = 0,
                    limit: int = 1 << 20) -> OutputRead:
        """Without waiting: what the component wrote from byte ``offset`` (None: its last
        ``tail_lines`` lines), at most ``limit`` bytes. For followers that poll instead of
        holding a thread each (the agent's log API)."""
        ...

    def forget(self, component_id: int) -> None:
        """Drop what the backend keeps about a finished (Completed, Failed, Deleted)
        component, logs included; the agent calls it once the control plane has stored the
        final status. Raises ``BackendError`` for a component that has not finished."""
        ...

    def close(self) -> None:
        """Release the backend's resources. Components keep running; a new backend object
        on the same cluster adopts them."""
        ...
