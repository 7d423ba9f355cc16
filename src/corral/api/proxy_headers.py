"""What the workload proxy changes in the headers it passes on, both ways. Pure: no I/O.

Towards the workload: nothing of Corral's credentials (``Authorization``, Corral's
cookies), and the service sees itself addressed as it listens (``Host``, and ``Origin``
and ``Referer`` of its own origin rewritten to its own address), so services that guard
against DNS rebinding and cross-site requests, as Jupyter does, keep their defences on.

Towards the browser: no ``Set-Cookie`` named like Corral's, and no ``Domain=`` attribute
on any, so a workload cannot plant cookies on Corral's origin or on its siblings; its
own redirects to where it listens point to its origin instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from corral.services.app_origins import is_corral_cookie

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade"})
# Never forwarded to a workload, whatever the case: the proxy sets or filters them itself.
_NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "cookie", "origin", "referer"}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_DOMAIN_ATTRIBUTE = re.compile(r";\s*domain\s*=[^;]*", re.IGNORECASE)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, the default port left out, as browsers write Origin."""
    parts = urlsplit(url)
    port = parts.port
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    shown = "" if port is None or _DEFAULT_PORTS.get(parts.scheme) == port else f":{port}"
    return f"{parts.scheme}://{host}{shown}"


def request_origin(scheme: str, host_header: str | None) -> str:
    """The origin a request was addressed to (its scheme and ``Host``)."""
    return origin_of(f"{scheme}://{(host_header or '').strip().lower()}")


def same_origin(origin: str | None, own: str) -> bool:
    if not origin or origin == "null":
        return False
    try:
        return origin_of(origin.strip().lower()) == own
    except ValueError:  # a malformed port
        return False


def split_cookies(cookie_headers: Iterable[str]) -> list[tuple[str, str]]:
    """(name, value) pairs of ``Cookie`` headers, in order, duplicates kept, values verbatim."""
    pairs = []
    for header in cookie_headers:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name:
                pairs.append((name, value))
    return pairs


def cookie_values(cookie_headers: Iterable[str], name: str) -> list[str]:
    """Every value sent for that cookie name (a sibling origin may have planted one more)."""
    return [v.strip('"') for n, v in split_cookies(cookie_headers) if n == name]


def forwarded_cookie(cookie_headers: Iterable[str]) -> str | None:
    """The ``Cookie`` header for the workload: the browser's cookies less Corral's."""
    kept = [f"{n}={v}" for n, v in split_cookies(cookie_headers) if not is_corral_cookie(n)]
    return "; ".join(kept) or None


def upstream_request_headers(headers: Headers, *, own_origin: str, upstream: str) -> Headers:
    """Request headers for the workload's service at ``upstream`` (its origin)."""
    out = [(k, v) for k, v in headers if k.lower() not in _NOT_FORWARDED]
    out.append(("host", urlsplit(upstream).netloc))
    cookie = forwarded_cookie(v for k, v in headers if k.lower() == "cookie")
    if cookie:
        out.append(("cookie", cookie))
    for name, value in headers:
        if name.lower() == "origin":
            # The page's own origin becomes the service's; another is passed on for the
            # service to refuse (its cross-origin checks compare Origin with Host).
            out.append(("origin", upstream if same_origin(value, own_origin) else value))
        elif name.lower() == "referer" and value.startswith(own_origin + "/"):
            out.append(("referer", upstream + value[len(own_origin):]))
    return out


def sanitise_set_cookie(value: str) -> str | None:
    """An upstream ``Set-Cookie`` as it may reach the browser: None for Corral's names,
    else without any ``Domain=`` (a host-only cookie of the workload's origin)."""
    name = value.split("=", 1)[0].strip()
    if not name or is_corral_cookie(name):
        return None
    return _DOMAIN_ATTRIBUTE.sub("", value)


def browser_response_headers(headers: Headers, *, own_origin: str, upstream: str,
                             keep_cookies: bool = True) -> Headers:
    """Response headers for the browser (``content-length`` kept: the body is passed as is)."""
    out: Headers = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            continue
        if lower == "set-cookie":
            cleaned = sanitise_set_cookie(value) if keep_cookies else None
            if cleaned is not None:
                out.append((name, cleaned))
            continue
        if lower == "location" and (value == upstream or value.startswith(upstream + "/")):
            value = own_origin + value[len(upstream):]
        out.append((name, value))
    return out
