"""What Kubernetes objects say, mapped onto Corral's component statuses (statuses.md).

Pure functions of the objects as the official client returns them (``V1Pod``,
``V1Job``, ``V1Deployment``; CRD objects such as PyTorchJob and JobSet as dicts), each
answering a :class:`Seen`: a status, a reason a user can act on, the exit code where a
container ended, and when the state was reached on the cluster.

- a container that cannot pull its image (``ErrImagePull``, ``ImagePullBackOff``) is
  Pending with the image and the registry's message; an invalid image name is Failed;
- ``CrashLoopBackOff`` is Failed with the exit code and the number of restarts (a
  Deployment that recovers turns Running again);
- a pod no node can take (``Unschedulable``) is Pending with the scheduler's message;
- ``OOMKilled`` is Failed, "out of memory", exit code 137; an evicted or preempted pod is
  Failed with the kubelet's message (a Deployment replaces it, and only says so);
- a Job (or pod, PyTorchJob, JobSet) past its ``activeDeadlineSeconds`` (the workload's
  time limit; ``DeadlineExceeded``) is Failed, "time limit of 2h reached";
- a Job is Completed or Failed by its ``Complete``/``Failed`` condition, Pending while
  suspended (a queue such as Kueue holds it) or while its pods wait; a completed pod's
  result is its termination message (``results``);
- a Deployment is Running once a replica is ready, Failed past its progress deadline,
  Pending when the cluster refuses its pods (``ReplicaFailure``, e.g. a ResourceQuota);
- passive objects (Service, ConfigMap, Secret, Ingress, HTTPRoute, PVC, ...) are
  Completed once they exist.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from corral.backends.kubernetes.fields import dig as _get
from corral.backends.kubernetes.results import pod_result
from corral.domain.durations import format_duration
from corral.domain.statuses import ComponentStatus as S

PASSIVE_KINDS = frozenset({"Service", "ConfigMap", "Secret", "Ingress", "HTTPRoute", "GRPCRoute",
                           "PersistentVolumeClaim", "NetworkPolicy", "ServiceAccount", "PodDisruptionBudget",
                           "ReferenceGrant", "Endpoints", "EndpointSlice"})
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "RegistryUnavailable"})
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
_RANK = {S.FAILED: 0, S.PENDING: 1, S.UNKNOWN: 2, S.RUNNING: 3, S.COMPLETED: 4}


@dataclass(frozen=True, slots=True)
class Seen:
    status: S
    reason: str
    exit_code: int | None = None
    at: datetime | None = None
    result: Mapping[str, Any] | None = None




def _short(text: str | None, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _condition(obj: Any, kind: str) -> Any:
    for cond in _get(obj, "status", "conditions") or ():
        if _get(cond, "type") == kind and _get(cond, "status") == "True":
            return cond
    return None


def _condition_false(obj: Any, kind: str) -> Any:
    for cond in _get(obj, "status", "conditions") or ():
        if _get(cond, "type") == kind and _get(cond, "status") == "False":
            return cond
    return None


def _deadline(obj: Any, *path: str) -> int | None:
    """``activeDeadlineSeconds`` under ``path`` (client models name it in snake case)."""
    value = _get(obj, *path, "active_deadline_seconds")
    return value if value is not None else _get(obj, *path, "activeDeadlineSeconds")


def _time_limit_reached(seconds: int, detail: str = "") -> str:
    text = f"time limit of {format_duration(seconds)} reached"
    return f"{text} ({detail})" if detail else text


def _statuses(pod: Any) -> list[Any]:
    status = _get(pod, "status")
    return [*(_get(status, "init_container_statuses") or ()), *(_get(status, "container_statuses") or ())]


def exit_code(state: Any) -> int | None:
    """A container's exit as ``subprocess`` says it: 128+N (the runtime's way of saying
    "killed by signal N") becomes -N."""
    code = _get(state, "exit_code")
    if code is not None and 128 < code < 128 + 65:
        return -(code - 128)
    return code


def _last_line(text: str | None) -> str:
    """The last line of what a container left (FallbackToLogsOnError: the tail of its output)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return _short(lines[-1], 200) if lines else ""


