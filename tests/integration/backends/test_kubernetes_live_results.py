"""Use over time and results of the Kubernetes backend against a live cluster: set
KUBECONFIG (kind, k3s or a real one; see test_kubernetes_live.py).

    KUBECONFIG=~/.kube/config .venv/bin/pytest tests/integration/backends/test_kubernetes_live_results.py

Skipped here with ``LIVE_KUBERNETES_SKIP`` (the one skip CI allows): no Kubernetes API
server can run on these machines, and no stand-in is a test of one. The pure parts are
tested in tests/unit/kubernetes/test_pod_metrics.py and test_termination_results.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import pytest

from corral.domain.statuses import ComponentStatus as S
from tests.conftest import LIVE_KUBERNETES_SKIP
from tests.integration.backends.test_kubernetes_live import TIMEOUT, kube, run, wait_for  # noqa: F401 - kube: a fixture

pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason=LIVE_KUBERNETES_SKIP)


def metrics_api_answers(kube: Any) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "pods", limit=1)
    except ApiException as exc:
        if exc.status in (404, 503):
            return False
        raise
    return True


def test_usage_comes_from_the_metrics_api(kube: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Busy on one core (held to 250m by its limit) with 96 MiB touched.
    (cid,) = run(kube, 21, {"type": "custom", "image": "python:3.12-slim", "command": [
        "python", "-c", "b = bytearray(96 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\nwhile True: pass"]})
    wait_for(kube, cid, S.RUNNING)
    if not metrics_api_answers(kube):  # no metrics-server on this cluster: nothing, said once
        caplog.set_level(logging.WARNING, logger="corral.backends.kubernetes")
        assert kube.usage() == [] and kube.usage() == []
        said = [r.getMessage() for r in caplog.records if "pod metrics" in r.getMessage()]
        assert len(said) == 1 and "metrics API" in said[0], said
        return
    deadline = time.monotonic() + TIMEOUT  # metrics-server needs a scrape or two of a new pod
    while time.monotonic() < deadline:
        mine = [u for u in kube.usage() if u.component_id == cid]
        if mine and (mine[0].cpu_millicores or 0) > 100 and (mine[0].memory_bytes or 0) > 64 << 20:
            break
        time.sleep(5)
    else:
        raise AssertionError(f"no usage of component {cid} from the metrics API")
    (sample,) = mine
    assert sample.cpu_millicores <= 400  # its 250m limit, and a window's jitter
    assert sample.gpu_utilization is None and sample.gpu_memory_bytes is None
    assert [u for u in kube.usage() if u.component_id == cid and u.sampled_at <= sample.sampled_at] == []
    kube.stop(cid)
    wait_for(kube, cid, S.DELETED)


def test_a_jobs_result_comes_back_through_its_termination_message(kube: Any) -> None:
    result = {"metrics": {"accuracy": 0.75, "harness": {"acc_norm": 0.5}}}
    (custom,) = run(kube, 22, {"type": "custom", "image": "busybox", "command": [
        "sh", "-c", f"echo working; printf '%s' '{json.dumps(result)}' > \"$CORRAL_RESULT_FILE\""]})
    (evaluation,) = run(kube, 23, {"type": "evaluation", "model": "m", "dataset": "d", "image": "busybox",
                                   "command": "printf '%s' '{\"mmlu\": 0.71}' > \"$CORRAL_METRICS_FILE\""})
    done = wait_for(kube, custom, S.COMPLETED)
    assert done.result == {"metrics": {"accuracy": 0.75, "harness.acc_norm": 0.5}}
    assert done.reason == "completed: metrics recorded"
    assert wait_for(kube, evaluation, S.COMPLETED).result == {"metrics": {"mmlu": 0.71}}


def test_a_result_past_4_kib_is_reported_refused(kube: Any) -> None:
    big = "python -c \"import json, os; json.dump({'metrics': {f'task_{i:03d}.acc_norm_stderr': i / 7 " \
          "for i in range(100)}}, open(os.environ['CORRAL_RESULT_FILE'], 'w'))\""
    (cid,) = run(kube, 24, {"type": "custom", "image": "python:3.12-slim", "command": big})
    done = wait_for(kube, cid, S.COMPLETED)
    assert done.reason == "completed: its result was refused"
    assert done.result["error"].startswith("result refused: larger than 4096 bytes")
