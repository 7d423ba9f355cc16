"""How the client's requests travel: a method, a whole URL, headers and a body in; an
``Answer`` (status, reason, body) out, or ``CorralConnectionError`` with one wording.

Two senders behind one contract. ``HttpxSender`` (the default) keeps a connection pool,
and is what streams logs. ``StdlibSender`` sends through the standard library's urllib:
importing httpx costs more than a whole `corral workloads ls` otherwise does (~50 ms of a
~100 ms call: httpcore, and httpx's own command line, which loads click and pygments), so
a one-shot process (the `corral` command) uses this one. Both get their URL, headers and
body from ``CorralClient``, which makes every error from the ``Answer`` alike; neither
follows redirects, and both honour the *_proxy variables and SSL_CERT_FILE / SSL_CERT_DIR.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from json import loads
from typing import TYPE_CHECKING, Any, Protocol

from corral.client.errors import CorralConnectionError

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Answer:
    status_code: int
    reason_phrase: str
    content: bytes

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return loads(self.content)  # ValueError if it is not JSON


class Sender(Protocol):
    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer: ...

    def close(self) -> None: ...


def timed_out(base_url: str, exc: BaseException) -> CorralConnectionError:
    return CorralConnectionError(f"{base_url} did not answer in time ({type(exc).__name__})")


def unreachable(base_url: str, exc: object) -> CorralConnectionError:
    return CorralConnectionError(f"cannot reach {base_url}: {exc}")


def trust_nothing() -> ssl.SSLContext:
    """For a plain-http server: every request goes to it (no redirects are followed), so
    no TLS is ever spoken and loading the CA bundle (~30-80 ms, a third of a CLI call) is
    waste. Should TLS happen anyway, this context verifies against no CA: it fails closed."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def verifying_context() -> ssl.SSLContext:
    """For an https server: the CAs httpx trusts (SSL_CERT_FILE, SSL_CERT_DIR, else certifi's)."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class HttpxSender:
    def __init__(self, base_url: str, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        import httpx

        self.base_url = base_url
        self.client = httpx.Client(timeout=timeout, transport=transport,
                                   verify=trust_nothing() if base_url.startswith("http://") else True)

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        import httpx

        try:
            response = self.client.request(method, url, headers=headers, content=body)
        except httpx.TimeoutException as exc:
            raise timed_out(self.base_url, exc) from None
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from None
        return Answer(response.status_code, response.reason_phrase, response.content)

    def close(self) -> None:
        self.client.close()


class StdlibSender:
    """One connection per request (a CLI call makes one or two), through urllib's opener:
    proxies from the environment, TLS with ``verifying_context``, no redirects."""

    def __init__(self, base_url: str, timeout: float) -> None:
        import urllib.request

        self.base_url = base_url
        self.timeout = timeout
        class NoRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # a 3xx is the answer, as with httpx (which follows none unless told to)

        tls = urllib.request.HTTPSHandler(context=verifying_context()) if base_url.startswith("https://") else None
        self.opener = urllib.request.build_opener(NoRedirects, *([tls] if tls else []))

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        import http.client
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return Answer(response.status, response.reason, response.read())
        except urllib.error.HTTPError as exc:  # an answer all the same (4xx, 5xx, an unfollowed 3xx)
            with exc:
                return Answer(exc.code, str(exc.reason), exc.read())
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise timed_out(self.base_url, exc.reason) from None
            raise unreachable(self.base_url, exc.reason) from None
        except TimeoutError as exc:
            raise timed_out(self.base_url, exc) from None
        except (OSError, http.client.HTTPException) as exc:
            raise unreachable(self.base_url, exc) from None

    def close(self) -> None:
        pass