def _ended(state: Any) -> str:
    code = exit_code(state)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        text = f"was killed by {name} (signal {-code})"
    else:
        text = f"exited with code {code}"
    if _get(state, "reason") not in (None, "Error", "Completed"):
        text += f" ({_get(state, 'reason')})"
    message = _last_line(_get(state, "message"))
    return f"{text}: {message}" if message else text


def _not_started(pod: Any, cs: Any, message: str) -> Seen:
    """The container's program could not be run (not in the image, not executable)."""
    containers = _get(pod, "spec", "containers") or ()
    command = next((_get(c, "command") for c in containers if _get(c, "name") == _get(cs, "name")), None)
    program = (command or [None])[0] or _get(cs, "image")
    return Seen(S.FAILED, f"could not start {program}: {_short(message, 200)}", 127)


def _oom(name: str, state: Any) -> Seen:
    return Seen(S.FAILED, f"out of memory (OOMKilled): container {name} was killed at its memory limit",
                exit_code(state) if _get(state, "exit_code") is not None else -9, _get(state, "finished_at"))


_MISSING = ("executable file not found", "no such file or directory")


def pod_problem(pod: Any) -> Seen | None:
    """Why a pod is not doing its work, when something is in the way; None otherwise."""
    status = _get(pod, "status")
    if _get(status, "reason") == "Evicted":
        return Seen(S.FAILED, f"evicted by its node: {_short(_get(status, 'message')) or 'no reason given'}")
    disrupted = _condition(pod, "DisruptionTarget")
    if disrupted is not None and _get(status, "phase") == "Failed":
        return Seen(S.FAILED, f"removed by the cluster ({_get(disrupted, 'reason')}): "
                              f"{_short(_get(disrupted, 'message'))}", at=_get(disrupted, "last_transition_time"))
    for cs in _statuses(pod):
        name, waiting = _get(cs, "name"), _get(cs, "state", "waiting")
        reason = _get(waiting, "reason")
        if reason in PULL_ERRORS:
            return Seen(S.PENDING, f"cannot pull image {_get(cs, 'image')} ({reason}): "
                                   f"{_short(_get(waiting, 'message'), 240) or 'the registry refused it'}")
        if reason == "InvalidImageName":
            return Seen(S.FAILED, f"invalid image name {_get(cs, 'image')}: {_short(_get(waiting, 'message'))}")
        if reason in CONFIG_ERRORS and any(m in (_get(waiting, "message") or "") for m in _MISSING):
            return _not_started(pod, cs, _get(waiting, "message"))
        if reason in CONFIG_ERRORS:
            return Seen(S.PENDING, f"cannot start container {name} ({reason}): {_short(_get(waiting, 'message'))}")
        if reason == "CrashLoopBackOff":
            last = _get(cs, "last_state", "terminated")
            if _get(last, "reason") == "OOMKilled":
                oom = _oom(name, last)
                return Seen(S.FAILED, f"{oom.reason}; restarted {_get(cs, 'restart_count') or 0} times "
                                      f"(CrashLoopBackOff)", oom.exit_code, oom.at)
            return Seen(S.FAILED, f"crashing (CrashLoopBackOff): container {name} {_ended(last)}; restarted "
                                  f"{_get(cs, 'restart_count') or 0} times", exit_code(last),
                        _get(last, "finished_at"))
        terminated = _get(cs, "state", "terminated")
        if _get(terminated, "reason") == "OOMKilled":
            return _oom(name, terminated)
        message = _get(terminated, "message") or ""
        if _get(terminated, "reason") in ("StartError", "ContainerCannotRun") \
                or (_get(terminated, "exit_code") == 128 and any(m in message for m in _MISSING)):
            return _not_started(pod, cs, message)
    unschedulable = _condition_false(pod, "PodScheduled")
    if unschedulable is not None and _get(unschedulable, "reason") == "Unschedulable":
        return Seen(S.PENDING, f"waiting for a node (Unschedulable): {_short(_get(unschedulable, 'message'))}")
    return None


