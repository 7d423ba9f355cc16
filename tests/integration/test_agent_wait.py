"""The agent's long poll: ``GET /agent/work?wait=`` is held until there is work for the
cluster, and woken by an admission written by another process (the scheduler's: inotify
on SQLite, NOTIFY on PostgreSQL) or by a deletion in this one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.conftest import submit

ADMIT = ("import sys; from corral.db.engine import make_engine; from corral.scheduler.loop import AdmissionLoop; "
         "engine = make_engine(sys.argv[1]); AdmissionLoop(engine).step(); engine.dispose()")


class HeldPoll(threading.Thread):
    def __init__(self, agent: Any, after: int, wait: float) -> None:
        super().__init__(daemon=True)
        self.agent, self.after, self.wait = agent, after, wait
        self.answer: dict[str, Any] | None = None
        self.took = 0.0

    def run(self) -> None:
        started = time.monotonic()
        response = self.agent.get("/api/v1/agent/work", params={"after": self.after, "wait": self.wait})
        assert response.status_code == 200, response.text
        self.answer = response.json()
        self.took = time.monotonic() - started


def test_a_held_poll_answers_when_another_process_admits_or_a_user_deletes(world):
    agent = world.api.as_token(world.agent_token)
    cursor = agent.get("/api/v1/agent/work").json()["cursor"]
    wid = submit(world.alice, name="job", resources={"gpu": 1}).json()["id"]
    poll = HeldPoll(agent, cursor, wait=30)
    poll.start()
    poll.join(1.0)
    assert poll.is_alive()  # submitted, not admitted: nothing for the cluster, the poll waits
    # The scheduler's pass, in a process of its own, as `corral serve` runs it.
    subprocess.run([sys.executable, "-c", ADMIT, str(world.api.engine.url.render_as_string(hide_password=False))],
                   check=True, timeout=60)
    poll.join(20)
    assert not poll.is_alive() and poll.answer is not None
    [item] = poll.answer["items"]
    assert (item["workload_id"], item["action"], poll.answer["wait"]) == (wid, "run", 30)
    assert poll.took < 20  # woken, not timed out

    observed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert agent.post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": item["components"][0]["id"], "status": "Running", "observed_at": observed}]}).is_success
    poll = HeldPoll(agent, poll.answer["cursor"], wait=30)
    poll.start()
    poll.join(1.0)
    assert poll.is_alive(), poll.answer  # the status report was no work for the cluster
    assert world.alice.delete(f"/api/v1/workloads/{wid}").status_code == 202
    poll.join(20)
    assert not poll.is_alive() and poll.answer is not None
    [stop] = poll.answer["items"]
    assert (stop["workload_id"], stop["action"], stop["stop_as"]) == (wid, "stop", "Deleted")


def test_a_held_poll_with_nothing_to_do_ends_after_its_wait_and_other_clusters_work_does_not_end_it(world):
    agent = world.api.as_token(world.agent_token)
    cursor = agent.get("/api/v1/agent/work").json()["cursor"]
    other = world.admin.post("/api/v1/clusters", json={"name": "gpu-b", "kind": "kubernetes"}).json()
    poll = HeldPoll(agent, cursor, wait=1.5)
    poll.start()
    # Events for another cluster and for nothing at all wake the poll, which reads again and waits on.
    world.admin.post(f"/api/v1/clusters/{other['name']}/agent-token")
    submit(world.alice, name="queued", resources={"gpu": 1})
    poll.join(30)
    assert poll.answer is not None and poll.answer["items"] == [] and poll.answer["wait"] == 1.5
    assert poll.took >= 1.5 and poll.answer["cursor"] >= cursor
    # Without wait (or without a cursor) the answer comes at once, as before.
    assert "wait" not in agent.get("/api/v1/agent/work", params={"after": cursor}).json()
    assert agent.get("/api/v1/agent/work", params={"after": cursor, "wait": 61}).status_code == 422
