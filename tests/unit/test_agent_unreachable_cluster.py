"""The agent loop while its cluster cannot be reached (``BackendUnavailable``, e.g. slurmctld
down): no heartbeat, so the control plane marks the cluster unhealthy; what the backend
observes is still reported; the work is applied again on the next step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from corral.agent.loop import Agent
from corral.backends.base import BackendUnavailable, Observation
from corral.domain.statuses import ComponentStatus as S

RUN = {"workload_id": 1, "action": "run", "project": "p", "type": "custom", "spec": {"command": "true"},
       "component_ids": [7],
       "components": [{"id": 7, "kind": "job", "status": "Pending", "gpu": 0, "cpu": 0, "memory": 0}]}


class Client:
    def __init__(self) -> None:
        self.heartbeats: list[Any] = []
        self.reports: list[list[dict[str, Any]]] = []

    def heartbeat(self, capacity: Any, **_: Any) -> dict[str, Any]:
        self.heartbeats.append(capacity)
        return {}

    def work(self, after: int | None) -> dict[str, Any]:
        return {"cursor": 5, "full": after is None, "items": [RUN]}

    def report(self, updates: list[dict[str, Any]]) -> dict[str, Any]:
        self.reports.append(updates)
        return {}

    def found(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []


class Unreachable:
    """A backend whose controller is away: it knows its last statuses, nothing more."""

    kind = "test"

    def __init__(self) -> None:
        self.away = True
        self.started: list[int] = []

    def capacity(self) -> Any:
        if self.away:
            raise BackendUnavailable("controller unreachable")
        return "capacity"

    def start(self, launch: Any) -> None:
        if self.away:
            raise BackendUnavailable("controller unreachable")
        self.started.append(launch.component_id)

    def all_observations(self) -> list[Observation]:
        return [Observation(7, "n", S.RUNNING, "running [controller unreachable since 12:00]", datetime.now(UTC))]

    def observe(self) -> list[Observation]:
        return []

    def discover(self) -> list[Any]:
        if self.away:
            raise BackendUnavailable("controller unreachable")
        return []

    def forget(self, component_id: int) -> None:
        pass


def test_an_unreachable_cluster_sends_no_heartbeat_but_its_statuses_and_retries_the_work(tmp_path: Path):
    client, backend = Client(), Unreachable()
    agent = Agent(client, backend, work_root=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        agent.step()
    assert client.heartbeats == []  # silent: the control plane turns the cluster unhealthy
    assert [u["reason"] for u in client.reports[0]] == ["running [controller unreachable since 12:00]"]
    assert agent.cursor is None and backend.started == []  # nothing lost: the same work comes again
    backend.away = False
    agent._next_heartbeat = agent._next_resync = 0.0
    agent.step()
    assert client.heartbeats == ["capacity"] and backend.started == [7] and agent.cursor == 5
