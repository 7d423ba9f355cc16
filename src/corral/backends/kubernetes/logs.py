"""Component output through the pods' log API (``GET .../pods/<name>/log``).

A component's output is its newest pod's (for a multi-node job, the first node's, rank 0)
main container's log; ``follow`` streams it (``follow=true``) until the container ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from corral.backends.base import OutputRead
from corral.backends.kubernetes.states import _get
from corral.domain.statuses import ComponentStatus as S

_DONE = (S.COMPLETED, S.FAILED, S.DELETED, S.DELETE_FAILED)


def main_pod(pods: list[Any]) -> Any:
    """The pod whose output is the component's: rank 0 of an indexed job, else the newest
    pod that has started (a Deployment's replacement), else the newest."""
    if not pods:
        return None

    def started(pod: Any) -> bool:
        return _get(pod, "status", "phase") in ("Running", "Succeeded", "Failed")

    ranked = [p for p in pods if (_get(p, "metadata", "annotations") or {})
              .get("batch.kubernetes.io/job-completion-index") == "0"]
    if ranked:
        return ranked[0]
    newest = sorted(pods, key=lambda p: (started(p), _get(p, "metadata", "creation_timestamp") or 0))
    return newest[-1]


def container_of(pod: Any) -> str | None:
    containers = _get(pod, "spec", "containers") or ()
    names = [_get(c, "name") for c in containers]
    for preferred in ("main", "pytorch"):
        if preferred in names:
            return preferred
    return names[0] if names else None


def read(core: Any, pod: Any, tail_lines: int | None = None, limit_bytes: int | None = None) -> str:
    kwargs: dict[str, Any] = {"container": container_of(pod)}
    if tail_lines:
        kwargs["tail_lines"] = tail_lines
    if limit_bytes:
        kwargs["limit_bytes"] = limit_bytes
    return core.read_namespaced_pod_log(_get(pod, "metadata", "name"), _get(pod, "metadata", "namespace"),
                                        **kwargs) or ""


def follow(core: Any, pod: Any, tail_lines: int, stop: threading.Event | None) -> Iterator[str]:
    kwargs: dict[str, Any] = {"container": container_of(pod), "follow": True, "_preload_content": False,
                              "tail_lines": max(0, tail_lines)}  # 0: only what comes from now on
    answer = core.read_namespaced_pod_log(_get(pod, "metadata", "name"), _get(pod, "metadata", "namespace"),
                                          **kwargs)
    try:
        pending = b""
        for chunk in answer.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace") + "\n"
            if stop is not None and stop.is_set():
                return
        if pending:
            yield pending.decode(errors="replace")
    finally:
        answer.release_conn()


class Output:
    """The backend's output methods (a mixin): the pods come from the watch's cache."""

    core: Any
    _last: dict[int, Any]
    _call: Any
    _ensure_watching: Any
    _objects_of: Any

    # -- output -------------------------------------------------------------------------

    def _pod(self, component_id: int) -> Any:
        self._ensure_watching()
        pods = [obj for kind, obj in self._objects_of(component_id) if kind == "Pod"]
        return main_pod(pods)

    def logs(self, component_id: int, tail_lines: int = 100) -> str:
        pod = self._pod(component_id)
        if pod is None:
            return ""
        return self._call("reading logs", read, self.core, pod, tail_lines=tail_lines)

    def follow_logs(self, component_id: int, tail_lines: int = 0, poll_s: float = 0.25,
                    stop: Any = None) -> Iterator[str]:
        while True:  # wait (on the watch's cache, no API calls) for a pod that has started
            pod = self._pod(component_id)
            status = self._last.get(component_id)
            if pod is not None and pod.status.phase in ("Running", "Succeeded", "Failed"):
                break
            if (status is not None and status.status in _DONE) or (stop is not None and stop.is_set()):
                return
            time.sleep(poll_s)
        yield from self._call("following logs", follow, self.core, pod, tail_lines, stop)

    def read_output(self, component_id: int, offset: int | None = None, tail_lines: int = 0,
                    limit: int = 1 << 20) -> OutputRead:
        pod = self._pod(component_id)
        status = self._last.get(component_id)
        finished = status is not None and status.status in _DONE
        if pod is None:
            return OutputRead(b"", offset or 0, finished)
        if offset is None:
            text = self._call("reading logs", read, self.core, pod, tail_lines=tail_lines or None)
            data = text.encode()
            whole = self._call("reading logs", read, self.core, pod).encode()
            return OutputRead(data[-limit:], len(whole), False)
        whole = self._call("reading logs", read, self.core, pod, limit_bytes=offset + limit).encode()
        data = whole[offset: offset + limit]
        return OutputRead(data, offset + len(data), finished and len(data) < limit)

