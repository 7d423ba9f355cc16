"""Workload origins, the proxy's header rules and the tickets: the pure parts, each tried
the way an attacker would."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from corral.api import proxy_headers as ph
from corral.services.app_access import CREDENTIAL_TTL_S, TICKET_TTL_S, AppSigner, Grant
from corral.services.app_origins import AppOrigins, HostKind, public_endpoints, safe_path, upstream_url
from corral.services.keys import SecretKeys, generate_key


def _settings(**overrides):  # type: ignore[no-untyped-def]
    base = {"apps_domain": "localhost", "apps_scheme": "http", "apps_port": None, "port": 8000, "host": "127.0.0.1",
            "public_url": None}
    return SimpleNamespace(**{**base, **overrides})


ORIGINS = AppOrigins.from_settings(_settings())


def test_each_workload_has_an_origin_of_its_own_under_the_apps_domain():
    assert ORIGINS.origin(42) == "http://w42.localhost:8000"
    assert ORIGINS.corral_url == "http://127.0.0.1:8000"
    tls = AppOrigins.from_settings(_settings(apps_domain="*.Apps.Example.com.", apps_scheme="https", apps_port=443,
                                             public_url="https://corral.example.com/"))
    assert tls.origin(7) == "https://w7.apps.example.com" and tls.cookie_name() == "__Host-corral_app"
    assert tls.corral_url == "https://corral.example.com"
    with pytest.raises(ValueError, match="inside the apps domain"):
        AppOrigins.from_settings(_settings(apps_domain="example.com", public_url="https://corral.example.com"))


@pytest.mark.parametrize(("host", "expected"), [
    ("w42.localhost:8000", (HostKind.WORKLOAD, 42)),
    ("W42.LocalHost.:8000", (HostKind.WORKLOAD, 42)),
    ("w42.localhost", (HostKind.WORKLOAD, 42)),
    ("localhost:8000", (HostKind.CORRAL, None)),  # Corral itself may be at localhost
    ("127.0.0.1:8000", (HostKind.CORRAL, None)),
    ("[::1]:8000", (HostKind.CORRAL, None)),
    (None, (HostKind.CORRAL, None)),
    ("corral.localhost", (HostKind.UNKNOWN_APP, None)),  # never Corral under the apps domain
    ("w042.localhost", (HostKind.UNKNOWN_APP, None)),  # one name per workload
    ("w0.localhost", (HostKind.UNKNOWN_APP, None)),
    ("x.w42.localhost", (HostKind.UNKNOWN_APP, None)),
    ("w99999999999999999999.localhost", (HostKind.UNKNOWN_APP, None)),
    ("w42.localhost.evil.com", (HostKind.CORRAL, None)),
])
def test_the_host_decides_who_answers(host, expected):
    assert ORIGINS.classify(host) == expected


@pytest.mark.parametrize("target", ["//evil.com/x", "https://evil.com", "/\\evil.com", "evil", "", None, "/a\r\nb"])
def test_next_paths_never_leave_the_origin(target):
    assert safe_path(target) == "/"


def test_safe_paths_pass():
    assert safe_path("/lab/tree?x=1") == "/lab/tree?x=1"


def test_users_see_the_workload_origin_never_where_the_service_listens():
    assert public_endpoints(ORIGINS, 5, {"server": "http://127.0.0.1:41234/v1"}) == {
        "server": "http://w5.localhost:8000/v1"}
    assert public_endpoints(ORIGINS, 5, {}) == {}
    assert upstream_url("http://127.0.0.1:41234/v1", "/v1/models", "a=1") == "http://127.0.0.1:41234/v1/models?a=1"


# ----------------------------------------------------------------------------- headers

OWN = "http://w5.localhost:8000"
UP = "http://127.0.0.1:41234"


def test_corral_credentials_never_reach_the_workload():
    sent = [("Host", "w5.localhost:8000"), ("Authorization", "Bearer crl_secret"),
            ("Cookie", "corral_session=s1; _xsrf=abc; __Host-corral_app=c1"), ("cookie", "corral_app=c2; theirs=1"),
            ("Origin", OWN), ("Referer", OWN + "/lab?x"), ("Accept", "text/html"), ("Connection", "upgrade")]
    out = ph.upstream_request_headers(sent, own_origin=OWN, upstream=UP)
    names = [k.lower() for k, _ in out]
    assert "authorization" not in names and "connection" not in names
    assert dict(out)["cookie"] == "_xsrf=abc; theirs=1"
    assert ("host", "127.0.0.1:41234") in out and ("origin", UP) in out and ("referer", UP + "/lab?x") in out
    foreign = ph.upstream_request_headers([("Origin", "http://w6.localhost:8000"), ("Referer", "http://x/")],
                                          own_origin=OWN, upstream=UP)
    assert foreign == [("host", "127.0.0.1:41234"), ("origin", "http://w6.localhost:8000")]  # for it to refuse


@pytest.mark.parametrize(("cookie", "expected"), [
    ("corral_session=evil; Domain=localhost; Path=/", None),
    ("__Host-corral_session=evil; Path=/; Secure", None),
    ("Corral_App=evil", None),
    ("a=1; Domain=localhost; Path=/", "a=1; Path=/"),
    ("b=2; path=/; DOMAIN = .example.com; HttpOnly", "b=2; path=/; HttpOnly"),
    ("_xsrf=2|abc; Path=/", "_xsrf=2|abc; Path=/"),
])
def test_a_workload_cannot_plant_cookies_elsewhere_or_with_corral_names(cookie, expected):
    assert ph.sanitise_set_cookie(cookie) == expected


def test_response_headers_keep_the_service_at_its_origin():
    out = ph.browser_response_headers(
        [("Set-Cookie", "corral_session=x"), ("Set-Cookie", "a=1; Domain=localhost"), ("Location", UP + "/lab"),
         ("Transfer-Encoding", "chunked"), ("Content-Length", "3")], own_origin=OWN, upstream=UP)
    assert out == [("Set-Cookie", "a=1"), ("Location", OWN + "/lab"), ("Content-Length", "3")]
    assert ph.browser_response_headers([("Set-Cookie", "a=1")], own_origin=OWN, upstream=UP, keep_cookies=False) == []


def test_same_origin_is_exact():
    own = ph.request_origin("http", "W5.localhost:8000")
    assert own == OWN and ph.same_origin("http://w5.localhost:8000", own)
    for other in ("http://w6.localhost:8000", "https://w5.localhost:8000", "http://w5.localhost:8001", "null", "",
                  None, "http://w5.localhost:99999"):
        assert not ph.same_origin(other, own)
    assert ph.request_origin("https", "w5.apps.example.com:443") == "https://w5.apps.example.com"


# ----------------------------------------------------------------------------- tickets

def _signer(*keys: str) -> AppSigner:
    return AppSigner(SecretKeys(list(keys or [generate_key()])).derive(b"test"))


def test_a_ticket_opens_one_workload_for_one_minute():
    signer, now = _signer(), time.time()
    grant = Grant(user_id=3, workload_id=5, via="s:abc")
    ticket = signer.ticket(grant, now=now)
    assert signer.check_ticket(ticket, 5, now=now + TICKET_TTL_S - 1) == grant
    assert signer.check_ticket(ticket, 6, now=now) is None  # another workload
    assert signer.check_ticket(ticket, 5, now=now + TICKET_TTL_S + 1) is None  # expired
    tampered = ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB")
    assert signer.check_ticket(tampered, 5, now=now) is None
    assert signer.check_ticket(ticket + "x" * 2000, 5, now=now) is None
    assert _signer().check_ticket(ticket, 5, now=now) is None  # another server's key
    # A ticket is not a credential, nor the other way round (separate salts).
    assert signer.check_credential(ticket, 5, now=now) is None
    assert signer.check_ticket(signer.credential(grant, now=now), 5, now=now) is None


def test_a_credential_is_for_its_workload_and_survives_key_rotation():
    old, new = generate_key(), generate_key()
    grant, now = Grant(3, 5, "t:hash"), time.time()
    credential = _signer(old).credential(grant, now=now)
    rotated = _signer(new, old)
    assert rotated.check_credential(credential, 5, now=now) == (grant, int(now) + CREDENTIAL_TTL_S)
    assert rotated.check_credential(credential, 1, now=now) is None
    assert rotated.check_credential(credential, 5, now=now + CREDENTIAL_TTL_S + 1) is None
    assert _signer(new).check_credential(credential, 5, now=now) is None  # the old key dropped
