"""A typed, synchronous client of Corral's REST API (/api/v1).

    from corral.client import CorralClient

    with CorralClient("http://127.0.0.1:8000", token) as corral:
        page = corral.list_workloads(project="default", statuses=["Running"])

Every method returns a model from ``corral.client.models``; an error answer raises
``CorralAPIError`` (status_code, code, message, field), an unreachable server
``CorralConnectionError``. The client speaks HTTP only: it imports nothing of the server.
The token is sent as a bearer header and never logged, printed or kept in a repr.

``light=True`` (what the `corral` command uses): plain requests through the standard
library instead of httpx, whose import costs half a CLI call (corral.client.transport).
The URL, headers, body and every error are made here, alike for both.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

from corral import __version__
from corral.client.answers import M, api_error, parse, parse_list
from corral.client.models import (
    BulkDeleteResult,
    Cluster,
    ClusterCreated,
    Evaluations,
    Member,
    Membership,
    ModelDetail,
    ModelPage,
    Project,
    Quota,
    Secret,
    Token,
    TokenCreated,
    User,
    Workload,
    WorkloadCreated,
    WorkloadDetail,
    WorkloadPage,
    WorkloadStats,
)
from corral.client.transport import Answer, HttpxSender, Sender, StdlibSender, timed_out, unreachable
from corral.domain.statuses import WorkloadStatus
from corral.domain.workload_types import WorkloadType

if TYPE_CHECKING:
    import httpx

API_PREFIX = "/api/v1"


def normalise_server(url: str) -> str:
    """``host:8000``, ``http://host:8000/`` or ``http://host:8000/api/v1`` -> ``http://host:8000``."""
    url = url.strip()
    if not url:
        raise ValueError("empty server URL")
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url


def _segment(value: str | int) -> str:
    """One path segment, escaped (an email holds '@', a name could hold '/')."""
    return quote(str(value), safe="@")


def _normalised_type(value: str) -> str:
    try:
        return WorkloadType.parse(value).value
    except ValueError:
        return value  # let the server explain what it accepts


def _normalised_status(value: str) -> str:
    try:
        return WorkloadStatus.parse(value).value
    except ValueError:
        return value


class CorralClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30, *,
                 transport: httpx.BaseTransport | None = None, light: bool = False) -> None:
        """``light``: for a one-shot process (the `corral` command): requests through the
        standard library (no connection pool; logs still stream through httpx), and the
        models' validators built without pydantic plugins. ``transport``: httpx's, not light."""
        token = (token or "").strip()
        if not token:
            raise ValueError("a token is required")
        if not token.isascii() or any(ch.isspace() or not ch.isprintable() for ch in token):
            raise ValueError("the token holds characters no API token has (is it the right file?)")
        if light and transport is not None:
            raise ValueError("a transport is httpx's: not with light=True")
        self.base_url = normalise_server(base_url)
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"corral-client/{__version__}",
                         "Accept": "application/json"}
        self._timeout = timeout
        self._transport = transport
        self._light = light
        self._sender: Sender = StdlibSender(self.base_url, timeout) if light else self._httpx()
        self._streamer: HttpxSender | None = None if light else self._sender  # type: ignore[assignment]

    def _httpx(self) -> HttpxSender:
        return HttpxSender(self.base_url, self._timeout, self._transport)

    def __repr__(self) -> str:
        return f"CorralClient({self.base_url!r})"

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._sender.close()
        if self._streamer is not None and self._streamer is not self._sender:
            self._streamer.close()

    def __enter__(self) -> CorralClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _url(self, path: str, params: Any = None) -> str:
        """The API's URL of ``path``; ``params`` a dict or (key, value) pairs."""
        query = urlencode(params, doseq=True, quote_via=quote) if params else ""
        return f"{self.base_url}{API_PREFIX}{path}" + (f"?{query}" if query else "")

    def _request(self, method: str, path: str, *, params: Any = None, json: Any = None) -> Answer:
        headers, body = self._headers, None
        if json is not None:
            headers = {**headers, "Content-Type": "application/json"}
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        answer = self._sender.send(method, self._url(path, params), headers, body)
        if answer.is_error:
            raise api_error(answer)
        return answer

    def _parse(self, model: type[M], answer: Answer) -> M:
        return parse(model, answer, light=self._light)

    def _get(self, path: str, model: type[M], params: Any = None) -> M:
        return self._parse(model, self._request("GET", path, params=params))

    def _list(self, path: str, model: type[M], params: Any = None) -> list[M]:
        return parse_list(model, self._request("GET", path, params=params), light=self._light)

    def health(self) -> dict[str, Any]:
        """The server's /healthz answer (no authentication needed)."""
        answer = self._sender.send("GET", self.base_url + "/healthz", self._headers, None)
        if answer.is_error:
            raise api_error(answer)
        return answer.json()

    # ------------------------------------------------------------------ identity

    def me(self) -> User:
        return self._get("/users/me", User)

    def list_users(self) -> list[User]:
        return self._list("/users", User)

    def create_user(self, email: str, display_name: str | None = None, role: Literal["admin", "member"] = "member"
                    ) -> User:
        body = {"email": email, "role": role}
        if display_name is not None:
            body["display_name"] = display_name
        return self._parse(User, self._request("POST", "/users", json=body))

    def list_tokens(self) -> list[Token]:
        return self._list("/tokens", Token)

    def create_token(self, name: str, expires_in_days: int | None = None) -> TokenCreated:
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self._parse(TokenCreated, self._request("POST", "/tokens", json=body))

    def revoke_token(self, token_id: int) -> Token:
        return self._parse(Token, self._request("DELETE", f"/tokens/{int(token_id)}"))

    # ------------------------------------------------------------------ projects

    def list_projects(self) -> list[Project]:
        return self._list("/projects", Project)

    def get_project(self, name: str) -> Project:
        return self._get(f"/projects/{_segment(name)}", Project)

    def create_project(self, name: str, description: str = "", preemption_policy: str = "lower_priority"
                       ) -> Project:
        body = {"name": name, "description": description, "preemption_policy": preemption_policy}
        return self._parse(Project, self._request("POST", "/projects", json=body))

    def list_members(self, project: str) -> list[Member]:
        return self._list(f"/projects/{_segment(project)}/members", Member)

    def add_member(self, project: str, email: str) -> Membership:
        response = self._request("POST", f"/projects/{_segment(project)}/members", json={"email": email})
        return self._parse(Membership, response)

    def remove_member(self, project: str, email: str) -> None:
        self._request("DELETE", f"/projects/{_segment(project)}/members/{_segment(email)}")

    # ------------------------------------------------------------------ clusters and quotas

    def list_clusters(self) -> list[Cluster]:
        return self._list("/clusters", Cluster)

    def get_cluster(self, name: str) -> Cluster:
        return self._get(f"/clusters/{_segment(name)}", Cluster)

    def create_cluster(self, name: str, kind: str, description: str = "",
                       capacity: dict[str, Any] | None = None) -> ClusterCreated:
        """Register a cluster; ``capacity`` in the units of ``set_quota`` (``{"cpu": "64", "memory": "512Gi"}``)."""
        body: dict[str, Any] = {"name": name, "kind": kind, "description": description}
        if capacity is not None:
            body["capacity"] = capacity
        return self._parse(ClusterCreated, self._request("POST", "/clusters", json=body))

    def delete_cluster(self, name: str) -> None:
        """Remove a registered cluster (admins); refused (409) while it has workloads."""
        self._request("DELETE", f"/clusters/{_segment(name)}")

    def list_quotas(self, project: str) -> list[Quota]:
        return self._list(f"/projects/{_segment(project)}/quotas", Quota)

    def get_quota(self, project: str, cluster: str) -> Quota:
        return self._get(f"/projects/{_segment(project)}/quotas/{_segment(cluster)}", Quota)

    def set_quota(self, project: str, cluster: str, guaranteed: dict[str, Any],
                  limit: dict[str, Any] | Literal["unbounded"] | None = None) -> Quota:
        """Set (create or replace) a project's quota on a cluster.

        Amounts as a person writes them, read by the server: ``gpu`` a whole number; ``cpu``
        cores (``2``, ``0.5``, ``"2"``) or millicores as ``"500m"``; ``memory`` and
        ``ephemeral_storage`` bytes or ``"16Gi"``, ``"500M"``. A dimension left out of
        ``guaranteed`` is 0. The quota read back uses the same numbers (cpu in cores, memory
        in bytes): ``set_quota(p, c, q.guaranteed, q.limit)`` writes ``q`` back unchanged.

        ``limit``: None for a hard limit equal to the guarantee; ``"unbounded"`` to borrow
        any idle capacity; or a dict where a dimension given as None is unbounded and one
        left out equals its guarantee.
        """
        body: dict[str, Any] = {"guaranteed": guaranteed}
        if limit is not None:
            body["limit"] = limit
        return self._parse(Quota, self._request("PUT", f"/projects/{_segment(project)}/quotas/{_segment(cluster)}",
                                           json=body))

    def update_quota(self, project: str, cluster: str, guaranteed: dict[str, Any] | None = None,
                     limit: dict[str, Any] | Literal["unbounded"] | None = None, *, hard: bool = False) -> Quota:
        """Change only what is given of a project's quota on a cluster (creating it if there
        is none), read and written by the server in one transaction: two admins changing
        different dimensions at once both keep theirs. Amounts as in ``set_quota``; in
        ``limit`` a dimension given as None is unbounded; ``"unbounded"`` lifts them all;
        ``hard``: each limit not given equals its guarantee."""
        body: dict[str, Any] = {"hard": hard}
        if guaranteed:
            body["guaranteed"] = guaranteed
        if limit is not None:
            body["limit"] = limit
        return self._parse(Quota, self._request("PATCH", f"/projects/{_segment(project)}/quotas/{_segment(cluster)}",
                                           json=body))

    # ------------------------------------------------------------------ models and evaluations

    def list_models(self, project: str | None = None, *, cluster: str | None = None, name: str | None = None,
                    page: int = 1, page_size: int = 50) -> ModelPage:
        """Models in the stores of the caller's projects (or ``project``'s), by project and name."""
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        params.update({k: v for k, v in (("project", project), ("cluster", cluster), ("name", name)) if v})
        return self._get("/models", ModelPage, params=params)

    def get_model(self, model_id: int) -> ModelDetail:
        """One model and its evaluations (newest first), with ``metric_names`` to compare them."""
        return self._get(f"/models/{int(model_id)}", ModelDetail)

    def list_evaluations(self, project: str, *, model: str | None = None, cluster: str | None = None) -> Evaluations:
        """A project's evaluations (of ``model`` if given), newest first, with their metrics."""
        params = {k: v for k, v in (("project", project), ("model", model), ("cluster", cluster)) if v}
        return self._get("/evaluations", Evaluations, params=params)

    # ------------------------------------------------------------------ project secrets

    def list_secrets(self, project: str) -> list[Secret]:
        """The project's secrets: names and dates (values are never returned)."""
        return self._list(f"/projects/{_segment(project)}/secrets", Secret)

    def set_secret(self, project: str, name: str, value: str) -> Secret:
        """Create a project secret or replace its value. Workloads map it to an environment
        variable with ``secrets: {ENV_NAME: name}`` in their spec."""
        response = self._request("PUT", f"/projects/{_segment(project)}/secrets/{_segment(name)}",
                                 json={"value": value})
        return self._parse(Secret, response)

    def delete_secret(self, project: str, name: str) -> None:
        self._request("DELETE", f"/projects/{_segment(project)}/secrets/{_segment(name)}")

    # ------------------------------------------------------------------ workloads

    def submit_workload(self, spec: dict[str, Any]) -> WorkloadCreated:
        """Submit a workload spec; its ``type`` may be a label ("Fine-Tuning") or a value."""
        body = dict(spec)
        if isinstance(body.get("type"), str):
            body["type"] = _normalised_type(body["type"])
        return self._parse(WorkloadCreated, self._request("POST", "/workloads", json=body))

    def list_workloads(
        self,
        project: str | None = None,
        page: int | None = None,
        page_size: int = 20,
        sort: str = "-created_at",
        name: str | None = None,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        cluster: str | None = None,
        created_by: str | None = None,
        cursor: str | None = None,
    ) -> WorkloadPage:
        """One page of the Workloads table. Without statuses: every status but Deleted.
        ``cursor``: a page's ``next_cursor``/``prev_cursor``, with the same other arguments
        (faster than a page number past the first pages); ``page``: a jump, default 1."""
        params: list[tuple[str, str | int]] = [("page_size", page_size), ("sort", sort)]
        if page is not None:
            params.append(("page", page))
        if cursor is not None:
            params.append(("cursor", cursor))
        for key, value in (("project", project), ("name", name), ("cluster", cluster), ("created_by", created_by)):
            if value:
                params.append((key, value))
        params += [("type", _normalised_type(t)) for t in _as_list(types)]
        params += [("status", _normalised_status(s)) for s in _as_list(statuses)]
        return self._get("/workloads", WorkloadPage, params=params)

    def iter_workloads(
        self,
        project: str | None = None,
        *,
        page_size: int = 100,
        sort: str = "-created_at",
        name: str | None = None,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        cluster: str | None = None,
        created_by: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Workload]:
        """Every matching workload, page after page (at most ``limit`` if given)."""
        cursor: str | None = None
        seen = 0
        while True:  # by cursor: each page starts where the last ended, with no OFFSET
            result = self.list_workloads(project=project, page_size=page_size, sort=sort, name=name, types=types,
                                         statuses=statuses, cluster=cluster, created_by=created_by, cursor=cursor)
            for item in result.items:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            if result.next_cursor is None:
                return
            cursor = result.next_cursor

    def get_workload(self, workload_id: int) -> WorkloadDetail:
        return self._get(f"/workloads/{int(workload_id)}", WorkloadDetail)

    def delete_workload(self, workload_id: int) -> WorkloadDetail:
        """Queue the workload for deletion; returns it (Deleting, or Deleted at once if never placed)."""
        return self._parse(WorkloadDetail, self._request("DELETE", f"/workloads/{int(workload_id)}"))

    def delete_workloads(
        self,
        ids: Sequence[int] | None = None,
        *,
        project: str | None = None,
        statuses: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        name: str | None = None,
        cluster: str | None = None,
        created_by: str | None = None,
        dry_run: bool = False,
    ) -> BulkDeleteResult:
        """Queue many workloads for deletion in one request: those with these ``ids``, or else
        those matching the filters (the list's; at least one). Each gets a result: done,
        already_deleting, already_deleted or not_found. ``dry_run``: change nothing, say what
        would happen."""
        body: dict[str, Any] = {"dry_run": dry_run}
        if ids is not None:
            body["ids"] = [int(i) for i in ids]
        else:
            flt: dict[str, Any] = {key: value for key, value in (
                ("project", project), ("name", name), ("cluster", cluster), ("created_by", created_by)) if value}
            if statuses:
                flt["status"] = [_normalised_status(s) for s in _as_list(statuses)]
            if types:
                flt["type"] = [_normalised_type(t) for t in _as_list(types)]
            body["filter"] = flt
        return self._parse(BulkDeleteResult, self._request("POST", "/workloads/delete", json=body))

    def workload_stats(self, project: str) -> WorkloadStats:
        return self._get("/workloads/stats", WorkloadStats, params={"project": project})

    def workload_logs(self, workload_id: int, *, tail: int = 100, follow: bool = False,
                      component: int | None = None) -> Iterator[str]:
        """The workload's output: the last ``tail`` lines, then (``follow``) what follows,
        as text pieces while the component runs."""
        params: dict[str, Any] = {"tail": tail, "follow": str(follow).lower()}
        if component is not None:
            params["component"] = component
        return self._stream_text(f"/workloads/{int(workload_id)}/logs", params, endless=follow)

    def export_workloads_csv(self, project: str | None = None, sort: str = "-created_at", name: str | None = None,
                             types: Sequence[str] | None = None, statuses: Sequence[str] | None = None,
                             cluster: str | None = None, created_by: str | None = None) -> Iterator[str]:
        """Every workload the filters match (as ``list_workloads`` takes them; all pages) as
        CSV text, in pieces as the server streams it."""
        params: list[tuple[str, str | int]] = [("sort", sort)]
        for key, value in (("project", project), ("name", name), ("cluster", cluster), ("created_by", created_by)):
            if value:
                params.append((key, value))
        params += [("type", _normalised_type(t)) for t in _as_list(types)]
        params += [("status", _normalised_status(s)) for s in _as_list(statuses)]
        return self._stream_text("/workloads.csv", params)

    def _stream_text(self, path: str, params: Any, endless: bool = False) -> Iterator[str]:
        import httpx  # streaming is httpx's, light or not

        if self._streamer is None:
            self._streamer = self._httpx()
        url = self._url(path, params)
        try:
            with self._streamer.client.stream("GET", url, headers=self._headers,
                                              timeout=httpx.Timeout(30.0, read=None if endless else 30.0)) as response:
                if response.is_error:
                    raise api_error(Answer(response.status_code, response.reason_phrase, response.read()))
                yield from response.iter_text()
        except httpx.TimeoutException as exc:
            raise timed_out(self.base_url, exc) from None
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from None


def _as_list(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return list(values)
