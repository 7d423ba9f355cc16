"""App factories that change one thing, to measure a proposed fix before it is made in src/.

    .venv/bin/python bench/server_memory.py --database-url sqlite:////tmp/corral-bench/corral.db \\
        --app variants:sqlite_cache --env CORRAL_BENCH_SQLITE_CACHE_KIB=8192
    .venv/bin/python bench/submit_throughput.py --database-url postgresql://... --app variants:cached_auth

Each builds the real app (``corral.api.app.create_app``) with the engine from
``corral.db.engine.make_engine``; only what the docstring says differs. Nothing here is
used by the application itself.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from corral.api.app import create_app
from corral.db.engine import make_engine
from corral.settings import get_settings


def sqlite_cache() -> FastAPI:
    """SQLite with a smaller page cache per connection: PRAGMA cache_size=-CORRAL_BENCH_SQLITE_CACHE_KIB.

    (make_engine sets 64 MiB per connection; this listener runs after its own.)
    """
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    kib = int(os.environ.get("CORRAL_BENCH_SQLITE_CACHE_KIB", "8192"))

    @event.listens_for(engine, "connect")
    def _cache(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA cache_size=-{kib}")
        cur.close()

    return create_app(settings, engine)


def cached_auth() -> FastAPI:
    """Token -> principal cached for CORRAL_BENCH_AUTH_TTL_S seconds (default 5) in the process."""
    import corral.api.deps as deps

    ttl = float(os.environ.get("CORRAL_BENCH_AUTH_TTL_S", "5"))
    original = deps.authenticate
    cache: dict[str, tuple[float, Any]] = {}
    lock = threading.Lock()

    def authenticate(engine: Any, token: str) -> Any:
        now = time.monotonic()
        with lock:
            hit = cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = original(engine, token)
        if principal is not None:
            with lock:
                if len(cache) > 10_000:
                    cache.clear()
                cache[token] = (now + ttl, principal)
        return principal

    deps.authenticate = authenticate  # current_principal looks it up at call time
    return create_app()
