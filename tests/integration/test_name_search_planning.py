"""How a name search is planned: what the database is asked before the page is read."""

from __future__ import annotations

from sqlalchemy import event

from corral.services import listing, name_search
from tests.integration.conftest import submit


def _statements(engine, fn):
    seen: list[str] = []

    def log(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", log)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", log)
    return seen


def test_a_name_term_is_estimated_once_not_on_every_request(world, monkeypatch):
    for name in ("quokka-one", "quokka-two", "llama-a", "other"):
        assert submit(world.alice, name=name).status_code == 201
    engine = world.api.engine
    name_search._ESTIMATES._items.clear()

    def search(term):
        response = world.alice.get("/api/v1/workloads", params={"project": "vision", "name": term})
        assert response.status_code == 200, response.text
        return response.json()

    first = _statements(engine, lambda: search("QUOKKA"))
    again = _statements(engine, lambda: search("quokka"))  # case differs: the same term
    other = _statements(engine, lambda: search("llama"))
    explains = [[s for s in run if s.lstrip().upper().startswith("EXPLAIN")] for run in (first, again, other)]
    if engine.dialect.name == "postgresql":
        # The planner's estimate is asked for the first request of a term, then kept.
        assert [len(e) for e in explains] == [1, 0, 1]
    else:
        # SQLite asks its FTS5 trigram table (bounded) instead: a rare term every time (its
        # matches are the rows to read), a common one once.
        assert explains == [[], [], []]
        assert all(any("workload_names MATCH" in s for s in run) for run in (first, again))
    body = search("quokka")
    assert (body["total"], body["total_exact"]) == (2, True)  # rare: counted exactly
    assert sorted(w["name"] for w in body["items"]) == ["quokka-one", "quokka-two"]
    if engine.dialect.name == "sqlite":
        monkeypatch.setattr(listing, "RARE_NAME_MATCHES", 1)  # two matches are now "common"
        probes = [[s for s in _statements(engine, lambda: search("quokka")) if "MATCH" in s] for _ in range(3)]
        assert [len(p) for p in probes] == [1, 0, 0]
        assert search("quokka")["total"] == 2  # estimated from the sample, which holds them all


def test_estimates_are_kept_per_scope_and_expire(monkeypatch):
    cache = name_search._EstimateCache(size=2, ttl_s=60)
    clock = [1000.0]
    monkeypatch.setattr(name_search.time, "monotonic", lambda: clock[0])
    cache.put(("db", "llama", (1,)), 5000.0)
    assert cache.get(("db", "llama", (1,))) == 5000.0
    assert cache.get(("db", "llama", (2,))) is None  # another project: its own estimate
    cache.put(("db", "a", None), 1.0)
    cache.put(("db", "b", None), 2.0)  # past the size: the oldest goes
    assert cache.get(("db", "llama", (1,))) is None and cache.get(("db", "b", None)) == 2.0
    clock[0] += 61
    assert cache.get(("db", "b", None)) is None
