"""Keyset pages of the Workloads table: next_cursor / prev_cursor through the API, on both databases."""

from __future__ import annotations

import base64
import json

import pytest

from corral.domain import page_cursor
from corral.services.listing import SORT_COLUMNS
from tests.integration.conftest import submit

STATUSES = ["Pending", "Deleted"]


def _get(client, **params):
    response = client.get("/api/v1/workloads", params={"project": "vision", "status": STATUSES, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _submit(world, i):
    """Workloads with many equal sort values (so the created_at/id tiebreak decides), names
    that differ only in case, two creators, three types, two statuses."""
    kind = ("custom", "training", "evaluation")[i % 3]
    extra = {"custom": {}, "training": {"dataset": "d"}, "evaluation": {"model": "m", "tasks": ["t"]}}[kind]
    client = world.admin if i % 4 == 0 else world.alice
    created = submit(client, name=("Job-a", "job-A", "job-b", "alpha")[i % 4], type=kind,
                     resources={"gpu": i % 2, "cpu": 1 + i % 3, "memory": f"{1 + i % 2}Gi"}, **extra)
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    if i % 5 == 0:  # never placed: Deleted at once
        assert client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    return wid


def _walk_forward(world, sort, page_size, insert_between=False):
    pages, next_id = [], 1000
    body = _get(world.alice, sort=sort, page_size=page_size)
    while True:
        pages.append(body)
        assert body["page"] == len(pages)
        if body["next_cursor"] is None:
            return pages
        if insert_between and next_id < 1003:  # rows added between pages land before or after the cursor
            _submit(world, next_id)
            next_id += 1
        body = _get(world.alice, sort=sort, page_size=page_size, cursor=body["next_cursor"])


def _all(world, sort):
    """Every row, in order, by page number."""
    out, page = [], 1
    while batch := _ids([_get(world.alice, sort=sort, page_size=100, page=page)]):
        out += batch
        page += 1
    return out


def _ids(pages):
    return [w["id"] for p in pages for w in p["items"]]


def test_cursor_pages_see_every_row_once_under_every_sort_with_inserts_between(world):
    original = {_submit(world, i) for i in range(14)}
    for column in SORT_COLUMNS:
        for sort in (column, f"-{column}"):
            forward = _walk_forward(world, sort, page_size=3, insert_between=True)
            seen = _ids(forward)
            assert len(seen) == len(set(seen)), (sort, seen)  # nothing twice
            assert original <= set(seen), (sort, original - set(seen))  # nothing missed
            assert all(len(p["items"]) == 3 for p in forward[:-1])
            # What OFFSET paging gives now (every insert done) is the same order.
            everything = _all(world, sort)
            assert seen == [i for i in everything if i in set(seen)], sort
            # Nothing changing: forward by next_cursor, then back by prev_cursor, are OFFSET's pages.
            still = _walk_forward(world, sort, page_size=3)
            assert [_ids([p]) for p in still] == [everything[i:i + 3] for i in range(0, len(everything), 3)], sort
            back, body = [still[-1]], still[-1]
            while body["prev_cursor"] is not None:
                body = _get(world.alice, sort=sort, page_size=3, cursor=body["prev_cursor"])
                back.insert(0, body)
            assert [p["page"] for p in back] == [p["page"] for p in still]
            assert [_ids([p]) for p in back] == [_ids([p]) for p in still], sort
            # Back while rows are added: nothing twice, and page 1 is the first page as it is now.
            back, body = [], still[-1]
            while body["prev_cursor"] is not None:
                if len(back) < 3:
                    _submit(world, 2000 + len(back))
                body = _get(world.alice, sort=sort, page_size=3, cursor=body["prev_cursor"])
                back.insert(0, body)
            assert back[0]["page"] == 1 and back[0]["prev_cursor"] is None
            assert _ids([back[0]]) == _ids([_get(world.alice, sort=sort, page_size=3)]), sort
            assert len(_ids(back)) == len(set(_ids(back))), sort


def test_a_jump_by_page_number_gives_the_rows_offset_would_from_either_end(world):
    for i in range(11):
        _submit(world, i)
    for sort in ("-created_at", "name", "-gpu"):
        everything = _all(world, sort)
        for page in range(1, 6):
            body = _get(world.alice, sort=sort, page_size=3, page=page)
            assert [w["id"] for w in body["items"]] == everything[(page - 1) * 3:page * 3], (sort, page)
            assert (body["next_cursor"] is not None) == (page * 3 < len(everything))
            assert (body["prev_cursor"] is not None) == (1 < page <= 4)
            if body["next_cursor"]:  # a jump, then next by cursor
                after = _get(world.alice, sort=sort, page_size=3, cursor=body["next_cursor"])
                assert after["page"] == page + 1
                assert [w["id"] for w in after["items"]] == everything[page * 3:(page + 1) * 3]


def _bad(client, cursor, **params):
    response = client.get("/api/v1/workloads", params={"project": "vision", "cursor": cursor, **params})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_cursor", "cursor")
    return error["message"]


def _forge(*fields):
    return base64.urlsafe_b64encode(json.dumps(list(fields)).encode()).decode().rstrip("=")


def test_garbage_tampered_and_misused_cursors_are_a_clear_400(world):
    for i in range(5):
        _submit(world, i)
    page = world.alice.get("/api/v1/workloads", params={"project": "vision", "page_size": 2}).json()
    good = page["next_cursor"]
    assert page_cursor.decode(good, "created_at", _fingerprint_of(good), 10_000_000).page == 2
    assert "not one this server made" in _bad(world.alice, "not a cursor!", page_size=2)
    assert "not one this server made" in _bad(world.alice, good[:-6], page_size=2)
    assert "too long" in _bad(world.alice, "x" * 5000, page_size=2)
    assert "another sort" in _bad(world.alice, good, page_size=2, sort="name")
    assert "another sort" in _bad(world.alice, good, page_size=3)
    assert "another sort" in _bad(world.alice, good, page_size=2, type="training")
    assert "not 5" in _bad(world.alice, good, page_size=2, page=5)
    fingerprint = _fingerprint_of(good)
    for values in (["2026-01-01T00:00:00+00:00", "1 OR 1=1"], ["2026-01-01T00:00:00", 1], [1, 1],
                   ["2026-01-01T00:00:00+00:00"], ["2026-01-01T00:00:00+00:00", 2**70], "oops",
                   ["2026-01-01T00:00:00+00:00", True]):
        assert "not one this server made" in _bad(world.alice, _forge(1, "after", 2, "created_at", fingerprint,
                                                                      values), page_size=2)
    for direction, pg in (("sideways", 2), ("after", 0), ("after", "2"), ("after", 10**9)):
        _bad(world.alice, _forge(1, direction, pg, "created_at", fingerprint, ["2026-01-01T00:00:00+00:00", 1]),
             page_size=2)
    # The same page, well-formed: accepted (the checks above refuse the token, not the query).
    assert world.alice.get("/api/v1/workloads", params={"project": "vision", "page_size": 2,
                                                        "cursor": good}).status_code == 200


def _fingerprint_of(token):
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))[4]


