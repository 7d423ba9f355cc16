"""corral serve's uvicorn servers wake once a second while idle (uvicorn's own: ten times),
and still stop at once when asked, from another thread or by a signal."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

from corral.quiet_uvicorn import QuietServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _started(server: QuietServer) -> threading.Thread:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return thread


def test_an_idle_server_ticks_once_a_second_and_stops_at_once_when_asked():
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    port = free_port()
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    ticks: list[float] = []
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(time.monotonic())
        return await on_tick(counter)

    server.on_tick = counted  # type: ignore[method-assign]
    thread = _started(server)
    answer = httpx.get(f"http://127.0.0.1:{port}/ping")
    assert answer.status_code == 200 and answer.headers["date"]  # the Date header is kept
    time.sleep(2.5)
    assert 2 <= len(ticks) <= 4, ticks  # uvicorn's own loop: ~25
    asked = time.monotonic()
    server.request_exit()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - asked < 0.5
