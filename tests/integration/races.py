"""Two transactions raced against each other, one of them held open by a slowed trigger
(the deadlock tests on PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text

from corral.db.engine import write_tx


def race(engine: Engine, slowed: tuple[str, str], **actions: Callable[[], None]) -> dict[str, BaseException | None]:
    """Run each action in its own thread; its outcome is None, or what it raised. Then drop
    the slowed trigger ``(name, table)`` and its function of the same name."""
    outcomes: dict[str, BaseException | None] = {}

    def outcome(name: str, action: Callable[[], None]) -> None:
        try:
            action()
            outcomes[name] = None
        except Exception as exc:  # noqa: BLE001 (judged by the test)
            outcomes[name] = exc

    threads = [threading.Thread(target=outcome, args=item) for item in actions.items()]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        trigger, table = slowed
        with write_tx(engine) as conn:
            conn.execute(text(f"DROP TRIGGER {trigger} ON {table}"))
            conn.execute(text(f"DROP FUNCTION {trigger}()"))
    return outcomes


def wait_in_slowed_trigger(engine: Engine) -> None:
    """Until a transaction sits in the slowed trigger's pg_sleep (holding what it locked)."""
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while not conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                                    "AND datname = current_database()")).scalar():
            assert time.monotonic() < deadline, "nothing reached the slowed trigger"
            conn.rollback()
            time.sleep(0.02)
