"""From what the watches hold to the observations the agent gets: the backend's caches
filled with official model objects (as the watch streams deliver them), no API server."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from kubernetes import client
from kubernetes.client import (CoreV1Event, V1Container, V1ContainerState, V1ContainerStateTerminated,
                               V1ContainerStatus, V1Job,
                               V1JobCondition, V1JobSpec, V1JobStatus, V1ObjectMeta, V1Pod, V1PodSpec, V1PodStatus,
                               V1ObjectReference, V1PodTemplateSpec, V1Secret)

from corral.backends.base import BackendError
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.backend import API_VERSIONS, WATCHED, KubernetesBackend
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.kubernetes.watch import ObjectCache
from corral.domain.statuses import ComponentStatus as S

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LABELS = L.labels("vision", 7, 70, "training", "job")


@pytest.fixture
def backend():  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    made = KubernetesBackend(KubeSettings(), api_client=client.ApiClient(config))
    made._caches = {kind: ObjectCache(kind) for kind in (*WATCHED, "Event")}  # what the watches would hold
    yield made
    made.close()


def job(*conditions: V1JobCondition) -> V1Job:
    return V1Job(metadata=V1ObjectMeta(name="w7-job", namespace="corral-vision", labels=LABELS,
                                       annotations={"corral.dev/result-model": "tuned"}),
                 spec=V1JobSpec(template=V1PodTemplateSpec(spec=V1PodSpec(containers=[V1Container(name="main")]))),
                 status=V1JobStatus(conditions=list(conditions) or None))


def pod(phase: str, code: int | None = None) -> V1Pod:
    state = V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=code, finished_at=T)) \
        if code is not None else V1ContainerState()
    return V1Pod(metadata=V1ObjectMeta(name="w7-job-abc", namespace="corral-vision", labels=LABELS),
                 spec=V1PodSpec(containers=[V1Container(name="main")]),
                 status=V1PodStatus(phase=phase, container_statuses=[V1ContainerStatus(
                     name="main", image="x", image_id="", ready=phase == "Running", restart_count=0, state=state)]))


def put(backend: KubernetesBackend, kind: str, obj: object, event: str = "ADDED") -> None:
    backend._on_change([backend._caches[kind].apply(event, obj)])


def test_a_secret_alone_says_nothing_of_its_job(backend: KubernetesBackend) -> None:
    backend._records[70] = backend._record_type(7, "vision-w7-job", expect_active=True)
    put(backend, "Secret", V1Secret(metadata=V1ObjectMeta(name="w7-job-env", namespace="corral-vision",
                                                          labels=LABELS)))
    (first,) = backend._collect({70}, everything=False)
    assert (first.status, first.reason) == (S.PENDING, "created, waiting for the cluster to report it")
    put(backend, "Job", job())
    put(backend, "Pod", pod("Running"))
    (running,) = backend._collect(set(backend._dirty), everything=False)
    assert running.status is S.RUNNING and running.native_name == "vision-w7-job"
    assert backend._collect({70}, everything=False) == []  # only changes
    put(backend, "Job", job(V1JobCondition(type="Complete", status="True", last_transition_time=T)), "MODIFIED")
    put(backend, "Pod", pod("Succeeded", 0), "MODIFIED")
    (done,) = backend._collect({70}, everything=False)
    assert (done.status, done.exit_code, done.observed_at) == (S.COMPLETED, 0, T)
    assert done.result == {"model": "tuned", "path": "/models/tuned"}


def test_adopted_after_a_restart_and_deleted_once_gone(backend: KubernetesBackend) -> None:
    put(backend, "Job", job())
    put(backend, "Pod", pod("Running"))
    (adopted,) = backend._collect({70}, everything=True)
    assert (adopted.status, adopted.native_name, adopted.workload_id) == (S.RUNNING, "vision-w7-job", 7)
    backend._records[70].stop_deadline = 10**12  # stop() asked (its API calls aside)
    put(backend, "Pod", pod("Running"), "DELETED")
    put(backend, "Job", job(), "DELETED")
    (gone,) = backend._collect({70}, everything=False)
    assert (gone.status, gone.reason) == (S.DELETED, "deleted")
    put(backend, "Job", job())  # whatever comes later, Deleted is final
    assert backend._collect({70}, everything=True) == []
    with pytest.raises(BackendError):
        backend._last[71] = adopted.__class__(71, "x", S.RUNNING, "running", T)
        backend.forget(71)


def test_objects_that_outlive_their_deletion_are_delete_failed(backend: KubernetesBackend) -> None:
    put(backend, "Job", job())
    backend._collect({70}, everything=True)
    backend._records[70].stop_deadline = 0  # long past
    (stuck,) = backend._collect({70}, everything=False)
    assert stuck.status is S.DELETE_FAILED and "still on the cluster" in stuck.reason and "Job" in stuck.reason


def test_unreachable_keeps_the_last_status_with_a_reason(backend: KubernetesBackend) -> None:
    put(backend, "Job", job())
    put(backend, "Pod", pod("Running"))
    backend._collect({70}, everything=True)
    backend._mark_down(OSError("connection refused"))
    (kept,) = backend._collect(set(backend._dirty), everything=False)
    assert kept.status is S.RUNNING and "(cluster unreachable since" in kept.reason
    assert "connection refused" in kept.reason
    assert backend._collect({70}, everything=False) == []  # said once
    backend._mark_up()
    (back,) = backend._collect(set(backend._dirty), everything=False)
    assert back.status is S.RUNNING and "unreachable" not in back.reason


def test_every_watched_kind_has_its_api_version() -> None:
    assert set(API_VERSIONS) == set(WATCHED)


def test_pods_refused_to_a_job_show_as_its_reason(backend: KubernetesBackend) -> None:
    put(backend, "Job", job())
    (waiting,) = backend._collect({70}, everything=True)
    assert waiting.reason == "waiting for the Job's pods to be created"
    backend._dirty.clear()
    put(backend, "Event", CoreV1Event(
        metadata=V1ObjectMeta(name="w7-job.1", namespace="corral-vision"), reason="FailedCreate",
        message='Error creating: pods "w7-job-x" is forbidden: exceeded quota: gpu, requested: '
                'requests.nvidia.com/gpu=2, used: requests.nvidia.com/gpu=7, limited: requests.nvidia.com/gpu=8',
        involved_object=V1ObjectReference(kind="Job", namespace="corral-vision", name="w7-job")))
    assert backend._dirty == {70}  # the event names our Job: its component is looked at again
    (refused,) = backend._collect({70}, everything=False)
    assert refused.status is S.PENDING
    assert refused.reason.startswith("the cluster refused to create its pods: Error creating: pods \"w7-job-x\" is "
                                     "forbidden: exceeded quota: gpu")


def test_a_program_missing_from_the_image_says_what_to_install(backend: KubernetesBackend) -> None:
    backend._records[70] = backend._record_type(7, "vision-w7-job", expect_active=True,
                                                missing_hint="vllm is not installed: use an image with vllm")
    put(backend, "Job", job(V1JobCondition(type="Failed", status="True", reason="BackoffLimitExceeded",
                                           last_transition_time=T)))
    broken = pod("Failed", 128)
    broken.spec.containers[0].command = ["vllm", "serve"]
    broken.status.container_statuses[0].state.terminated.reason = "StartError"
    broken.status.container_statuses[0].state.terminated.message = 'exec: "vllm": executable file not found in $PATH'
    put(backend, "Pod", broken)
    (failed,) = backend._collect({70}, everything=False)
    assert failed.status is S.FAILED and failed.exit_code == 127
    assert failed.reason == ('failed: could not start vllm: exec: "vllm": executable file not found in $PATH; '
                             'vllm is not installed: use an image with vllm')
