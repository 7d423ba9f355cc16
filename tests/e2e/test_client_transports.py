"""The client's two ways to send a request (httpx; the standard library with light=True,
what the `corral` command uses) must be one client: the same URL, headers and body go out,
and every answer, error and failure comes back the same. Each test runs both against a
real server: `corral serve`, or a small http.server for answers Corral never gives.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corral.client import CorralAPIError, CorralClient, CorralConnectionError
from tests.e2e.conftest import LiveServer, free_port


def outcome(call: Callable[[], Any]) -> Any:
    """What a call gave: its value (models as JSON) or its error's parts."""
    try:
        value = call()
    except CorralAPIError as exc:
        return ("api error", exc.status_code, exc.code, exc.message, exc.field, exc.details)
    except CorralConnectionError as exc:
        return ("connection error", exc.message)
    if isinstance(value, list):
        return [v.model_dump(mode="json") for v in value]
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def both(url: str, token: str, calls: Callable[[CorralClient], list[Callable[[], Any]]], **kwargs: Any
         ) -> tuple[list[Any], list[Any]]:
    """The outcomes of the same calls through httpx and through the standard library."""
    results = []
    for light in (False, True):
        with CorralClient(url, token, light=light, **kwargs) as client:
            results.append([outcome(call) for call in calls(client)])
    return results[0], results[1]


def test_the_same_answers_from_the_live_server(live_server: LiveServer) -> None:
    token = live_server.admin_token
    with CorralClient(live_server.url, token) as setup:
        setup.create_project("transports", description="créé — both ways")
        setup.set_quota("transports", "local", {"gpu": 0, "cpu": 0, "memory": 0}, "unbounded")

    def calls(c: CorralClient) -> list[Callable[[], Any]]:
        return [
            c.health,
            c.me,
            lambda: c.get_project("transports"),
            # Query values with spaces, slashes, non-ASCII and repeats reach the server intact.
            lambda: c.list_workloads(project="transports", name="a b/ü&x=1", statuses=["Delete Failed", "Running"],
                                     types=["Fine-Tuning", "custom"], sort="name"),
            lambda: c.list_quotas("transports"),
            lambda: c.get_workload(987654),  # 404
            lambda: c.get_project("no/such project"),  # 404, an escaped path segment
            lambda: c.create_project("transports"),  # 409, with a field
            lambda: c.submit_workload({"type": "fine_tuning", "name": "x", "project": "transports",
                                       "base_model": "m", "command": "train"}),  # 422: dataset
            lambda: c.set_quota("transports", "local", {"cpu": 10**9}),  # 422 beyond capacity
        ]

    plain, light = both(live_server.url, token, calls)
    assert light == plain
    assert plain[0]["status"] == "ok" and plain[1]["email"] == "admin@localhost"
    assert plain[2]["description"] == "créé — both ways"
    assert plain[3]["items"] == [] and plain[3]["total"] == 0
    assert plain[5][:3] == ("api error", 404, "not_found")
    assert plain[7][1:3] == (409, "already_exists") and plain[7][4] == "name"
    assert plain[8][1:3] == (422, "invalid") and plain[8][4] == "dataset"

    # A JSON body with non-ASCII text arrives as sent, and the same workload list comes back.
    outcomes = []
    for light_ in (False, True):
        with CorralClient(live_server.url, token, light=light_) as client:
            created = client.submit_workload({"type": "custom", "name": f"both-{int(light_)}",
                                              "project": "transports", "command": "echo ü"})
            detail = client.get_workload(created.id)
            outcomes.append((created.name, created.type_label, detail.spec.get("command")))
    assert outcomes == [("both-0", "Custom", "echo ü"), ("both-1", "Custom", "echo ü")]

    refused, refused_light = both(live_server.url, "crl_not-a-token", lambda c: [c.me])
    assert refused == refused_light and refused[0][:2] == ("api error", 401)


# --------------------------------------------------------------------------- answers Corral never gives

