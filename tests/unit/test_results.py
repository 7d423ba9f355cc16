"""Results and model store entries: what is accepted, what the agent turns into an error,
and the store's inventory read from disk."""

from __future__ import annotations

import json
import math
import os

import pytest

from corral.backends.local import modelstore
from corral.domain.results import (
    MAX_RESULT_BYTES,
    ResultError,
    check_result,
    merged_metrics,
    normalise_model_entry,
    normalise_result,
)


@pytest.mark.parametrize("result", [
    None,
    {"metrics": {"accuracy": 0.91, "samples": 1000, "note": "ok"}},
    {"model": "tiny-llama", "bytes": 12, "files": 1, "kind": "download", "source": "org/tiny"},
    {"error": "result refused: whatever"},
])
def test_accepted(result):
    assert check_result(result) == result


@pytest.mark.parametrize("result, words", [
    ([1, 2], "JSON object"),
    ({"metrics": {"a": math.nan}}, "metrics.a"),
    ({"metrics": {"a": math.inf}}, "metrics.a"),
    ({"metrics": {"a": True}}, "metrics.a"),
    ({"metrics": {"a": 2**70}}, "metrics.a"),
    ({"metrics": {"": 1}}, "name"),
    ({"metrics": {"a\n": 1}}, "name"),
    ({"model": "a/b"}, "result.model"),
    ({"bytes": -1}, "result.bytes"),
    ({"files": "3"}, "result.files"),
    ({"other": 1}, "unknown field"),
])
def test_refused(result, words):
    with pytest.raises(ResultError, match=words.replace(".", r"\.")):
        check_result(result)


def test_the_agent_flattens_nested_metrics_and_drops_unknown_fields():
    raw = {"metrics": {"hellaswag": {"acc": 0.5, "acc_norm": 0.6}, "mmlu": 0.4}, "path": "/x", "extra": [1]}
    assert normalise_result(raw) == {"metrics": {"hellaswag.acc": 0.5, "hellaswag.acc_norm": 0.6, "mmlu": 0.4},
                                     "path": "/x"}
    assert normalise_result({"metrics": 0.7}) == {"metrics": {"value": 0.7}}


def test_what_cannot_be_stored_becomes_an_error_the_server_accepts():
    for raw in ({"metrics": {"a": [1]}}, {"metrics": {f"m{i}": "x" * 200 for i in range(100)}}, "text",
                {"metrics": "high", "model": "kept"}):
        result = normalise_result(raw)
        assert "error" in result and check_result(result) == result
        assert len(json.dumps(result)) < MAX_RESULT_BYTES
    assert normalise_result({"metrics": "high", "model": "kept"})["model"] == "kept"


def test_merged_metrics():
    assert merged_metrics([None, {"metrics": {"a": 1}}, {"metrics": {"b": 2}, "error": "x"}]) == (
        {"a": 1, "b": 2}, "x")
    assert merged_metrics([{"model": "m"}]) == (None, None)


def test_model_entries_keep_what_is_valid():
    assert normalise_model_entry({"project": "p", "name": "bad name"}) is None
    assert normalise_model_entry({"project": "", "name": "a"}) is None
    entry = normalise_model_entry({"project": "p", "name": "m", "bytes": -5, "files": 2, "kind": "k" * 40,
                                   "source": "org/m", "workload_id": 0, "path": "/x"})
    assert entry == {"project": "p", "name": "m", "files": 2, "source": "org/m"}


def test_inventory_reads_manifests_never_through_links(tmp_path):
    for project, name in (("vision", "a"), ("vision", "b"), ("speech", "c")):
        model = tmp_path / project / "models" / name
        model.mkdir(parents=True)
        (model / "weights.bin").write_bytes(b"x" * 10)
        (model / modelstore.MANIFEST).write_text(json.dumps(
                {"name": name, "project": "forged", "kind": "download", "source": f"org/{name}", "bytes": 10,
                 "files": 1}))
    (tmp_path / "vision" / "models" / "no-manifest").mkdir()
    (tmp_path / "vision" / "models" / ".incoming-x-1").mkdir()
    # A project linking another's store (or one of its models) into its own: not listed.
    os.symlink(tmp_path / "vision" / "models" / "a", tmp_path / "speech" / "models" / "stolen")
    (tmp_path / "evil").mkdir()
    os.symlink(tmp_path / "vision" / "models", tmp_path / "evil" / "models")
    found = modelstore.inventory(tmp_path)
    assert [(m["project"], m["name"], m["source"]) for m in found] == [
        ("speech", "c", "org/c"), ("vision", "a", "org/a"), ("vision", "b", "org/b")]
    assert modelstore.inventory(tmp_path / "missing") == []
