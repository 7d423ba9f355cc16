"""Results on Kubernetes: a job's result file is its container's termination message path;
the message (as the kubelet leaves it in ``state.terminated.message``) becomes the
component's result, validated as on the local cluster, limited to 4 KiB. The round trip
through a cluster is in tests/integration/backends/test_kubernetes_live_results.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import (V1Container, V1ContainerState, V1ContainerStateTerminated, V1ContainerStatus,
                               V1EnvVar, V1JobCondition, V1ObjectMeta, V1Pod, V1PodSpec, V1PodStatus)

from corral.backends.kubernetes.backend import WATCHED, KubernetesBackend
from corral.backends.kubernetes.dryrun import render_workload
from corral.backends.kubernetes.render import pod_templates
from corral.backends.kubernetes.results import (MAX_MESSAGE_BYTES, RESULT_FILE, message_format, pod_result,
                                                result_from_message)
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.kubernetes.states import object_status
from corral.backends.kubernetes.watch import ObjectCache
from corral.domain.results import MAX_METRICS
from corral.domain.statuses import ComponentStatus as S
from tests.unit.kubernetes.test_manifests import SPECS, _spec
from tests.unit.kubernetes.test_observing import LABELS, T, job, put

PYTORCHJOB = frozenset({"pytorchjobs.kubeflow.org"})


@pytest.fixture
def backend() -> Iterator[KubernetesBackend]:
    """As in test_observing: the caches filled by hand, as the watches would (no API server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    made = KubernetesBackend(KubeSettings(), api_client=client.ApiClient(config))
    made._caches = {kind: ObjectCache(kind) for kind in (*WATCHED, "Event")}
    yield made
    made.close()


def containers(spec_name: str, crds: frozenset[str] = frozenset(), nodes: int = 1) -> list[tuple[str, dict]]:
    """(kind, container) of every pod template the workload renders."""
    out = []
    for obj in render_workload(_spec(spec_name), nodes=nodes, crds=crds):
        templates = pod_templates(obj) or ([obj["spec"]["template"]] if obj["kind"] in ("Job", "Deployment") else [])
        out += [(obj["kind"], c) for t in templates for c in t["spec"]["containers"]]
    return out


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or ()}


def test_every_job_writes_its_result_to_its_termination_message() -> None:
    for name in SPECS:
        for kind, container in containers(name):
            if kind == "Deployment":  # services leave no result
                assert "CORRAL_RESULT_FILE" not in env(container) and "terminationMessagePath" not in container
                continue
            assert container["terminationMessagePath"] == RESULT_FILE, name
            assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", name  # failures: the log tail
            if name == "evaluation":  # its bare metrics, as on the local cluster
                assert env(container)["CORRAL_METRICS_FILE"] == RESULT_FILE
                assert "CORRAL_RESULT_FILE" not in env(container) and message_format(container) == "metrics"
            else:
                assert env(container)["CORRAL_RESULT_FILE"] == RESULT_FILE and message_format(container) == "result"


def test_multi_node_pods_and_a_users_own_value_of_the_variable() -> None:
    for crds in (frozenset(), PYTORCHJOB):
        for _, container in containers("training", crds, nodes=3):
            assert message_format(container) == "result"
    spec = {**_spec("custom_command"), "env": {"CORRAL_RESULT_FILE": "/tmp/mine.json"}}
    (job_obj,) = [o for o in render_workload(spec) if o["kind"] == "Job"]
    (container,) = job_obj["spec"]["template"]["spec"]["containers"]
    assert [e["value"] for e in container["env"] if e["name"] == "CORRAL_RESULT_FILE"] == [RESULT_FILE]


def test_a_manifests_own_termination_message_is_not_a_result() -> None:
    assert message_format({"name": "w", "image": "nginx"}) is None
    assert message_format({"name": "w", "env": [{"name": "CORRAL_RESULT_FILE", "value": "/tmp/r.json"}]}) is None


