"""Log follow under abuse, with the real server (`corral serve` and its built-in agent) and a
real workload that prints a line every 0.1 s: followers that are dropped, revoked, too
many, or still open when the server is told to stop."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from corral.services.reach import agent_logs_key
from tests.e2e.conftest import Cli, LiveServer, make_database, ok, start_server, stop_server

TICKER = "i=0; while true; do echo \"tick $i {marker}\"; i=$((i+1)); sleep 0.1; done"


@dataclass
class Setup:
    server: LiveServer
    workload: int
    tokens: dict[str, str]  # member email -> API token

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=10,
                            headers={"Authorization": f"Bearer {self.server.admin_token}"})


def _start(root, stack: ExitStack, members: int, env: dict[str, str] | None = None) -> Setup:  # type: ignore[no-untyped-def]
    database = make_database("sqlite", root / "data", stack)
    server = start_server(database, root / "server.log", env_extra=env)
    stack.callback(stop_server, server)
    setup = Setup(server, 0, {})
    with setup.admin() as admin:
        for i in range(members):
            email = f"viewer{i}@example.com"
            assert admin.post("/api/v1/users", json={"email": email}).status_code == 201
            assert admin.post("/api/v1/projects/default/members", json={"email": email}).status_code == 201
            setup.tokens[email] = json.loads(ok(Cli(database.env).invoke("tokens", "create", email, "--json")))["token"]
        created = admin.post("/api/v1/workloads", json={
            "type": "custom", "project": "default", "name": "ticker", "resources": {"cpu": "100m", "memory": "64Mi"},
            "command": TICKER.format(marker=f"follow-{uuid.uuid4().hex}")})
        assert created.status_code == 201, created.text
        setup.workload = created.json()["id"]
        deadline = time.monotonic() + 30
        while admin.get(f"/api/v1/workloads/{setup.workload}").json()["status"] != "Running":
            assert time.monotonic() < deadline, "the ticker never ran"
            time.sleep(0.05)
    return setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with ExitStack() as stack:
        yield _start(tmp_path_factory.mktemp("follow"), stack, members=8)


def open_follower(server: LiveServer, token: str, workload: int) -> socket.socket:
    """A follow request on a raw socket (so that the test can drop it as a client would),
    once its first line of output has arrived."""
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.sendall(f"GET /api/v1/workloads/{workload}/logs?follow=true&tail=1 HTTP/1.1\r\nHost: {url.netloc}\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    received = b""
    while b"tick" not in received.partition(b"\r\n\r\n")[2]:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the follow stream at once: {received!r}"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def agent_followers(server: LiveServer) -> int:
    """What the built-in agent's log API itself reports as open follow streams."""
    with sqlite3.connect(server.database.data_dir / "corral.db") as db:
        agent_url, token_hash = db.execute("SELECT agent_url, agent_token_hash FROM clusters "
                                           "WHERE name = 'local'").fetchone()
    stats = httpx.get(f"{agent_url}/v1/stats", headers={"Authorization": f"Bearer {agent_logs_key(token_hash)}"})
    return stats.json()["log_followers"]


