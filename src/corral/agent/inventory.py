"""The model stores' inventory in pages (``PUT /agent/models``).

A cluster's stores may hold more models than one request carries (the server takes 10,000
entries and ``CORRAL_MAX_BODY_BYTES``, 4 MiB by default, a request: the agent sends pages
of 1 MiB at most, smaller when the server answers 413). The inventory goes sorted by
(project, name), cut into pages; each page names its range (after the previous page's
last model, through its own last; the first starts at the beginning and the last runs to
the end), and the server replaces what it knew in that range alone. So each page stands
on its own, and a model is removed from the list only by the page whose range holds it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_PAGE_ENTRIES = 1000
MAX_PAGE_BYTES = 1 << 20
MIN_PAGE_BYTES = 16 << 10  # under the smallest body limit a server may set (64 KiB)

Key = tuple[str, str]
Page = tuple[list[dict[str, Any]], "Key | None", "Key | None"]  # entries, after, through


def key(entry: dict[str, Any]) -> Key:
    return (entry["project"], entry["name"])


def pages(entries: list[dict[str, Any]], max_entries: int = MAX_PAGE_ENTRIES,
          max_bytes: int = MAX_PAGE_BYTES) -> list[Page]:
    """``entries`` (each with project and name, unique) as pages in (project, name) order;
    always at least one page (an empty store: one empty page, which removes everything)."""
    ordered = sorted(entries, key=key)
    out: list[Page] = []
    page: list[dict[str, Any]] = []
    size = 0
    for entry in ordered:
        entry_bytes = len(json.dumps(entry, separators=(",", ":"))) + 1
        if page and (len(page) >= max_entries or size + entry_bytes > max_bytes):
            out.append((page, key(out[-1][0][-1]) if out else None, key(page[-1])))
            page, size = [], 0
        page.append(entry)
        size += entry_bytes
    out.append((page, key(out[-1][0][-1]) if out else None, None))  # the last runs to the end
    return out