def test_messages_become_results_as_on_the_local_cluster() -> None:
    assert result_from_message(None, "result") is None and result_from_message("", "result") is None
    assert result_from_message('{"metrics": {"mmlu": {"acc": 0.71}, "n": 3}}', "result") == \
        {"metrics": {"mmlu.acc": 0.71, "n": 3}}  # flattened, as normalise_result does for the local backend
    assert result_from_message('{"mmlu": 0.71, "split": "test"}', "metrics") == \
        {"metrics": {"mmlu": 0.71, "split": "test"}}
    assert result_from_message('{"metrics": {"a": 1}, "note": "x"}', "result") == {"metrics": {"a": 1}}
    assert result_from_message("[1, 2]", "result") == {"error": "result refused: it is not a JSON object"}
    assert result_from_message("[1, 2]", "metrics")["error"].startswith("result refused: metrics must be")
    assert result_from_message("done.\n", "result") == {"error": "result refused: it is not JSON"}
    too_many = json.dumps({f"m{i}": i for i in range(MAX_METRICS + 1)})
    assert result_from_message(too_many, "metrics")["error"].startswith(f"result refused: metrics: {MAX_METRICS + 1}")


def test_a_result_past_4_kib_is_an_error_not_a_cut_result() -> None:
    written = json.dumps({"metrics": {f"leaderboard_bbh.task_{i:03d}.acc_norm_stderr": 0.0123456 + i
                                      for i in range(100)}})
    assert "error" not in result_from_message(written, "result")  # fine where the whole file arrives (16 KiB)
    assert len(written) > MAX_MESSAGE_BYTES
    kept = written.encode()[-MAX_MESSAGE_BYTES:].decode()  # what the kubelet keeps: its last 4096 bytes
    (error,) = result_from_message(kept, "result").values()
    assert error.startswith("result refused: larger than 4096 bytes, the most a Kubernetes termination message holds")
    assert result_from_message(written[-2000:], "result") == {"error": "result refused: it is not JSON"}


def pod(code: int, message: str | None, variable: str | None = "CORRAL_RESULT_FILE") -> V1Pod:
    container_env = [V1EnvVar(name=variable, value=RESULT_FILE)] if variable else None
    state = V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=code, message=message, finished_at=T))
    return V1Pod(metadata=V1ObjectMeta(name="w7-job-abc", namespace="corral-vision", labels=LABELS),
                 spec=V1PodSpec(containers=[V1Container(name="main", env=container_env,
                                                        termination_message_path=RESULT_FILE)]),
                 status=V1PodStatus(phase="Succeeded" if code == 0 else "Failed", container_statuses=[
                     V1ContainerStatus(name="main", image="x", image_id="", ready=False, restart_count=0,
                                       state=state)]))


def test_a_pods_result_comes_from_containers_that_completed() -> None:
    assert pod_result(pod(0, '{"metrics": {"loss": 0.25}}')) == {"metrics": {"loss": 0.25}}
    assert pod_result(pod(0, '{"acc": 0.9}', "CORRAL_METRICS_FILE")) == {"metrics": {"acc": 0.9}}
    assert pod_result(pod(0, '{"metrics": {"loss": 0.25}}', None)) is None  # not asked for: not a result
    assert pod_result(pod(1, "Traceback ...\nValueError: no data\n")) is None  # the log tail of a failure
    failed = object_status("Pod", pod(1, "Traceback ...\nValueError: no data\n"))
    assert (failed.status, failed.reason) == (S.FAILED, "failed: container exited with code 1: ValueError: no data")


def test_a_trained_model_and_its_own_result_together(backend: KubernetesBackend) -> None:
    put(backend, "Job", job(V1JobCondition(type="Complete", status="True", last_transition_time=T)))
    put(backend, "Pod", pod(0, '{"metrics": {"loss": 0.25}, "model": "other"}'))
    (done,) = backend._collect({70}, everything=True)
    assert done.status is S.COMPLETED and done.reason == "completed: model tuned registered"
    assert done.result == {"metrics": {"loss": 0.25}, "model": "tuned", "path": "/models/tuned"}  # its annotation wins


def test_a_refused_result_says_so_in_the_reason(backend: KubernetesBackend) -> None:
    evaluation = job(V1JobCondition(type="Complete", status="True", last_transition_time=T))
    evaluation.metadata.annotations = {}  # no model to register
    put(backend, "Job", evaluation)
    put(backend, "Pod", pod(0, "x" * MAX_MESSAGE_BYTES))
    (done,) = backend._collect({70}, everything=True)
    assert done.reason == "completed: its result was refused" and done.exit_code == 0
    assert "larger than 4096 bytes" in done.result["error"]