def agent_connections(server: LiveServer) -> list:  # type: ignore[type-arg]
    """TCP connections of the server process to or from its agent's log API port."""
    with sqlite3.connect(server.database.data_dir / "corral.db") as db:
        port = urlsplit(db.execute("SELECT agent_url FROM clusters WHERE name = 'local'").fetchone()[0]).port
    return [c for c in psutil.Process(server.process.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and port in (c.laddr.port, c.raddr.port if c.raddr else None)]


def quick(client: httpx.Client, path: str) -> float:
    started = time.monotonic()
    response = client.get(path, timeout=3)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_32_dropped_followers_block_nothing_and_leave_nothing_open(setup: Setup) -> None:
    server = setup.server
    followers = [open_follower(server, token, setup.workload) for token in setup.tokens.values() for _ in range(4)]
    assert len(followers) == 32
    with setup.admin() as admin:
        # 32 streams open: twice the worker threads, yet the server answers at once.
        assert quick(admin, "/healthz") < 1
        assert quick(admin, "/api/v1/workloads") < 1
        assert quick(admin, f"/api/v1/workloads/{setup.workload}/logs?tail=5") < 1
        assert agent_followers(server) == 32
        for sock in followers:  # the clients go away without a word
            sock.close()
        deadline = time.monotonic() + 5
        while agent_followers(server) or agent_connections(server):
            assert time.monotonic() < deadline, (f"{agent_followers(server)} followers and "
                                                 f"{len(agent_connections(server))} connections still open")
            time.sleep(0.1)
        assert quick(admin, "/api/v1/workloads") < 1
    # Their places under the per-user cap came back too: each may follow 8 at once again.
    token = next(iter(setup.tokens.values()))
    again = [open_follower(server, token, setup.workload) for _ in range(8)]
    for sock in again:
        sock.close()


def test_the_per_user_cap_answers_429_with_retry_after(setup: Setup) -> None:
    first, second = list(setup.tokens.values())[:2]
    held = [open_follower(setup.server, first, setup.workload) for _ in range(8)]
    try:
        refused = httpx.get(f"{setup.server.url}/api/v1/workloads/{setup.workload}/logs",
                            params={"follow": "true"}, headers={"Authorization": f"Bearer {first}"}, timeout=5)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_followers", refused.text
        assert int(refused.headers["Retry-After"]) > 0
        open_follower(setup.server, second, setup.workload).close()  # the cap is per user
        held.pop().close()
        deadline = time.monotonic() + 3
        while True:  # one place came back once its stream ended
            try:
                held.append(open_follower(setup.server, first, setup.workload))
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the closed stream's place never came back"
                time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()


def test_a_follow_ends_soon_after_its_viewer_loses_access(setup: Setup) -> None:
    """Three viewers, three ways of losing access: token revoked, user disabled, removed
    from the project. Each stream ends within a few seconds (re-checked every 3 s)."""
    url, wid = setup.server.url, setup.workload
    with setup.admin() as admin:
        for email in ("revoked@example.com", "disabled@example.com", "removed@example.com"):
            assert admin.post("/api/v1/users", json={"email": email}).status_code == 201
            assert admin.post("/api/v1/projects/default/members", json={"email": email}).status_code == 201
        env = setup.server.database.env
        tokens = {email: json.loads(ok(Cli(env).invoke("tokens", "create", email, "--json")))["token"]
                  for email in ("revoked@example.com", "disabled@example.com", "removed@example.com")}
        ended: dict[str, float] = {}
        got: dict[str, int] = {}

        def follow(email: str) -> None:
            with httpx.stream("GET", f"{url}/api/v1/workloads/{wid}/logs", params={"follow": "true"},
                              headers={"Authorization": f"Bearer {tokens[email]}"}, timeout=30) as stream:
                assert stream.status_code == 200
                for chunk in stream.iter_raw():
                    got[email] = got.get(email, 0) + len(chunk)
            ended[email] = time.monotonic()

        threads = [threading.Thread(target=follow, args=(email,), daemon=True) for email in tokens]
        for thread in threads:
            thread.start()
        time.sleep(1)
        assert not ended and len(got) == 3, "the streams run while their viewers may read"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['revoked@example.com']}"}) as own:
            token_id = next(t["id"] for t in own.get("/api/v1/tokens").json())
            revoked_at = time.monotonic()
            assert own.delete(f"/api/v1/tokens/{token_id}").status_code == 200
        user_id = next(u["id"] for u in admin.get("/api/v1/users").json() if u["email"] == "disabled@example.com")
        assert admin.patch(f"/api/v1/users/{user_id}", json={"disabled": True}).status_code == 200
        assert admin.delete("/api/v1/projects/default/members/removed@example.com").status_code == 204
        for thread in threads:
            thread.join(timeout=10)
        assert set(ended) == set(tokens), f"still streaming: {set(tokens) - set(ended)}"
        waited = {email: round(at - revoked_at, 1) for email, at in ended.items()}
        assert all(w < 5 for w in waited.values()), waited
        print(f"streams ended after losing access in {waited}")


def test_sigterm_with_16_followers_open_stops_the_server_within_its_grace_period(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with ExitStack() as stack:
        setup = _start(tmp_path, stack, members=2)
        server = setup.server
        followers = [open_follower(server, token, setup.workload) for token in setup.tokens.values()
                     for _ in range(8)]
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=10)  # CORRAL_SHUTDOWN_GRACE_S, the default
        took = time.monotonic() - started
        for sock in followers:  # each stream was ended by the server, not cut by the test
            sock.settimeout(5)
            while sock.recv(65536):
                pass
            sock.close()
        print(f"serve exited {took:.2f}s after SIGTERM with 16 followers open")
        assert took < 5, took