def test_a_cursor_never_reaches_past_the_callers_projects(world):
    vision = {_submit(world, i) for i in range(6)}
    speech = set()
    for i in range(4):
        created = submit(world.bob, project="speech", name=f"s{i}")
        assert created.status_code == 201
        speech.add(created.json()["id"])
    alices = world.alice.get("/api/v1/workloads", params={"project": "vision", "page_size": 2}).json()
    # Bob replays Alice's cursor: her project stays closed to him.
    replay = world.bob.get("/api/v1/workloads", params={"project": "vision", "page_size": 2,
                                                        "cursor": alices["next_cursor"]})
    assert replay.status_code in (403, 404), replay.text
    # Within his own project the cursor is for another query (project differs): refused.
    assert world.bob.get("/api/v1/workloads", params={"project": "speech", "page_size": 2,
                                                      "cursor": alices["next_cursor"]}).status_code == 400
    # A forged cursor made right for his own queries (the fingerprint is no secret), pointing
    # anywhere: only his project's rows ever come back.
    for project in ("speech", None):
        params = {"page_size": 2} | ({"project": project} if project else {})
        fingerprint = _fingerprint_of(world.bob.get("/api/v1/workloads", params=params).json()["next_cursor"])
        for key in (["9999-12-31T00:00:00+00:00", 2**62], ["2000-01-01T00:00:00+00:00", 0]):
            for direction in ("after", "before"):
                forged = _forge(1, direction, 2, "created_at", fingerprint, key)
                got = world.bob.get("/api/v1/workloads", params=params | {"cursor": forged})
                assert got.status_code == 200, got.text
                assert {w["id"] for w in got.json()["items"]} <= speech
                assert not {w["id"] for w in got.json()["items"]} & vision
    # Carol sees no project: the cursor is for another query, and is refused before anything is read.
    assert world.carol.get("/api/v1/workloads", params={"cursor": alices["next_cursor"], "page_size": 2}
                           ).status_code == 400


@pytest.mark.parametrize("sort", ["-created_at", "name"])
def test_the_python_client_pages_by_cursor(world, sort):
    import httpx

    from corral.client import CorralClient

    class Recording(httpx.BaseTransport):
        def __init__(self, inner):
            self.inner, self.urls = inner, []

        def handle_request(self, request):
            self.urls.append(request.url)
            answer = self.inner.handle_request(request)
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.read())

    original = {_submit(world, i) for i in range(7)}
    transport = Recording(world.api.client._transport)
    client = CorralClient("http://testserver", world.api.tokens["alice@example.com"], transport=transport)
    seen = []
    for workload in client.iter_workloads(project="vision", page_size=3, sort=sort, statuses=STATUSES):
        seen.append(workload.id)
        if len(seen) == 3:  # a workload added after the first page: no row comes twice
            _submit(world, 100)
    assert len(seen) == len(set(seen)) and original <= set(seen)
    pages = [u for u in transport.urls if u.path == "/api/v1/workloads"]
    assert len(pages) >= 3 and "cursor" not in pages[0].params
    assert all("cursor" in u.params and "page" not in u.params for u in pages[1:])
