"""Status mapping, table-tested on objects built with the official client's model classes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes.client import (V1Container, V1ContainerState, V1ContainerStateRunning, V1ContainerStateTerminated,
                               V1ContainerStateWaiting, V1ContainerStatus, V1Deployment, V1DeploymentCondition,
                               V1DeploymentSpec, V1DeploymentStatus, V1EnvVar, V1Job, V1JobCondition, V1JobSpec,
                               V1JobStatus, V1LabelSelector, V1ObjectMeta, V1Pod, V1PodCondition, V1PodSpec,
                               V1PodStatus, V1PodTemplateSpec)

from corral.backends.kubernetes.states import Seen, combine, object_status, pod_status
from corral.domain.statuses import ComponentStatus as S

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def cs(state: V1ContainerState, ready: bool = False, restarts: int = 0, last: V1ContainerState | None = None,
       image: str = "ghcr.io/acme/train:1") -> V1ContainerStatus:
    return V1ContainerStatus(name="main", image=image, image_id="", ready=ready, restart_count=restarts, state=state,
                             last_state=last)


def waiting(reason: str, message: str = "") -> V1ContainerState:
    return V1ContainerState(waiting=V1ContainerStateWaiting(reason=reason, message=message))


def ended(code: int, reason: str = "Error", message: str | None = None) -> V1ContainerState:
    return V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=code, reason=reason, message=message,
                                                                  finished_at=T))


RUNNING = V1ContainerState(running=V1ContainerStateRunning(started_at=T))


def pod(phase: str = "Pending", statuses: list[V1ContainerStatus] | None = None,
        conditions: list[V1PodCondition] | None = None, reason: str | None = None, message: str | None = None,
        name: str = "p") -> V1Pod:
    return V1Pod(metadata=V1ObjectMeta(name=name, namespace="corral-vision", creation_timestamp=T),
                 spec=V1PodSpec(containers=[V1Container(name="main", image="x", command=["no-such-program", "a"])],
                                node_name="gpu-1"),
                 status=V1PodStatus(phase=phase, container_statuses=statuses, conditions=conditions, reason=reason,
                                    message=message))


UNSCHEDULABLE = V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable",
                               message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")

POD_CASES = [
    ("image pull error", pod(statuses=[cs(waiting("ErrImagePull", "manifest unknown"))]),
     S.PENDING, "cannot pull image ghcr.io/acme/train:1 (ErrImagePull): manifest unknown", None),
    ("image pull back-off", pod(statuses=[cs(waiting("ImagePullBackOff", 'Back-off pulling image "x"'))]),
     S.PENDING, "cannot pull image ghcr.io/acme/train:1 (ImagePullBackOff): Back-off pulling image \"x\"", None),
    ("invalid image", pod(statuses=[cs(waiting("InvalidImageName", "couldn't parse"))]),
     S.FAILED, "invalid image name ghcr.io/acme/train:1: couldn't parse", None),
    ("crash loop", pod("Running", [cs(waiting("CrashLoopBackOff", "back-off 40s"), restarts=4, last=ended(3))]),
     S.FAILED, "crashing (CrashLoopBackOff): container main exited with code 3; restarted 4 times", 3),
    ("crash loop out of memory", pod("Running", [cs(waiting("CrashLoopBackOff"), restarts=2,
                                                   last=ended(137, "OOMKilled"))]),
     S.FAILED, "out of memory (OOMKilled): container main was killed at its memory limit; restarted 2 times "
               "(CrashLoopBackOff)", -9),
    ("unschedulable", pod(conditions=[UNSCHEDULABLE]),
     S.PENDING, "waiting for a node (Unschedulable): 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", None),
    ("out of memory", pod("Failed", [cs(ended(137, "OOMKilled"))]),
     S.FAILED, "out of memory (OOMKilled): container main was killed at its memory limit", -9),
    ("killed by a signal", pod("Failed", [cs(ended(137, "Error"))]),
     S.FAILED, "failed: container was killed by SIGKILL (signal 9)", -9),
    ("program not in the image", pod("Failed", [cs(ended(128, "StartError", 'failed to create containerd task: exec: '
                                                  '"no-such-program": executable file not found in $PATH'))]),
     S.FAILED, 'could not start no-such-program: failed to create containerd task: exec: "no-such-program": '
               'executable file not found in $PATH', 127),
    ("program not found before start", pod(statuses=[cs(waiting("CreateContainerError", 'exec: "nope": executable '
                                                                 'file not found in $PATH'))]),
     S.FAILED, 'could not start no-such-program: exec: "nope": executable file not found in $PATH', 127),
    ("its last output line says why", pod("Failed", [cs(ended(3, "Error", "starting\nloading data\nabout to fail\n"))]),
     S.FAILED, "failed: container exited with code 3: about to fail", 3),
    ("evicted", pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
     S.FAILED, "evicted by its node: The node was low on resource: memory.", None),
    ("preempted", pod("Failed", conditions=[V1PodCondition(type="DisruptionTarget", status="True",
                                                           reason="PreemptionByScheduler",
                                                           message="preempted by a higher-priority pod")]),
     S.FAILED, "removed by the cluster (PreemptionByScheduler): preempted by a higher-priority pod", None),
    ("missing secret", pod(statuses=[cs(waiting("CreateContainerConfigError", 'secret "w1-job-env" not found'))]),
     S.PENDING, "cannot start container main (CreateContainerConfigError): secret \"w1-job-env\" not found", None),
    ("creating", pod(statuses=[cs(waiting("ContainerCreating"))]), S.PENDING, "starting (ContainerCreating)", None),
    ("running", pod("Running", [cs(RUNNING, ready=True)]), S.RUNNING, "running on gpu-1", None),
    ("not ready yet", pod("Running", [cs(RUNNING, ready=False)]),
     S.PENDING, "started, waiting for the readiness probe", None),
    ("succeeded", pod("Succeeded", [cs(ended(0, "Completed"))]), S.COMPLETED, "completed", 0),
    ("failed", pod("Failed", [cs(ended(2, "Error", "Traceback: boom"))]),
     S.FAILED, "failed: container exited with code 2: Traceback: boom", 2),
]


@pytest.mark.parametrize(("case", "obj", "status", "reason", "exit_code"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pods(case: str, obj: V1Pod, status: S, reason: str, exit_code: int | None) -> None:
    seen = pod_status(obj)
    assert (seen.status, seen.reason, seen.exit_code) == (status, reason, exit_code)


def job(*conditions: V1JobCondition, suspend: bool = False) -> V1Job:
    template = V1PodTemplateSpec(spec=V1PodSpec(containers=[V1Container(name="main", image="x")]))
    return V1Job(metadata=V1ObjectMeta(name="w1-job", namespace="corral-vision"),
                 spec=V1JobSpec(template=template, suspend=suspend),
                 status=V1JobStatus(conditions=list(conditions) or None))


def cond(kind: str, reason: str | None = None, message: str | None = None) -> V1JobCondition:
    return V1JobCondition(type=kind, status="True", reason=reason, message=message, last_transition_time=T)


JOB_CASES = [
    ("complete", job(cond("Complete")), [pod("Succeeded", [cs(ended(0, "Completed"))])], S.COMPLETED, "completed", 0),
    ("failed with exit code", job(cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff "
                                                                         "limit")),
     [pod("Failed", [cs(ended(1, "Error", "ValueError: bad"))])],
     S.FAILED, "failed: container exited with code 1: ValueError: bad", 1),
    ("failed out of memory", job(cond("Failed", "BackoffLimitExceeded")),
     [pod("Failed", [cs(ended(137, "OOMKilled"))])],
     S.FAILED, "failed: out of memory (OOMKilled): container main was killed at its memory limit", -9),
    ("failed evicted", job(cond("Failed", "BackoffLimitExceeded")),
     [pod("Failed", reason="Evicted", message="The node had condition: [DiskPressure].")],
     S.FAILED, "failed: evicted by its node: The node had condition: [DiskPressure].", None),
    ("deadline", job(cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")), [],
     S.FAILED, "ran past its deadline: Job was active longer than specified deadline", None),
    ("suspended by a queue", job(cond("Suspended", "JobSuspended")), [],
     S.PENDING, "suspended: waiting for the cluster's queue (e.g. Kueue) to admit it", None),
    ("suspended in spec", job(suspend=True), [], S.PENDING,
     "suspended: waiting for the cluster's queue (e.g. Kueue) to admit it", None),
    ("no pods yet", job(), [], S.PENDING, "waiting for the Job's pods to be created", None),
    ("pod unschedulable", job(), [pod(conditions=[UNSCHEDULABLE])], S.PENDING,
     "waiting for a node (Unschedulable): 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", None),
    ("pod pulling fails", job(), [pod(statuses=[cs(waiting("ImagePullBackOff", "not found"))])], S.PENDING,
     "cannot pull image ghcr.io/acme/train:1 (ImagePullBackOff): not found", None),
    ("running", job(), [pod("Running", [cs(RUNNING, ready=True)])], S.RUNNING, "running", None),
    ("multi-node running", job(), [pod("Running", [cs(RUNNING, ready=True)], name=f"p{i}") for i in range(3)],
     S.RUNNING, "running (3 of 3 pods)", None),
]


@pytest.mark.parametrize(("case", "obj", "pods", "status", "reason", "exit_code"), JOB_CASES,
                         ids=[c[0] for c in JOB_CASES])
def test_jobs(case: str, obj: V1Job, pods: list[V1Pod], status: S, reason: str, exit_code: int | None) -> None:
    seen = object_status("Job", obj, pods)
    assert (seen.status, seen.reason, seen.exit_code) == (status, reason, exit_code)


def test_evaluation_metrics_come_from_the_termination_message() -> None:
    done = pod("Succeeded", [cs(ended(0, "Completed", '{"mmlu": 0.71}'))])
    done.spec.containers[0].env = [V1EnvVar(name="CORRAL_METRICS_FILE", value="/dev/termination-log")]  # as rendered
    assert object_status("Job", job(cond("Complete")), [done]).result == {"metrics": {"mmlu": 0.71}}
    assert object_status("Job", job(cond("Complete")), [done]).at == T  # when it happened, not when seen


def deployment(replicas: int, ready: int | None, *conditions: V1DeploymentCondition) -> V1Deployment:
    template = V1PodTemplateSpec(spec=V1PodSpec(containers=[V1Container(name="main", image="x")]))
    return V1Deployment(metadata=V1ObjectMeta(name="w1-server", namespace="corral-vision"),
                        spec=V1DeploymentSpec(replicas=replicas, selector=V1LabelSelector(), template=template),
                        status=V1DeploymentStatus(ready_replicas=ready, conditions=list(conditions) or None))


def dcond(kind: str, status: str, reason: str, message: str = "") -> V1DeploymentCondition:
    return V1DeploymentCondition(type=kind, status=status, reason=reason, message=message, last_transition_time=T)


READY = pod("Running", [cs(RUNNING, ready=True)])
DEPLOYMENT_CASES = [
    ("available", deployment(2, 2, dcond("Available", "True", "MinimumReplicasAvailable")), [READY, READY],
     S.RUNNING, "ready: 2/2 replicas"),
    ("scaling up stays running", deployment(2, 1, dcond("Progressing", "True", "ReplicaSetUpdated")),
     [READY, pod(conditions=[UNSCHEDULABLE])], S.RUNNING,
     "ready: 1/2 replicas (another replica: waiting for a node (Unschedulable): 0/4 nodes are available: 4 "
     "Insufficient nvidia.com/gpu.)"),
    ("progressing", deployment(1, None, dcond("Progressing", "True", "ReplicaSetUpdated")),
     [pod("Running", [cs(RUNNING)])], S.PENDING, "started, waiting for the readiness probe"),
    ("crash loop", deployment(1, None), [pod("Running", [cs(waiting("CrashLoopBackOff"), restarts=6, last=ended(1))])],
     S.FAILED, "crashing (CrashLoopBackOff): container main exited with code 1; restarted 6 times"),
    ("image pull", deployment(1, 0), [pod(statuses=[cs(waiting("ErrImagePull", "denied"))])], S.PENDING,
     "cannot pull image ghcr.io/acme/train:1 (ErrImagePull): denied"),
    ("deadline exceeded", deployment(1, 0, dcond("Progressing", "False", "ProgressDeadlineExceeded",
                                                 'ReplicaSet "w1" has timed out progressing.')),
     [pod(conditions=[UNSCHEDULABLE])], S.FAILED,
     "did not become ready before its progress deadline: waiting for a node (Unschedulable): 0/4 nodes are "
     "available: 4 Insufficient nvidia.com/gpu."),
    ("refused by a ResourceQuota", deployment(1, 0, dcond("ReplicaFailure", "True", "FailedCreate",
                                                          'pods "w1-abc" is forbidden: exceeded quota: gpus')), [],
     S.PENDING, 'the cluster refused to create its pods: pods "w1-abc" is forbidden: exceeded quota: gpus'),
    ("evicted replica replaced", deployment(1, 1), [pod("Failed", reason="Evicted", message="low memory"), READY],
     S.RUNNING, "ready: 1/1 replicas"),
    ("no pods yet", deployment(1, None), [], S.PENDING, "starting: 0/1 replicas ready"),
]


@pytest.mark.parametrize(("case", "obj", "pods", "status", "reason"), DEPLOYMENT_CASES,
                         ids=[c[0] for c in DEPLOYMENT_CASES])
def test_deployments(case: str, obj: V1Deployment, pods: list[V1Pod], status: S, reason: str) -> None:
    seen = object_status("Deployment", obj, pods)
    assert (seen.status, seen.reason) == (status, reason)


@pytest.mark.parametrize("kind", ["Service", "ConfigMap", "Ingress", "HTTPRoute", "PersistentVolumeClaim", "Secret"])
def test_passive_objects_are_completed_once_created(kind: str) -> None:
    assert object_status(kind, {"metadata": {"name": "x"}}) == Seen(S.COMPLETED, f"{kind} created")


@pytest.mark.parametrize(("obj", "status", "reason"), [
    ({"kind": "PyTorchJob", "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}, S.COMPLETED,
     "completed"),
    ({"kind": "PyTorchJob", "status": {"conditions": [{"type": "Failed", "status": "True",
                                                       "message": "PyTorchJob w1-job has failed"}]}},
     S.FAILED, "failed: PyTorchJob w1-job has failed"),
    ({"kind": "JobSet", "status": {"conditions": [{"type": "Completed", "status": "True"}]}}, S.COMPLETED,
     "completed"),
    ({"kind": "JobSet", "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}, S.PENDING,
     "suspended: waiting for the cluster's queue (e.g. Kueue) to admit it"),
    ({"kind": "JobSet", "status": {}}, S.PENDING, "waiting for the JobSet's pods to be created"),
])
def test_operator_jobs(obj: dict, status: S, reason: str) -> None:
    seen = object_status(obj["kind"], obj, [])
    assert (seen.status, seen.reason) == (status, reason)


def test_a_component_of_several_objects_shows_the_most_telling_status() -> None:
    done, running, failed = Seen(S.COMPLETED, "Service created"), Seen(S.RUNNING, "ready"), Seen(S.FAILED, "boom")
    assert combine([done, running]).status is S.RUNNING
    assert combine([done, done]).status is S.COMPLETED
    assert combine([running, failed, done]) == failed
    assert combine([]).status is S.UNKNOWN
