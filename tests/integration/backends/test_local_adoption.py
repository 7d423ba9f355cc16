"""Components outlive a SIGKILLed control plane; a new backend adopts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from corral.backends.local import LocalBackend
from corral.backends.local import files as f
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher, alive
from tests.conftest import work_root_for

OWNER = textwrap.dedent("""
    import sys, time
    from corral.backends.base import Launch
    from corral.backends.local import LocalBackend
    from corral.domain.statuses import ComponentStatus as S

    state, work = sys.argv[1], sys.argv[2]
    backend = LocalBackend(state, gpus="1", work_root=sys.argv[3])
    def job(cid, script, gpu=0):
        return Launch(cid, cid, "proj", "custom", f"job-{cid}", command=("/bin/sh", "-c", script),
                      working_dir=work, gpu=gpu)
    backend.start(job(1, "while [ ! -f a-go ]; do sleep 0.05; done; exit 7"))
    backend.start(job(2, "while [ ! -f b-go ]; do sleep 0.05; done; echo b done", gpu=1))
    running = set()
    deadline = time.monotonic() + 20
    while running != {1, 2} and time.monotonic() < deadline:
        running |= {o.component_id for o in backend.observe() if o.status is S.RUNNING}
        time.sleep(0.05)
    print("ready" if running == {1, 2} else "not ready", flush=True)
    time.sleep(600)
""")


def test_components_survive_the_owner_being_sigkilled_and_are_adopted(state_dir: Path):
    # The jobs wait for flag files in their project's directory (they run as its user).
    flags = work_root_for(state_dir) / "proj"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(state_dir), str(flags), str(work_root_for(state_dir))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    a = f.read_json(state_dir / "components" / "1" / f.STATUS)
    b = f.read_json(state_dir / "components" / "2" / f.STATUS)
    assert alive(a["pid"]) and alive(b["pid"])

    # Component 1 exits while nothing watches.
    (flags / "a-go").touch()
    deadline = time.monotonic() + 10
    while (f.read_json(state_dir / "components" / "1" / f.STATUS) or {}).get("phase") != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # The dead owner's locks are gone with it.
    backend = LocalBackend(state_dir, gpus="1", work_root=work_root_for(state_dir))
    try:
        everything = {o.component_id: o for o in backend.all_observations()}
        assert everything[1].status is S.FAILED and everything[1].exit_code == 7
        assert everything[1].reason.startswith("exited with code 7")
        assert everything[2].status is S.RUNNING
        assert backend.inspect(2)["status"]["pid"] == b["pid"] and alive(b["pid"])
        # The GPU of component 2 is still its own: a newcomer waits.
        assert backend.inspect(2)["placement"]["gpus"] == [0]
        from corral.backends.base import Launch

        backend.start(Launch(3, 3, "proj", "custom", "job-3", command=("true",), gpu=1))
        watcher = Watcher(backend)
        waiting = watcher.wait(3, S.PENDING)
        assert waiting.reason == "waiting for 1 GPU(s): 0 of 1 free"
        # Component 2 is watched again: its exit arrives through observe().
        (flags / "b-go").touch()
        done = watcher.wait(2, S.COMPLETED)
        assert done.exit_code == 0
        assert "b done" in backend.logs(2)
        # ...and its GPU goes to the component that waited.
        watcher.wait(3, S.COMPLETED)
        assert backend.inspect(3)["placement"]["gpus"] == [0]
    finally:
        backend.close()


def test_a_supervisor_killed_without_a_word_is_noticed(backend: LocalBackend, watcher: Watcher):
    from corral.backends.base import Launch

    backend.start(Launch(1, 1, "proj", "custom", "job-1", command=("sleep", "300")))
    watcher.wait(1, S.RUNNING)
    status = backend.inspect(1)["status"]
    os.kill(status["supervisor_pid"], signal.SIGKILL)
    unknown = watcher.wait(1, S.UNKNOWN, timeout=10)  # found by the sweep, no event needed
    assert f"the command (pid {status['pid']}) still runs" in unknown.reason
    backend.stop(1, grace_s=1)  # a reaper supervisor ends what is left
    deleted = watcher.wait(1, S.DELETED)
    assert deleted.reason.startswith("deleted")
    assert not alive(status["pid"])
