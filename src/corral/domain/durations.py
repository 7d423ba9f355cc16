"""Durations as people write them: a workload's ``time_limit``.

    parse_duration("2h")      -> 7200
    parse_duration("1h30m")   -> 5400
    parse_duration("3600s")   -> 3600
    parse_duration(3600)      -> 3600      (a number is seconds)
    parse_duration("1-12:00:00") -> 129600 (Slurm's D-HH:MM:SS, and HH:MM:SS, MM:SS)
    format_duration(5400)     -> "1h30m"

Units: ``d``, ``h``, ``m``, ``s`` (``min``, ``sec`` and their plurals too), combined in
that order ("1d12h"). Whole seconds, from 1 s to ``MAX_TIME_LIMIT_S`` (a year).
"""

from __future__ import annotations

import math
import re

MAX_TIME_LIMIT_S = 365 * 86400
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_ALIASES = {"day": "d", "days": "d", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "min": "m", "mins": "m",
            "minute": "m", "minutes": "m", "sec": "s", "secs": "s", "second": "s", "seconds": "s"}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
EXAMPLES = "2h, 90m, 1h30m, 3600s, 3600 (seconds) or 1-00:00:00"


def parse_duration(value: object) -> int:
    """Whole seconds of a duration (see the module docstring); ValueError says why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration such as {EXAMPLES}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        seconds = _parse_text(value.strip().lower())
    if not math.isfinite(seconds) or seconds != int(seconds):
        raise ValueError("must be a whole number of seconds")
    if seconds < 1:
        raise ValueError("must be at least 1 second")
    if seconds > MAX_TIME_LIMIT_S:
        raise ValueError("must be at most 365 days")
    return int(seconds)


def _parse_text(text: str) -> float:
    bad = ValueError(f"{text[:40]!r} is not a duration (examples: {EXAMPLES})")
    if not text:
        raise bad
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    clock = _CLOCK.match(text)
    if clock and (":" in text or "-" in text):
        days, a, b, c = clock.groups()
        parts = [int(x) for x in (a, b, c) if x is not None]
        if days is not None and len(parts) == 1:
            parts = [parts[0], 0, 0]  # D-HH
        while len(parts) < 3:
            parts.insert(0, 0)  # MM:SS
        h, m, s = parts
        if m >= 60 or s >= 60:
            raise bad
        return int(days or 0) * 86400 + h * 3600 + m * 60 + s
    total, at, seen = 0.0, 0, []
    for match in _PART.finditer(text):
        if text[at:match.start()].strip():
            raise bad
        unit = _ALIASES.get(match.group(2), match.group(2))
        if unit not in _UNITS or unit in seen or (seen and list(_UNITS).index(unit) < list(_UNITS).index(seen[-1])):
            raise bad
        seen.append(unit)
        total += float(match.group(1)) * _UNITS[unit]
        at = match.end()
    if not seen or text[at:].strip():
        raise bad
    return total


def format_duration(seconds: int) -> str:
    """The shortest plain writing: 7200 -> "2h", 5400 -> "1h30m", 90 -> "1m30s"."""
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in _UNITS.items():
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            out.append(f"{count}{unit}")
    return "".join(out)