def pod_status(pod: Any) -> Seen:
    problem = pod_problem(pod)
    if problem is not None:
        return problem
    status = _get(pod, "status")
    phase = _get(status, "phase")
    main = [cs for cs in _get(status, "container_statuses") or ()]
    terminated = [_get(cs, "state", "terminated") for cs in main if _get(cs, "state", "terminated") is not None]
    finished = max((t.finished_at for t in terminated if _get(t, "finished_at")), default=None)
    if phase == "Succeeded":
        return Seen(S.COMPLETED, "completed", 0, finished, pod_result(pod))
    if phase == "Failed" and _get(status, "reason") == "DeadlineExceeded" and _deadline(pod, "spec"):
        return Seen(S.FAILED, _time_limit_reached(_deadline(pod, "spec"), "DeadlineExceeded"))
    if phase == "Failed":
        bad = next((t for t in terminated if _get(t, "exit_code")), None)
        if bad is None:
            why = _short(_get(status, "message")) or _get(status, "reason") or "pod failed"
            return Seen(S.FAILED, f"failed: {why}")
        return Seen(S.FAILED, f"failed: container {_ended(bad)}", exit_code(bad), finished)
    if phase == "Running":
        if main and all(_get(cs, "ready") for cs in main):
            return Seen(S.RUNNING, f"running on {_get(pod, 'spec', 'node_name') or 'a node'}")
        return Seen(S.PENDING, "started, waiting for the readiness probe")
    if _get(status, "phase") is None and not main:
        return Seen(S.PENDING, "created, waiting for the scheduler")
    waiting = next((_get(cs, "state", "waiting", "reason") for cs in _statuses(pod)
                    if _get(cs, "state", "waiting", "reason")), None)
    if waiting:
        return Seen(S.PENDING, f"starting ({waiting})")
    if _condition(pod, "PodScheduled") is not None:
        return Seen(S.PENDING, f"starting on {_get(pod, 'spec', 'node_name') or 'a node'}")
    return Seen(S.PENDING, "waiting for the scheduler")


def _worst_pod(pods: Sequence[Any]) -> Seen | None:
    """The pod status most worth telling: a failure, else a wait, else None."""
    seen = sorted((pod_status(p) for p in pods), key=lambda s: _RANK[s.status])
    return seen[0] if seen and seen[0].status in (S.FAILED, S.PENDING) else None


def job_status(job: Any, pods: Sequence[Any] = ()) -> Seen:
    complete = _condition(job, "Complete")
    if complete is not None:
        done = [pod_status(p) for p in pods]
        result = next((s.result for s in done if s.result), None)
        return Seen(S.COMPLETED, "completed", 0, _get(complete, "last_transition_time"), result)
    failed = _condition(job, "Failed")
    if failed is not None:
        cause = next((s for s in (pod_status(p) for p in pods) if s.status is S.FAILED), None)
        why = {"BackoffLimitExceeded": "failed", "DeadlineExceeded": "ran past its deadline",
               "PodFailurePolicy": "failed"}.get(_get(failed, "reason"), f"failed ({_get(failed, 'reason')})")
        detail = cause.reason.removeprefix("failed: ") if cause else _short(_get(failed, "message"))
        if _get(failed, "reason") == "DeadlineExceeded" and _deadline(job, "spec"):
            return Seen(S.FAILED, _time_limit_reached(_deadline(job, "spec"), _short(_get(failed, "message"))
                                                      or "DeadlineExceeded"),
                        cause.exit_code if cause else None, _get(failed, "last_transition_time"))
        return Seen(S.FAILED, f"{why}: {detail}" if detail else why, cause.exit_code if cause else None,
                    _get(failed, "last_transition_time"))
    suspended = _condition(job, "Suspended")
    if suspended is not None or _get(job, "spec", "suspend"):
        return Seen(S.PENDING, "suspended: waiting for the cluster's queue (e.g. Kueue) to admit it")
    return _from_pods(pods, "waiting for the Job's pods to be created")


def _from_pods(pods: Sequence[Any], nothing: str) -> Seen:
    live = [p for p in pods if _get(p, "metadata", "deletion_timestamp") is None] or list(pods)
    if not live:
        return Seen(S.PENDING, nothing)
    running = [p for p in live if pod_status(p).status is S.RUNNING]
    problem = _worst_pod(live)
    if problem is not None and problem.status is S.FAILED:
        return problem
    if running:
        return Seen(S.RUNNING, "running" if len(live) == 1 else f"running ({len(running)} of {len(live)} pods)")
    return problem or Seen(S.PENDING, "starting")


