"""What a finished component leaves behind (its ``result``) and the model store's entries:
the rules both sides of the agent protocol apply.

A result is a JSON object: a registered model (``{"model": name, "bytes": ..., ...}``, the
manifest's fields), evaluation metrics (``{"metrics": {"accuracy": 0.91, ...}}``), or
``{"error": "..."}`` when what the workload left could not be accepted. A workload writes
the metrics file itself, so it must not be able to store megabytes or break a page:

- ``normalise_result`` (the agent, before sending): flattens nested metrics
  (``{"hellaswag": {"acc": 0.5}}`` -> ``"hellaswag.acc"``), drops keys it does not know and
  turns anything it cannot accept into ``{"error": why}``, so one bad file never blocks
  the agent's reports;
- ``check_result`` (the server): refuses (``ValueError``, naming the field) anything the
  normalised form cannot be, whoever sent it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_RESULT_BYTES = 16 * 1024  # a stored result, as compact JSON
MAX_METRICS = 100
MAX_METRIC_NAME = 128
MAX_METRIC_TEXT = 256
MAX_NESTING = 4
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NUMBER = 2**63 - 1

# Model fields (the store's manifest, corral-model.json): name -> longest text, or int.
MODEL_TEXT_FIELDS = {"kind": 32, "source": 2048, "revision": 256, "base_model": 512, "dataset": 512,
                     "path": 4096, "created_at": 64}
MODEL_INT_FIELDS = ("bytes", "files", "workload_id")
_RESULT_KEYS = {"model", "metrics", "error", *MODEL_TEXT_FIELDS, *MODEL_INT_FIELDS}


class ResultError(ValueError):
    """A result (or model entry) that cannot be stored; the message names the field."""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (isinstance(value, int) and abs(value) <= MAX_NUMBER or isinstance(value, float) and math.isfinite(value))


def check_metrics(metrics: Any) -> dict[str, int | float | str]:
    """Metrics: at most MAX_METRICS names (1-128 characters) with a finite number or a
    short text each."""
    if not isinstance(metrics, Mapping):
        raise ResultError("metrics must be a JSON object of names to numbers or strings")
    if len(metrics) > MAX_METRICS:
        raise ResultError(f"metrics: {len(metrics)} values, at most {MAX_METRICS}")
    for name, value in metrics.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_METRIC_NAME or not name.isprintable():
            raise ResultError(f"metrics: a name must be 1 to {MAX_METRIC_NAME} printable characters")
        if isinstance(value, str):
            if len(value) > MAX_METRIC_TEXT:
                raise ResultError(f"metrics.{name}: text longer than {MAX_METRIC_TEXT} characters")
        elif not _finite(value):
            raise ResultError(f"metrics.{name}: must be a finite number or a string")
    return dict(metrics)


def check_model_fields(entry: Mapping[str, Any], where: str = "") -> None:
    for key, longest in MODEL_TEXT_FIELDS.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > longest):
            raise ResultError(f"{where}{key}: must be text of at most {longest} characters")
    for key in MODEL_INT_FIELDS:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or
                                  not 0 <= value <= MAX_NUMBER):
            raise ResultError(f"{where}{key}: must be a whole number, at least 0")


def check_result(result: Any) -> dict[str, Any] | None:
    """The result as it may be stored; ``ResultError`` (naming the field) otherwise."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise ResultError("result must be a JSON object")
    unknown = sorted(str(k) for k in result if k not in _RESULT_KEYS)
    if unknown:
        raise ResultError(f"result: unknown field {unknown[0]!r}")
    model = result.get("model")
    if model is not None and (not isinstance(model, str) or not MODEL_NAME.fullmatch(model)):
        raise ResultError("result.model: must be a model name (letters, digits, '.', '_', '-', up to 128)")
    if "metrics" in result:
        check_metrics(result["metrics"])
    error = result.get("error")
    if error is not None and (not isinstance(error, str) or len(error) > 1000):
        raise ResultError("result.error: must be text of at most 1000 characters")
    check_model_fields(result, "result.")
    if len(json.dumps(result, separators=(",", ":"))) > MAX_RESULT_BYTES:
        raise ResultError(f"result: larger than {MAX_RESULT_BYTES} bytes")
    return dict(result)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """``{"task": {"acc": 0.5}}`` -> ``{"task.acc": 0.5}`` (what evaluation harnesses write)."""
    flat: dict[str, Any] = {}
    for name, value in metrics.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and depth < MAX_NESTING:
            flat.update(flatten_metrics(value, key + ".", depth + 1))
        else:
            flat[key] = value
    return flat


def normalise_result(raw: Any) -> dict[str, Any] | None:
    """What the agent sends for what a component left (``raw``, read from the cluster): the
    known fields, metrics flattened, or ``{"error": why}`` when it cannot be accepted."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        return {"error": "result refused: it is not a JSON object"}
    result = {k: v for k, v in raw.items() if k in _RESULT_KEYS}
    if isinstance(result.get("metrics"), Mapping):
        result["metrics"] = flatten_metrics(result["metrics"])
    elif "metrics" in result:
        result["metrics"] = {"value": result["metrics"]} if _finite(result["metrics"]) else result["metrics"]
    try:
        return check_result(result)
    except ResultError as exc:
        kept = {k: v for k, v in result.items() if k == "model" and isinstance(v, str) and MODEL_NAME.fullmatch(v)}
        return {**kept, "error": f"result refused: {exc}"[:1000]}


def merged_metrics(results: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A workload's metrics (its components' results together; None: none reported) and
    the first refusal, if any."""
    metrics: dict[str, Any] | None = None
    error = None
    for result in results:
        if not result:
            continue
        if isinstance(result.get("metrics"), Mapping):
            metrics = {**(metrics or {}), **result["metrics"]}
        if result.get("error") and error is None:
            error = str(result["error"])
    return metrics, error


def normalise_model_entry(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """A store entry as the agent sends it (``PUT /agent/models``): None when its project or
    name cannot be one; a field of the wrong type or too long (the manifest is written by
    the project's workloads) is left out rather than refusing the whole inventory."""
    project, name = entry.get("project"), entry.get("name")
    if not isinstance(project, str) or not 1 <= len(project) <= 64 or \
            not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        return None
    clean: dict[str, Any] = {"project": project, "name": name}
    for key in (*MODEL_TEXT_FIELDS, *MODEL_INT_FIELDS):
        if key == "path" or entry.get(key) is None:
            continue
        try:
            check_model_fields({key: entry[key]})
        except ResultError:
            continue
        if key != "workload_id" or entry[key] >= 1:
            clean[key] = entry[key]
    return clean
