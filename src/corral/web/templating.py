"""Jinja2 templates, the filters they use, and the static files they link to."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from corral.domain.resources import format_bytes, format_millicores
from corral.domain.statuses import WorkloadStatus
from corral.domain.workloads import WorkloadType
from corral.static_assets import StaticFile
from corral.static_assets import static_file as make_static_file

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def fmt_cpu(millicores: int | None) -> str:
    return "-" if millicores is None else format_millicores(millicores)


def fmt_bytes(n: int | None) -> str:
    return "-" if n is None else ("0" if n == 0 else format_bytes(n))


def fmt_limit(value: int | None, kind: str) -> str:
    """A quota limit dimension: unbounded when None."""
    if value is None:
        return "unbounded"
    return {"cpu": fmt_cpu, "gpu": str}.get(kind, fmt_bytes)(value)  # type: ignore[operator]


def fmt_time(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


def type_label(value: str) -> str:
    try:
        return WorkloadType(value).label
    except ValueError:
        return value


def status_label(value: str) -> str:
    try:
        return WorkloadStatus(value).label
    except ValueError:
        return value


def status_class(value: str) -> str:
    return "st-" + value.lower()


@cache
def _static_files() -> dict[str, StaticFile]:
    """Every file of static/, read once, with its gzip form and a content hash."""
    files = {}
    for path in sorted(STATIC.rglob("*")):  # vendor/: bundled third-party files, with their licences
        if not path.is_file():
            continue
        name = path.relative_to(STATIC).as_posix()
        files[name] = make_static_file(path.name, path.read_bytes())
    return files


def static_file(name: str) -> StaticFile | None:
    return _static_files().get(name)


def static_url(name: str) -> str:
    """The file's URL with its content hash, so that browsers may cache it for good."""
    found = static_file(name)
    return f"/static/{name}?v={found.etag if found else '0'}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(cpu=fmt_cpu, bytes=fmt_bytes, limit=fmt_limit, time=fmt_time, iso=iso, duration=duration,
                       type_label=type_label, status_label=status_label, status_class=status_class)
    env.globals.update(
        static_url=static_url,
        now=lambda: datetime.now(UTC),
        WORKLOAD_TYPES=[(t.value, t.label) for t in WorkloadType],
        STATUSES=[(s.value, s.label) for s in WorkloadStatus],
    )
    return env


def render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(context)