class Recorder(BaseHTTPRequestHandler):
    """Answers by path; remembers each request's method, path, headers and body."""

    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        Recorder.seen.append({"method": self.command, "path": self.path, "body": self.rfile.read(length),
                              **{k: self.headers.get(k) for k in ("Authorization", "Accept", "Content-Type",
                                                                  "User-Agent")}})
        path = self.path.split("?")[0]
        if path.endswith("/users/me"):
            self._send(502, b"<html>Bad gateway</html>", "text/html")
        elif path.endswith("/projects"):
            self._send(200, b"this is not JSON", "text/plain")
        elif path.endswith("/clusters"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.endswith("/tokens"):
            self._send(200, json.dumps([{"id": "not a number"}]).encode(), "application/json")
        else:
            self._send(418, b"", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_odd_answers_and_what_was_sent(odd_server: str) -> None:
    def calls(c: CorralClient) -> list[Callable[[], Any]]:
        return [c.me, c.list_projects, c.list_clusters, c.list_tokens,
                lambda: c.create_user("zoë@example.com", display_name="Zoë"),
                lambda: c.list_workloads(name="a b", statuses=["Running"])]

    plain, light = both(odd_server + "/api/v1/", "crl_secret", calls)
    assert light == plain
    assert plain[0] == ("api error", 502, "http_502", "<html>Bad gateway</html>", None, [])
    assert plain[1][:3] == ("api error", 200, "bad_response") and "not JSON" in plain[1][3]
    assert plain[2][:3] == ("api error", 302, "bad_response")  # a redirect is not followed
    assert plain[3][:3] == ("api error", 200, "bad_response") and "Token" in plain[3][3]
    assert plain[4][:3] == ("api error", 418, "http_418")  # an empty body: the reason phrase
    assert "teapot" in plain[4][3].lower()

    half = len(Recorder.seen) // 2
    sent_plain, sent_light = Recorder.seen[:half], Recorder.seen[half:]
    assert sent_light == sent_plain
    assert sent_plain[0]["User-Agent"].startswith("corral-client/")
    create = sent_plain[4]
    assert (create["method"], create["path"], create["Content-Type"]) == ("POST", "/api/v1/users", "application/json")
    assert json.loads(create["body"]) == {"email": "zoë@example.com", "role": "member", "display_name": "Zoë"}
    assert sent_plain[0]["Authorization"] == "Bearer crl_secret" and sent_plain[0]["Accept"] == "application/json"
    listing = sent_plain[5]["path"]
    assert listing.startswith("/api/v1/workloads?") and {"name=a%20b", "status=Running"} <= set(
        listing.split("?")[1].split("&"))


def test_unreachable_and_silent_servers() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    plain, light = both(closed, "crl_x", lambda c: [c.me])
    assert plain == light and plain[0][0] == "connection error"
    assert plain[0][1].startswith(f"cannot reach {closed}: ") and "refused" in plain[0][1].lower()

    # Listens (the kernel completes the handshake) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        plain, light = both(url, "crl_x", lambda c: [c.me], timeout=0.5)
    for result in (plain, light):
        assert result[0][0] == "connection error" and result[0][1].startswith(f"{url} did not answer in time (")


# --------------------------------------------------------------------------- https

def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral-test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_is_verified_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https server is verified against SSL_CERT_FILE when set (else certifi's CAs), both
    ways: its own CA trusted, the call gets its answer; not trusted, a connection error."""
    cert, key = _certificate(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted, trusted_light = both(url, "crl_x", lambda c: [c.me])
        assert trusted == trusted_light == [("api error", 502, "http_502", "<html>Bad gateway</html>", None, [])]

        monkeypatch.delenv("SSL_CERT_FILE")  # certifi's CAs do not know this one
        refused, refused_light = both(url, "crl_x", lambda c: [c.me])
        for result in (refused, refused_light):
            assert result[0][0] == "connection error" and "CERTIFICATE_VERIFY_FAILED" in result[0][1], result
    finally:
        server.shutdown()
        server.server_close()
