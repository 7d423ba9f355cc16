"""The local backend says when a component changed (inotify on its event directories), so
the agent observes and reports at once instead of polling."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from corral.backends.base import Launch
from corral.backends.local import LocalBackend
from corral.domain.statuses import ComponentStatus as S


def test_wait_for_changes_returns_when_a_component_starts_and_exits_and_wake_ends_it(tmp_path: Path):
    backend = LocalBackend(tmp_path / "state", gpus="0", cgroups=False)
    try:
        assert backend.wait_for_changes(0.05) is False  # nothing runs: nothing changes
        backend.start(Launch(component_id=1, workload_id=1, project="p", workload_type="custom",
                             native_name="c1", command=("sleep", "0.3")))
        seen: list[S] = []
        started = time.monotonic()
        while S.COMPLETED not in seen:
            assert time.monotonic() - started < 60, seen
            woken = backend.wait_for_changes(30.0)
            seen += [o.status for o in backend.observe() if o.component_id == 1]
            if S.COMPLETED in seen:
                assert woken  # told of the exit, not found by a timer
        assert S.RUNNING in seen and time.monotonic() - started < 30  # never waited out a 30 s wait
        # The supervisor may still note a change after the exit (it tidies up as it ends):
        # let that news arrive first, so the wait below sees only the wake-up.
        quiet_since = time.monotonic()
        while backend.wait_for_changes(0.5):
            backend.observe()
            assert time.monotonic() - quiet_since < 10, "changes kept coming after the component ended"
        started = time.monotonic()
        threading.Timer(0.1, backend.wake).start()
        assert backend.wait_for_changes(30.0) is False and time.monotonic() - started < 30
    finally:
        backend.close()