def deployment_status(deployment: Any, pods: Sequence[Any] = ()) -> Seen:
    want = _get(deployment, "spec", "replicas")
    want = 1 if want is None else want
    ready = _get(deployment, "status", "ready_replicas") or 0
    refused = _condition(deployment, "ReplicaFailure")
    live = [p for p in pods if _get(p, "status", "reason") != "Evicted"
            and _get(p, "metadata", "deletion_timestamp") is None]
    problem = _worst_pod(live)
    if ready >= 1 and want:
        text = f"ready: {ready}/{want} replicas"
        if ready < want and problem is not None:
            text += f" (another replica: {problem.reason})"
        return Seen(S.RUNNING, text)
    if refused is not None:
        return Seen(S.PENDING, f"the cluster refused to create its pods: {_short(_get(refused, 'message'))}",
                    at=_get(refused, "last_transition_time"))
    stalled = _condition_false(deployment, "Progressing")
    if stalled is not None and _get(stalled, "reason") == "ProgressDeadlineExceeded":
        detail = f": {problem.reason}" if problem else ""
        return Seen(S.FAILED, f"did not become ready before its progress deadline{detail}",
                    problem.exit_code if problem else None, _get(stalled, "last_transition_time"))
    if want == 0:
        return Seen(S.PENDING, "scaled to 0 replicas")
    if problem is not None:
        return problem
    return Seen(S.PENDING, f"starting: 0/{want} replicas ready")


def crd_status(obj: Mapping[str, Any], pods: Sequence[Any] = ()) -> Seen:
    """PyTorchJob (Kubeflow training operator) and JobSet, by their conditions."""
    kind = obj.get("kind")
    done = "Succeeded" if kind == "PyTorchJob" else "Completed"
    if _condition(obj, done) is not None:
        result = next((s.result for s in (pod_status(p) for p in pods) if s.result), None)
        return Seen(S.COMPLETED, "completed", 0, _get(_condition(obj, done), "lastTransitionTime"), result)
    failed = _condition(obj, "Failed")
    if failed is not None:
        cause = next((s for s in (pod_status(p) for p in pods) if s.status is S.FAILED), None)
        detail = cause.reason.removeprefix("failed: ") if cause else _short(_get(failed, "message"))
        limit = _crd_deadline(obj)
        said = f"{_get(failed, 'reason') or ''} {_get(failed, 'message') or ''}".lower()
        if limit and "deadline" in said:
            return Seen(S.FAILED, _time_limit_reached(limit, _short(_get(failed, "message"))),
                        cause.exit_code if cause else None, _get(failed, "lastTransitionTime"))
        return Seen(S.FAILED, f"failed: {detail}", cause.exit_code if cause else None,
                    _get(failed, "lastTransitionTime"))
    if _condition(obj, "Suspended") is not None:
        return Seen(S.PENDING, "suspended: waiting for the cluster's queue (e.g. Kueue) to admit it")
    return _from_pods(pods, f"waiting for the {kind}'s pods to be created")


def _crd_deadline(obj: Mapping[str, Any]) -> int | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "PyTorchJob":
        return (spec.get("runPolicy") or {}).get("activeDeadlineSeconds")
    jobs = spec.get("replicatedJobs") or [{}]
    return ((jobs[0].get("template") or {}).get("spec") or {}).get("activeDeadlineSeconds")


def passive_status(kind: str) -> Seen:
    return Seen(S.COMPLETED, f"{kind} created")


def object_status(kind: str, obj: Any, pods: Sequence[Any] = ()) -> Seen:
    if kind == "Pod":
        return pod_status(obj)
    if kind == "Job":
        return job_status(obj, pods)
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        return deployment_status(obj, pods)
    if kind in ("PyTorchJob", "JobSet"):
        return crd_status(obj if isinstance(obj, Mapping) else {}, pods)
    if kind in PASSIVE_KINDS:
        return passive_status(kind)
    return Seen(S.COMPLETED, f"{kind} created")  # another kind Corral has no rule for: it exists


def combine(seen: Sequence[Seen]) -> Seen:
    """One component made of several objects: the most telling status (Failed, then
    Pending, then Running; Completed only when every object is)."""
    if not seen:
        return Seen(S.UNKNOWN, "no objects on the cluster")
    return sorted(seen, key=lambda s: _RANK[s.status])[0]
