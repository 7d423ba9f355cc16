"""Event ids skipped on PostgreSQL, kept as ranges until they commit or time runs out.

Ids are taken from the sequence in one order and committed in another, so a catch-up that
reads past a missing id may meet it later (a transaction still committing: another
replica's pass with thousands of admissions). A rolled-back transaction leaves its ids
missing for ever (a failed pass, a benchmark's rolled-back writes: 67,000 at once). Kept
one by one, such a gap made every catch-up ask for 67,000 ids by value (35 ms a pass on
PostgreSQL); as ranges it is one index range per run of missing ids.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from sqlalchemy import or_


class EventGaps:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s  # how long a skipped id may still commit
        self.ranges: list[tuple[int, int, float]] = []  # (first, last, since) missing ids, inclusive

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last, _ in self.ranges)

    def add(self, first: int, last: int, since: float) -> None:
        if first <= last:
            self.ranges.append((first, last, since))

    def expire(self, now: float) -> None:
        self.ranges = [r for r in self.ranges if now - r[2] < self.window_s]

    def condition(self, column: Any) -> Any:
        """``column`` in any of the missing ids."""
        return or_(*(column == first if first == last else column.between(first, last)
                     for first, last, _ in self.ranges))

    def found(self, ids: list[int]) -> None:
        """These ids committed after all: no longer missing."""
        if not ids:
            return
        arrived = sorted(set(ids))
        kept: list[tuple[int, int, float]] = []
        for first, last, since in self.ranges:
            start = first
            # the arrived ids inside [first, last] split it; arrived is sorted
            lo = bisect_left(arrived, first)
            for i in range(lo, len(arrived)):
                x = arrived[i]
                if x > last:
                    break
                if x > start:
                    kept.append((start, x - 1, since))
                start = x + 1
            if start <= last:
                kept.append((start, last, since))
        self.ranges = kept

