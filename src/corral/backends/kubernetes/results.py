"""A finished job's result on Kubernetes: the pod's termination message.

Locally a workload writes its result (a JSON object: ``{"metrics": {...}}``, a model
entry) to the file ``$CORRAL_RESULT_FILE`` names; an evaluation writes its bare metrics
to ``$CORRAL_METRICS_FILE``. On Kubernetes both name the container's
``terminationMessagePath`` (``RESULT_FILE``): the kubelet copies that file into the
container's ``state.terminated.message`` when it ends, so the result reaches the agent
through the API server, with no volume to read and no exec into a pod. A batch container
gets exactly one of the two variables (evaluation: the metrics file, as the local cluster
gives it; every other job: the result file), and its environment in the pod spec says
which the message is, so a pod adopted after an agent restart is read the same way and
a termination message Corral did not ask for (a Custom manifest's) is never a result.

The result goes through ``normalise_result``, the validation the local backend's results
get (the agent applies it again before sending). One limit is Kubernetes' own: the
kubelet keeps at most the last 4096 bytes of a termination message file
(``MAX_MESSAGE_BYTES``), so a result is limited to 4 KiB on Kubernetes (16 KiB elsewhere,
``MAX_RESULT_BYTES``). A larger one arrives cut (not JSON any more, 4096 bytes long): it
is reported as the result's error ("result refused: larger than 4096 bytes ..."), and the
Completed reason says the result was refused; never a silently shortened result.

The policy stays ``FallbackToLogsOnError``: a container that fails without writing the
file gets the tail of its output as its message (the Failed reason's last line). A
result is read from containers that completed (exit code 0) only.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from corral.backends.kubernetes.fields import dig as _get
from corral.domain.results import normalise_result

RESULT_FILE = "/dev/termination-log"  # the container's terminationMessagePath
ENV_RESULT_FILE = "CORRAL_RESULT_FILE"  # as the local backend names it (backends/local/files.py)
ENV_METRICS_FILE = "CORRAL_METRICS_FILE"  # an evaluation's bare metrics (backends/recipes.py)
# The kubelet keeps at most this many bytes (the file's last ones) of a container's
# termination message file (kubelet: MaxContainerTerminationMessageLength, 4 KiB).
MAX_MESSAGE_BYTES = 4096
TOO_LARGE = (f"result refused: larger than {MAX_MESSAGE_BYTES} bytes, the most a Kubernetes termination "
             f"message holds (the kubelet cut it); write a smaller result (at most 4 KiB on Kubernetes)")

Format = Literal["result", "metrics"]




def result_from_message(message: str | None, kind: Format) -> dict[str, Any] | None:
    """The result a completed container left in its termination ``message``: None when it
    wrote nothing; ``{"error": ...}`` when what it wrote is not a JSON object or was cut
    at the kubelet's 4 KiB; else the normalised result (``kind="metrics"``: the message is
    the metrics themselves, as an evaluation writes them)."""
    if message is None or not message.strip():
        return None
    try:
        value = json.loads(message)
    except ValueError:
        if len(message.encode()) >= MAX_MESSAGE_BYTES:
            return {"error": TOO_LARGE}
        return {"error": "result refused: it is not JSON"}
    if kind == "metrics":
        if not isinstance(value, dict):  # normalise_result words it ("metrics must be a JSON object ...")
            return normalise_result({"metrics": value})
        value = {"metrics": value}
    return normalise_result(value)


def message_format(container: Any) -> Format | None:
    """What a container's termination message is, from its spec (a client model or a
    dict): "metrics" or "result" where its environment points ``CORRAL_METRICS_FILE`` or
    ``CORRAL_RESULT_FILE`` at its termination message path; None otherwise."""
    path = _get(container, "termination_message_path") or _get(container, "terminationMessagePath") or RESULT_FILE
    for var in _get(container, "env") or ():
        if _get(var, "value") != path:
            continue
        if _get(var, "name") == ENV_METRICS_FILE:
            return "metrics"
        if _get(var, "name") == ENV_RESULT_FILE:
            return "result"
    return None


def pod_result(pod: Any) -> dict[str, Any] | None:
    """The result of a pod's containers that completed (exit code 0) and were asked for
    one; the first found."""
    containers = {_get(c, "name"): c for c in _get(pod, "spec", "containers") or ()}
    for cs in _get(pod, "status", "container_statuses") or ():
        terminated = _get(cs, "state", "terminated")
        if terminated is None or _get(terminated, "exit_code") != 0:
            continue
        kind = message_format(containers.get(_get(cs, "name")))
        if kind is not None:
            found = result_from_message(_get(terminated, "message"), kind)
            if found is not None:
                return found
    return None
