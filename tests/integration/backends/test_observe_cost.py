"""observe() stays cheap with many idle components: it reads the event directory, not
every component's files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.local import LocalBackend
from corral.backends.local import files as f
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from tests.conftest import work_root_for

IDLE = 30  # enough to tell "per component" from "per poll"; bench/ measures 1,000


def test_idle_components_cost_nothing_per_poll(state_dir: Path, monkeypatch: pytest.MonkeyPatch):
    backend = LocalBackend(state_dir, gpus="0", sweep_per_poll=3, work_root=work_root_for(state_dir))
    watcher = Watcher(backend)
    try:
        for cid in range(1, IDLE + 1):
            backend.start(Launch(cid, cid, "proj", "custom", f"idle-{cid}", command=("sleep", "300")))
        deadline = time.monotonic() + 30
        while sum(1 for c in range(1, IDLE + 1) if (o := watcher.latest(c)) and o.status is S.RUNNING) < IDLE:
            assert time.monotonic() < deadline, "components did not start"
            watcher.poll()
            time.sleep(0.05)
        # A supervisor touches its event file just after writing its status: a poll may
        # have read "running" before the touch of that very write arrives. Let those land.
        time.sleep(1.0)
        watcher.poll()
        reads: list[Path] = []
        probes: list[int] = []
        real_read, real_probe = f.read_json, LocalBackend._supervisor_alive

        def counting_read(path: Path):  # type: ignore[no-untyped-def]
            reads.append(path)
            return real_read(path)

        def counting_probe(self, comp):  # type: ignore[no-untyped-def]
            probes.append(comp.id)
            return real_probe(self, comp)

        monkeypatch.setattr(f, "read_json", counting_read)
        monkeypatch.setattr(LocalBackend, "_supervisor_alive", counting_probe)
        polls = 200
        started = time.perf_counter()
        for _ in range(polls):
            assert backend.observe() == []
        per_poll = (time.perf_counter() - started) / polls
        print(f"\nobserve() with {IDLE} idle components: {per_poll * 1e6:.0f} us per poll, "
              f"{len(reads) / polls:.1f} file reads per poll")
        # Only the sweep touches components: 3 lock probes per poll, no file read while
        # their supervisors live; never one look per component.
        assert reads == [] and len(probes) == 3 * polls
        assert len(set(probes)) == IDLE  # the sweep does get round to all of them
        backend.sweep_per_poll = 0
        reads.clear()
        probes.clear()
        for _ in range(polls):
            backend.observe()
        assert reads == [] and probes == []  # idle and no sweep: only the event directory was listed
    finally:
        for cid in range(1, IDLE + 1):
            backend.stop(cid, grace_s=0)
        backend.sweep_per_poll = 3
        deadline = time.monotonic() + 30
        while any((o := watcher.latest(c)) is None or o.status is not S.DELETED for c in range(1, IDLE + 1)):
            if time.monotonic() > deadline:
                break
            watcher.poll()
            time.sleep(0.05)
        backend.close()
