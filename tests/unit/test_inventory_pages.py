"""The agent's model inventory in pages (``agent/inventory.py``)."""

from __future__ import annotations

import json

from corral.agent.inventory import pages


def _entries(n: int, project: str = "p") -> list[dict]:
    return [{"project": project, "name": f"m{i:03d}", "source": "s" * 50} for i in range(n)]


def test_pages_cover_the_sorted_inventory_each_naming_its_range():
    entries = _entries(10, "b") + _entries(5, "a")
    out = pages(list(reversed(entries)), max_entries=4)
    assert [len(p) for p, _, _ in out] == [4, 4, 4, 3]
    flat = [(e["project"], e["name"]) for p, _, _ in out for e in p]
    assert flat == sorted(flat) and len(flat) == 15
    assert out[0][1] is None and out[-1][2] is None  # from the start, to the end
    for (page, _, through), (_, after, _) in zip(out, out[1:]):
        assert through == after == (page[-1]["project"], page[-1]["name"])  # ranges meet, no gap or overlap
    for page, after, through in out:
        assert all((after is None or (e["project"], e["name"]) > after)
                   and (through is None or (e["project"], e["name"]) <= through) for e in page)


def test_pages_stay_under_the_byte_budget_and_an_empty_store_is_one_empty_page():
    out = pages(_entries(100), max_bytes=1000)
    assert len(out) > 1 and all(len(json.dumps(p)) <= 1000 for p, _, _ in out)
    assert sum(len(p) for p, _, _ in out) == 100
    assert pages([]) == [([], None, None)]
