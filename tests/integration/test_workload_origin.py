"""Workload origins over the real app and a real service: how a viewer gets in, what
reaches the service, and the attacks that must fail (ticket replay and forgery, a
credential taken to another workload, lost access, planted cookies, foreign Origins)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from corral.api import workload_origin
from corral.api.app import create_app
from corral.services import app_access
from corral.services.service_tokens import proxy_authorization
from corral.settings import Settings
from tests.integration.conftest import WEB_PASSWORD, web_sign_in
from tests.integration.workload_upstream import running_service, upstream

PASSWORD = WEB_PASSWORD


@pytest.fixture
def service() -> Iterator[str]:
    with upstream() as url:
        yield url


_browser = web_sign_in  # (tests.integration.conftest)


def _credential(browser: TestClient, wid: int, next_path: str = "/") -> str:
    """Open the workload as this browser does; the credential cookie its origin sets."""
    opened = browser.get(f"/workloads/{wid}/open", params={"next": next_path})
    assert opened.status_code == 303, opened.text
    signed_in = _fresh(browser).get(opened.headers["location"])
    assert signed_in.status_code == 303, signed_in.text
    return re.match(r"corral_app=([^;]+)", signed_in.headers["set-cookie"]).group(1)


def _fresh(client: TestClient) -> TestClient:
    """A client without cookies: every cookie a request carries is the one the test sends."""
    return TestClient(client.app, follow_redirects=False)


def _at(wid: int, path: str = "/") -> str:
    return f"http://w{wid}.localhost:8000{path}"


def _service_token(world, wid: int) -> str:  # type: ignore[no-untyped-def]
    """What the proxy presents to the service instead (services/service_tokens.py)."""
    return proxy_authorization(world.api.client.app.state.settings, wid)


def _seen(response) -> dict:  # type: ignore[no-untyped-def]
    """What the service saw of a request (it echoes it)."""
    assert response.status_code == 200, response.text
    seen = response.json()
    return {**seen, "headers": {k: v for k, v in seen["headers"]}}


def test_open_trades_a_ticket_for_a_cookie_of_the_workloads_origin_only(world, service):
    browser, _ = _browser(world.api, "alice@example.com")
    wid = running_service(world, service)
    opened = browser.get(f"/workloads/{wid}/open", params={"next": "/lab/tree?x=1"})
    assert opened.status_code == 303 and opened.headers["referrer-policy"] == "no-referrer"
    target = urlsplit(opened.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == _at(wid, "/__corral/auth")
    assert parse_qs(target.query)["next"] == ["/lab/tree?x=1"]
    signed_in = _fresh(browser).get(opened.headers["location"])
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/lab/tree?x=1"
    assert signed_in.headers["referrer-policy"] == "no-referrer"
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("corral_app=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/" in cookie and "domain" not in cookie.lower()
    credential = re.match(r"corral_app=([^;]+)", cookie).group(1)
    session = browser.cookies.get("corral_session")
    assert session not in credential and session not in opened.headers["location"]

    # The browser sends everything it has; the service gets none of Corral's.
    seen = _seen(_fresh(browser).get(_at(wid, "/lab/tree?x=1"), headers={
        "Cookie": f"corral_app={credential}; corral_session={session}; _xsrf=abc", "Accept": "text/html"}))
    assert (seen["path"], seen["query"]) == ("/lab/tree", "x=1")
    assert seen["headers"]["host"] == urlsplit(service).netloc and seen["headers"]["cookie"] == "_xsrf=abc"
    assert seen["headers"]["authorization"] == _service_token(world, wid)  # the service's own, not the viewer's
    # An unsafe `next` is no way out of the origin.
    opened = browser.get(f"/workloads/{wid}/open", params={"next": "//evil.example/x"})
    assert _fresh(browser).get(opened.headers["location"]).headers["location"] == "/"


def test_without_a_credential_a_browser_is_sent_to_corral_and_a_script_refused(world, service):
    wid = running_service(world, service)
    anonymous = _fresh(world.api.client)
    sent = anonymous.get(_at(wid, "/lab?a=1"), headers={"Sec-Fetch-Mode": "navigate"})
    assert sent.status_code == 303
    assert sent.headers["location"] == f"http://127.0.0.1:8000/workloads/{wid}/open?next=%2Flab%3Fa%3D1"
    assert anonymous.get(_at(wid, "/api/x")).status_code == 401
    assert anonymous.get(f"/workloads/{wid}/open").headers["location"].startswith("/sign-in")


def test_a_ticket_is_for_one_workload_one_minute_and_cannot_be_forged(world, service, monkeypatch):
    browser, _ = _browser(world.api, "alice@example.com")
    first, second = running_service(world, service, name="one"), running_service(world, service, name="two")
    ticket = parse_qs(urlsplit(browser.get(f"/workloads/{first}/open").headers["location"]).query)["ticket"][0]
    client = _fresh(browser)
    for wid, value in ((second, ticket), (first, ticket[:-2] + ("xy" if ticket[-2:] != "xy" else "zz")),
                       (first, "eyJ1IjoxLCJ3IjoxfQ.forged"), (first, "")):
        refused = client.get(_at(wid, "/__corral/auth"), params={"ticket": value})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers, value
    real = time.time
    monkeypatch.setattr(app_access, "time", SimpleNamespace(time=lambda: real() + app_access.TICKET_TTL_S + 1))
    expired = client.get(_at(first, "/__corral/auth"), params={"ticket": ticket})
    assert expired.status_code == 403 and "set-cookie" not in expired.headers
    monkeypatch.undo()
    assert client.get(_at(first, "/__corral/auth"), params={"ticket": ticket}).status_code == 303


def test_one_workloads_credential_gives_nothing_on_another(world, service):
    browser, _ = _browser(world.api, "alice@example.com")
    first, second = running_service(world, service, name="one"), running_service(world, service, name="two")
    credential = _credential(browser, first)
    client = _fresh(browser)
    assert client.get(_at(first, "/x"), headers={"Cookie": f"corral_app={credential}"}).status_code == 200
    assert client.get(_at(second, "/x"), headers={"Cookie": f"corral_app={credential}"}).status_code == 401
    # A sibling's planted cookie next to the real one does not lock the viewer out.
    both = client.get(_at(first, "/x"), headers={"Cookie": f"corral_app=planted; corral_app={credential}"})
    assert both.status_code == 200


def test_access_ends_at_the_next_request_when_the_viewer_loses_it(world, service, monkeypatch):
    api = world.api
    wid = running_service(world, service)
    client = _fresh(api.client)
    emails = ("dave@example.com", "erin@example.com", "frank@example.com")
    (dave, _), (erin, erin_csrf), (frank, _) = (_browser(api, email) for email in emails)
    for email in emails:
        assert world.admin.post("/api/v1/projects/vision/members", json={"email": email}).status_code == 201
    cookies = {who: f"corral_app={_credential(b, wid)}" for who, b in (("dave", dave), ("erin", erin),
                                                                      ("frank", frank))}
    for cookie in cookies.values():
        assert client.get(_at(wid, "/x"), headers={"Cookie": cookie}).status_code == 200

    # Renewed while used: past half its life, a fresh credential comes back.
    real = time.time
    later = SimpleNamespace(time=lambda: real() + app_access.RENEW_AFTER_S + 5)
    monkeypatch.setattr(app_access, "time", later)
    monkeypatch.setattr(workload_origin, "time", later)
    renewed = client.get(_at(wid, "/x"), headers={"Cookie": cookies["dave"]})
    assert renewed.status_code == 200 and renewed.headers["set-cookie"].startswith("corral_app=")
    monkeypatch.undo()

    # Removed from the project: the workload no longer exists for them.
    assert world.admin.delete("/api/v1/projects/vision/members/dave@example.com").status_code == 204
    assert client.get(_at(wid, "/x"), headers={"Cookie": cookies["dave"]}).status_code == 404
    # Signed out of Corral: the credential rested on that session.
    assert erin.post("/sign-out", data={"csrf_token": erin_csrf}).status_code == 303
    assert client.get(_at(wid, "/x"), headers={"Cookie": cookies["erin"]}).status_code == 401
    # Disabled.
    frank_id = next(u["id"] for u in world.admin.get("/api/v1/users").json() if u["email"] == "frank@example.com")
    assert world.admin.patch(f"/api/v1/users/{frank_id}", json={"disabled": True}).status_code == 200
    assert client.get(_at(wid, "/x"), headers={"Cookie": cookies["frank"]}).status_code == 401


def test_api_clients_send_their_token_which_the_service_never_sees(world, service):
    # (It sees the token the proxy presents for it alone instead.)
    wid = running_service(world, service)
    token = world.api.tokens["alice@example.com"]
    client = _fresh(world.api.client)
    seen = _seen(client.post(_at(wid, "/v1/completions"), json={"prompt": "hi"},
                             headers={"Authorization": f"Bearer {token}"}))
    assert seen["method"] == "POST" and seen["body"] == '{"prompt":"hi"}'
    assert seen["headers"]["authorization"] == _service_token(world, wid) and token not in str(seen)
    outsider = world.api.tokens["carol@example.com"]
    assert client.get(_at(wid, "/x"), headers={"Authorization": f"Bearer {outsider}"}).status_code == 404
    assert client.get(_at(wid, "/x"), headers={"Authorization": "Bearer crl_wrong"}).status_code == 401
    assert client.get(_at(999_999, "/x"), headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_corral_never_answers_on_a_workload_host_nor_a_workload_on_corrals(world, service):
    wid = running_service(world, service)
    token = world.api.tokens["admin@example.com"]
    client = _fresh(world.api.client)
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/users/me", "/tokens", "/sign-in", "/workloads"):
        assert _seen(client.get(_at(wid, path), headers=bearer))["path"] == path  # the service answered
    assert client.get(_at(wid, "/__corral/anything"), headers=bearer).status_code == 404
    assert client.get("http://corral.localhost:8000/api/v1/users/me", headers=bearer).status_code == 404
    # Path-based serving on Corral's origin is off.
    off = client.get(f"/proxy/{wid}/x", headers=bearer)
    assert off.status_code == 404 and f"/workloads/{wid}/open" in off.json()["error"]["message"]


def test_a_workload_cannot_plant_cookies_on_corral_or_under_its_names(world, service):
    wid = running_service(world, service)
    token = world.api.tokens["alice@example.com"]
    answer = _fresh(world.api.client).get(_at(wid, "/set-cookies"), headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.headers.get_list("set-cookie") == ["theirs=1; Path=/; HttpOnly"]


def test_another_origin_may_not_change_anything_and_redirects_stay_home(world, service):
    browser, _ = _browser(world.api, "alice@example.com")
    first, second = running_service(world, service, name="one"), running_service(world, service, name="two")
    cookie = {"Cookie": f"corral_app={_credential(browser, first)}"}
    client = _fresh(browser)
    for origin in (_at(second, "").rstrip("/"), "http://127.0.0.1:8000", "null"):
        refused = client.post(_at(first, "/api/contents"), headers={**cookie, "Origin": origin})
        assert refused.status_code == 403, origin
    seen = _seen(client.post(_at(first, "/api/contents"), headers={**cookie, "Origin": _at(first, "").rstrip("/")}))
    assert seen["headers"]["origin"] == service  # rewritten for the service's own check against Host
    moved = client.get(_at(first, "/redirect"), headers=cookie)
    assert moved.status_code == 302 and moved.headers["location"] == _at(first, "/elsewhere")


def test_websockets_only_from_the_workloads_own_origin(world, service):
    browser, _ = _browser(world.api, "alice@example.com")
    first, second = running_service(world, service, name="one"), running_service(world, service, name="two")
    cookie = f"corral_app={_credential(browser, first)}; corral_session=x; _xsrf=abc"
    client = _fresh(browser)
    url = f"ws://w{first}.localhost:8000/ws"
    for origin in ("http://evil.example", _at(second, "").rstrip("/"), "http://127.0.0.1:8000", "null"):
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(
                url, headers={"Cookie": cookie, "Origin": origin}):
            pass
        assert refused.value.code == 1008, origin
    with client.websocket_connect(url, headers={"Cookie": cookie, "Origin": _at(first, "").rstrip("/")}) as ws:
        seen = ws.receive_json()["headers"]
        ws.send_text("hi")
        assert ws.receive_text() == "echo: hi"
    assert seen["origin"] == service and seen["cookie"] == "_xsrf=abc"
    assert seen["authorization"] == _service_token(world, first)
    # No Origin: not a browser; it passes with a token (removed on the way).
    token = world.api.tokens["alice@example.com"]
    with client.websocket_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.receive_json()["headers"]["authorization"] == _service_token(world, first)
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(url):
        pass  # and without one, not at all


def test_the_api_shows_the_workload_origin_never_where_the_service_listens(world, service):
    wid = running_service(world, service)
    response = world.alice.get(f"/api/v1/workloads/{wid}")
    detail = response.json()
    assert detail["endpoints"] == {"server": _at(wid, "/")}
    assert detail["open_url"] == f"http://testserver/workloads/{wid}/open"
    assert urlsplit(service).netloc not in response.text


def test_path_based_serving_when_opted_in_is_sandboxed(world, service, tmp_path):
    wid = running_service(world, service)
    settings = Settings(data_dir=tmp_path, database_url=str(world.api.engine.url), bootstrap=False,
                        path_proxy_unsafe=True)
    token = world.api.tokens["alice@example.com"]
    with TestClient(create_app(settings, world.api.engine), follow_redirects=False) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        page = client.get(f"/proxy/{wid}/some/page?q=1", headers=bearer)
        assert _seen(page)["path"] == "/some/page" and token not in str(_seen(page))
        csp = page.headers["content-security-policy"]
        assert csp.startswith("sandbox ") and "allow-scripts" in csp and "allow-same-origin" not in csp
        planted = client.get(f"/proxy/{wid}/set-cookies", headers=bearer)
        assert planted.status_code == 200 and "set-cookie" not in planted.headers
        assert client.get(f"/proxy/{wid}/x").status_code == 401
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(
                f"/proxy/{wid}/ws", headers={**bearer, "Origin": "http://testserver"}):
            pass
        with client.websocket_connect(f"/proxy/{wid}/ws", headers=bearer) as ws:
            assert token not in str(ws.receive_json()["headers"])


def test_over_https_every_corral_cookie_is_host_prefixed_and_an_unprefixed_one_counts_for_nothing(
        world, service, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=str(world.api.engine.url), bootstrap=False,
                        apps_domain="apps.example.com", apps_scheme="https", apps_port=443,
                        public_url="https://corral.example.com")
    _browser(world.api, "alice@example.com")  # (a password)
    wid = running_service(world, service)
    app = create_app(settings, world.api.engine)
    with TestClient(app, base_url="https://corral.example.com", follow_redirects=False) as browser:
        form = browser.get("/sign-in")
        assert re.match(r"__Host-corral_sign_in=[^;]+; .*Path=/; .*Secure", form.headers["set-cookie"])
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = browser.post("/sign-in", data={"email": "alice@example.com", "password": PASSWORD,
                                                   "csrf_token": token})
        cookie = next(c for c in signed_in.headers.get_list("set-cookie") if "corral_session=" in c)
        assert cookie.startswith("__Host-corral_session=") and "Secure" in cookie and "Path=/" in cookie
        assert "domain" not in cookie.lower()
        session = browser.cookies.get("__Host-corral_session")
        # One a sibling host could plant (no prefix, Domain=<parent>) is not Corral's session.
        stranger = TestClient(app, base_url="https://corral.example.com", follow_redirects=False)
        assert stranger.get("/workloads", headers={"Cookie": f"corral_session={session}"}).status_code == 303
        assert stranger.get("/workloads", headers={"Cookie": f"__Host-corral_session={session}"}).status_code == 200
        # The workload's origin is https too, and so is its credential cookie.
        opened = browser.get(f"/workloads/{wid}/open")
        assert opened.headers["location"].startswith(f"https://w{wid}.apps.example.com/__corral/auth?")
        credential = stranger.get(opened.headers["location"]).headers["set-cookie"]
        assert credential.startswith("__Host-corral_app=") and "Secure" in credential
        assert "domain" not in credential.lower()
        sent = _fresh(stranger).get(f"https://w{wid}.apps.example.com/x", headers={"Accept": "text/html"})
        assert sent.headers["location"] == f"https://corral.example.com/workloads/{wid}/open?next=%2Fx"
