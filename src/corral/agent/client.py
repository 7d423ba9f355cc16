"""The agent's side of the agent protocol (HTTP, the cluster's token as bearer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from corral.backends.base import Capacity


class AgentClient:
    def __init__(self, server: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=server.rstrip("/") + "/api/v1",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def heartbeat(self, capacity: Capacity | None, *, agent_url: str | None, version: str) -> dict[str, Any]:
        body: dict[str, Any] = {"agent_version": version}
        if capacity is not None:
            total = capacity.total()
            body["capacity"] = {"gpu": total.gpu, "cpu": f"{total.cpu}m", "memory": total.memory,
                                "ephemeral_storage": total.ephemeral_storage}
            body["nodes"] = [{"name": n.name, "capacity": {
                "gpu": len(n.gpus), "cpu": f"{n.cpu_millicores}m", "memory": n.memory_bytes,
                "ephemeral_storage": n.ephemeral_storage_bytes}, "gpu_vendor": n.gpu_vendor, "gpu_model": n.gpu_model}
                for n in capacity.nodes]
            if capacity.isolation:
                body["isolation"] = capacity.isolation
        if agent_url:
            body["agent_url"] = agent_url
        return self._post("/agent/heartbeat", body)

    def work(self, after: int | None, wait: float = 0.0) -> dict[str, Any]:
        """The next batch of work; with ``wait`` (and a cursor) the server holds the request
        until there is some or ``wait`` seconds have passed (its answer then says ``wait``)."""
        params: dict[str, Any] = {} if after is None else {"after": after}
        timeout = self._http.timeout
        if wait > 0 and after is not None:
            params["wait"] = wait
            timeout = httpx.Timeout(self._http.timeout.connect, read=wait + 30.0, write=30.0, pool=30.0)
        response = self._http.get("/agent/work", params=params, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def found(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._post("/agent/found", {"items": items})["items"]

    def report(self, updates: list[dict[str, Any]]) -> dict[str, Any]:
        return self._post("/agent/component-statuses", {"updates": updates})

    def usage(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """What running components use (``corral.agent.usage``)."""
        return self._post("/agent/usage", {"samples": samples})

    def models(self, entries: list[dict[str, Any]], after: tuple[str, str] | None = None,
               through: tuple[str, str] | None = None) -> dict[str, Any]:
        """The cluster's model stores, whole or the page between ``after`` and ``through``
        (sorted by project and name): replaces what the control plane knew there."""
        response = self._http.put("/agent/models", json={"models": entries, "after": after, "through": through})
        response.raise_for_status()
        return response.json()


def update(component_id: int, status: str, reason: str, observed_at: datetime, *,
           native_name: str | None = None, endpoint_url: str | None = None, removed: bool = False,
           result: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"component_id": component_id, "status": status, "reason": reason[:4000],
                            "observed_at": observed_at.isoformat()}
    if native_name:
        body["native_name"] = native_name
    if endpoint_url:
        body["endpoint_url"] = endpoint_url
    if result is not None:
        body["result"] = result  # already normalised (domain/results.py)
    if removed:
        body["removed"] = True  # gone from the cluster (preempted): what it made room for may start
    return body
