"""Attacks that only a real server shows (uvicorn, real sockets, real client addresses):
a 50 MB body, a 500 on a keep-alive connection, a sign-in brute force."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, text

from corral.db.engine import make_engine, write_tx
from corral.services import passwords, users as user_service
from corral.services.principal import SYSTEM
from tests.integration.live_server import LiveServer, live_server

MB = 1 << 20
PASSWORD = "correct horse battery staple"


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """A live server and an admin token (the admin also has a web password)."""
    engine = make_engine(db_url, pool_size=1)
    with write_tx(engine) as conn:
        admin = user_service.create_user(conn, email="admin@example.com", display_name=None, role="admin",
                                         actor=SYSTEM)
        token, _ = user_service.create_token(conn, user_id=admin["id"], name="t", expires_at=None, actor=SYSTEM)
        passwords.set_password(conn, email="admin@example.com", password=PASSWORD, actor=SYSTEM)
    engine.dispose()
    with live_server(db_url, tmp_path) as live:
        yield live, token


def _is_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "too_large" and "larger than the server accepts" in error["message"]


# ----------------------------------------------------------------------------- a 50 MB body

def test_a_50_mb_body_is_refused_before_it_is_read(server):
    live, _ = server
    httpx.get(live.url + "/healthz")
    before = live.peak_rss_bytes()
    body = b'{"name": "p1", "description": "' + b"x" * (50 * MB) + b'"}'
    # Declared up front (Content-Length): refused unread, and unauthenticated at that.
    _is_413(httpx.post(live.url + "/api/v1/projects", content=body, headers={"Content-Type": "application/json"},
                       timeout=60))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start:start + 256 * 1024]

    # Chunked (no length given): cut off once past the limit.
    _is_413(httpx.post(live.url + "/api/v1/projects", content=chunks(), headers={"Content-Type": "application/json"},
                       timeout=60))
    # The same for the web UI's forms.
    form = b"name=" + b"x" * (50 * MB)
    _is_413(httpx.post(live.url + "/sign-in", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60))
    grown = live.peak_rss_bytes() - before
    assert grown < 20 * MB, f"the server's peak memory grew by {grown / MB:.0f} MB"
    assert httpx.get(live.url + "/healthz").status_code == 200


# ----------------------------------------------------------------------------- a 500 on a keep-alive connection

def test_a_500_is_json_and_the_keep_alive_connection_goes_on(server, db_url):
    live, token = server
    auth = {"Authorization": f"Bearer {token}"}
    parts = urlsplit(live.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", "/api/v1/users/me", headers=auth)
    assert conn.getresponse().read() and conn.sock is not None
    sock = conn.sock
    # A real fault under a request: the table it reads is gone.
    db = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with db.connect() as c:
        c.execute(text("ALTER TABLE projects RENAME TO projects_gone"))
    try:
        conn.request("GET", "/api/v1/projects", headers=auth)
        failed = conn.getresponse()
        body = json.loads(failed.read())
        assert failed.status == 500 and failed.getheader("content-type") == "application/json"
        assert body["error"]["code"] == "internal" and set(body["error"]) >= {"code", "message", "field"}
        assert "projects_gone" not in body["error"]["message"]  # no internals leak to the client
    finally:
        with db.connect() as c:
            c.execute(text("ALTER TABLE projects_gone RENAME TO projects"))
        db.dispose()
    assert conn.sock is sock, "the server closed the connection after the 500"
    conn.request("GET", "/api/v1/projects", headers=auth)  # on the same connection
    again = conn.getresponse()
    assert again.status == 200 and json.loads(again.read()) == []
    assert conn.sock is sock
    conn.close()
    assert "Traceback" in live.output()  # logged for the operator, with its traceback


# ----------------------------------------------------------------------------- a sign-in brute force

def _client(live: LiveServer, address: str) -> httpx.Client:
    """A browser at a client address of its own (any 127.x address reaches the server)."""
    return httpx.Client(base_url=live.url, transport=httpx.HTTPTransport(local_address=address),
                        follow_redirects=False, timeout=30)


def _sign_in(client: httpx.Client, password: str) -> httpx.Response:
    form = client.get("/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    return client.post("/sign-in", data={"email": "admin@example.com", "password": password, "csrf_token": csrf})


def test_a_sign_in_brute_force_is_paused_and_the_owner_still_signs_in(server):
    live, _ = server
    with _client(live, "127.0.0.7") as attacker:
        answers = [_sign_in(attacker, f"guess-{n:04d}") for n in range(50)]
        codes = [a.status_code for a in answers]
        assert codes[:5] == [401] * 5 and codes[5:] == [429] * 45, codes
        for paused in answers[5:]:
            assert 1 <= int(paused.headers["Retry-After"]) <= 15 * 60
            assert "Too many failed sign-ins" in paused.text
        # While paused, not even the right password is checked from there.
        assert _sign_in(attacker, PASSWORD).status_code == 429
    with _client(live, "127.0.0.8") as owner:
        signed_in = _sign_in(owner, PASSWORD)
        assert signed_in.status_code == 303 and any("session" in name for name in signed_in.cookies), \
            signed_in.text[:300]
