"""Where a workload's web content is served: an origin of its own, never Corral's.

A page served by a workload (a workspace, an inference UI) runs whatever JavaScript its
owner put there. Under Corral's origin it could call Corral as whoever opened it; on an
origin of its own the browser keeps it away from Corral's cookies, storage and API.
So every workload with a service answers at

    <apps scheme>://w<workload id>.<apps domain>[:<apps port>]/

(``http://w42.localhost:8000/`` by default: browsers resolve ``*.localhost`` to this
machine, so nothing needs DNS). A request's ``Host`` decides which side answers:
``w<id>.<apps domain>`` goes to the workload's proxy, any other name under the apps
domain answers 404, and everything else is Corral.

Pure: no I/O. ``AppOrigins.from_settings`` builds the configuration once per app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlencode, urlsplit

# Corral's own cookies are named like this (with or without a __Host-/__Secure- prefix):
# never forwarded to a workload, never accepted from one.
COOKIE_STEM = "corral_"
# The workload origin's cookie holding the viewer's workload-scoped credential.
APP_COOKIE = "corral_app"
# Paths on a workload origin that Corral keeps for itself (the sign-in hand-over).
RESERVED_PREFIX = "/__corral/"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_ID_DIGITS = 18  # below 2**63: the database's ids


class HostKind(Enum):
    CORRAL = "corral"
    WORKLOAD = "workload"
    UNKNOWN_APP = "unknown_app"  # a name under the apps domain that is no workload's: 404


@dataclass(frozen=True, slots=True)
class AppOrigins:
    domain: str  # "localhost", "apps.example.com"
    scheme: str  # "http" | "https"
    port: int  # the public port browsers use
    corral_url: str  # Corral's own origin, where a viewer without a credential is sent to sign in

    @classmethod
    def from_settings(cls, settings: Any) -> AppOrigins:
        domain = normalise_domain(settings.apps_domain)
        corral_url = (settings.public_url or _own_url(settings.host, settings.port)).rstrip("/")
        corral_host = (urlsplit(corral_url).hostname or "").lower()
        if corral_host.endswith("." + domain):  # its names answer 404 or are workloads: never Corral
            raise ValueError(f"Corral's own host {corral_host} is inside the apps domain {domain}: "
                             "choose an apps domain that is not a parent of Corral's host")
        return cls(domain=domain, scheme=settings.apps_scheme, port=settings.apps_port or settings.port,
                   corral_url=corral_url)

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    def host(self, workload_id: int) -> str:
        return f"w{workload_id}.{self.domain}"

    def origin(self, workload_id: int) -> str:
        port = "" if _DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{self.host(workload_id)}{port}"

    def classify(self, host_header: str | None) -> tuple[HostKind, int | None]:
        """Which side answers a request with this ``Host``."""
        host = hostname_of(host_header or "")
        if not host.endswith("." + self.domain):
            return HostKind.CORRAL, None
        label = host[: -len(self.domain) - 1]
        match = re.fullmatch(rf"w([1-9][0-9]{{0,{_MAX_ID_DIGITS - 1}}})", label)
        if match is None:
            return HostKind.UNKNOWN_APP, None
        return HostKind.WORKLOAD, int(match.group(1))

    def open_path(self, workload_id: int, next_path: str | None = None) -> str:
        """Corral's page that signs the viewer in to the workload's origin and sends them there."""
        path = f"/workloads/{workload_id}/open"
        return path + (f"?{urlencode({'next': next_path})}" if next_path and next_path != "/" else "")

    def cookie_name(self) -> str:
        """The credential cookie: ``__Host-`` (host-only, Secure, Path=/, no Domain) where https allows it."""
        return f"__Host-{APP_COOKIE}" if self.secure else APP_COOKIE


def normalise_domain(value: str) -> str:
    domain = value.strip().lower().removeprefix("*.").strip(".")
    if not domain or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", domain) or ".." in domain:
        raise ValueError(f"CORRAL_APPS_DOMAIN {value!r} is not a domain name")
    return domain


def hostname_of(host_header: str) -> str:
    """The name in a ``Host`` header: lower case, without port or trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):  # an IPv6 literal: never a workload's name
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


def _own_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_corral_cookie(name: str) -> bool:
    """Corral's cookie names, whatever prefix: the session, the sign-in form's, the workload credential."""
    bare = name.strip().lower()
    for prefix in ("__host-", "__secure-"):
        bare = bare.removeprefix(prefix)
    return bare.startswith(COOKIE_STEM)


def safe_path(target: str | None) -> str:
    """A path on the same origin, or ``/``: never a way to another site (no open redirect)."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return "/"
    return target


# ----------------------------------------------------------------------------- endpoints

def service_endpoint(endpoints: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(component kind, URL) of the service a workload's origin forwards to: its server's
    endpoint, else the first one reported."""
    found = {k: v for k, v in (endpoints or {}).items() if isinstance(v, str) and v.startswith(("http://", "https://"))}
    if not found:
        return None
    kind = "server" if "server" in found else sorted(found)[0]
    return kind, found[kind]


def upstream_url(endpoint: str, path: str, query: str = "") -> str:
    """Where a request for ``path`` on the workload's origin goes: the same path on the
    service's own origin (a service's endpoint path, like vLLM's /v1, is part of its URLs)."""
    parts = urlsplit(endpoint)
    url = f"{parts.scheme}://{parts.netloc}{path if path.startswith('/') else '/' + path}"
    return f"{url}?{query}" if query else url


def public_endpoints(origins: AppOrigins, workload_id: int, endpoints: Mapping[str, Any] | None) -> dict[str, str]:
    """What users are shown: the service's URL on the workload's origin (for API clients,
    with a token), never where it really listens."""
    found = service_endpoint(endpoints)
    if found is None:
        return {}
    kind, url = found
    path = urlsplit(url).path or "/"
    return {kind: origins.origin(workload_id) + path}


def present(detail: dict[str, Any], origins: AppOrigins, corral_url: str | None = None) -> dict[str, Any]:
    """A workload's details as users see them: public endpoint URLs, and ``open_url``
    (Corral's page that opens the service in a browser) when it has a service."""
    endpoints = public_endpoints(origins, detail["id"], detail.get("endpoints"))
    open_url = None
    if endpoints:
        open_url = (corral_url or "").rstrip("/") + origins.open_path(detail["id"])
    return {**detail, "endpoints": endpoints, "open_url": open_url}
