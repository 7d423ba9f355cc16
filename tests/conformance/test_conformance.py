"""The one conformance suite: what every backend promises the agent (``backends/base.py``,
``shared/spec/statuses.md``), run against each real engine of ``engines.ENGINES``.

Start and stop are idempotent; observations come only on change, newest last, never
older than the one before; Deleted is final; exit codes and signals are kept and said in
the reason; a service is Running only once it answers; what Corral did not start is
discovered and vanishes when it ends; a new backend (the agent restarted) adopts what
runs and submits nothing twice.
"""

from __future__ import annotations

import re
import time

from corral.backends.base import Launch, Observation, Readiness
from corral.domain.statuses import ComponentStatus as S
from tests.conformance.engines import Engine
from tests.integration.backends.conftest import Watcher

HINT = "no-such-program-anywhere is not installed on this host: install it"


def job(cid: int, shell: str, **extra: object) -> Launch:
    return Launch(cid, 100 + cid, "proj", "custom", f"proj-w{100 + cid}-job", command=("/bin/sh", "-c", shell),
                  cpu_millicores=500, memory_bytes=128 << 20, **extra)  # type: ignore[arg-type]


def server(engine: Engine, cid: int, shell_before: str = "", **extra: object) -> Launch:
    serve = engine.serve_command()
    return Launch(cid, 100 + cid, "proj", "inference", f"proj-w{100 + cid}-server", kind="server",
                  command=("/bin/sh", "-c", f"{shell_before}{serve}"), needs_port=True, readiness=Readiness("/"),
                  cpu_millicores=500, memory_bytes=128 << 20, **extra)  # type: ignore[arg-type]


def wait_until(condition, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def assert_only_changes(history: list[Observation]) -> None:
    """No observation repeats the one before it, and none is older."""
    for before, after in zip(history, history[1:], strict=False):
        assert not after.same_state(before), (before, after)
        assert after.observed_at >= before.observed_at, (before, after)
    assert all(o.observed_at.utcoffset() is not None and not o.observed_at.utcoffset() for o in history)


def test_a_job_runs_to_completion_observed_only_on_change(engine: Engine):
    backend = engine.backend()
    watcher = Watcher(backend)
    backend.start(job(1, "echo hello; echo to stderr >&2; sleep 1; echo done"))
    running = watcher.wait(1, S.RUNNING, timeout=engine.timeout)
    assert running.native_name == "proj-w101-job" and running.workload_id == 101 and running.exit_code is None
    done = watcher.wait(1, S.COMPLETED, timeout=engine.timeout)
    assert done.exit_code == 0 and done.reason
    seen = [s for i, s in enumerate(watcher.statuses(1)) if i == 0 or watcher.statuses(1)[i - 1] is not s]
    assert seen in ([S.PENDING, S.RUNNING, S.COMPLETED], [S.RUNNING, S.COMPLETED]), seen
    assert_only_changes(watcher.history[1])
    assert backend.observe() == []  # nothing changed since
    assert [(o.component_id, o.status) for o in backend.all_observations()] == [(1, S.COMPLETED)]
    assert backend.observe() == []  # all_observations is not a change either
    output = backend.logs(1)
    assert "hello\n" in output and "to stderr\n" in output and output.endswith("done\n")
    backend.forget(1)
    assert backend.all_observations() == []


def test_start_and_stop_are_idempotent(engine: Engine):
    backend = engine.backend()
    watcher = Watcher(backend)
    launch = job(1, "echo started; sleep 300")
    backend.start(launch)
    backend.start(launch)
    watcher.wait(1, S.RUNNING, timeout=engine.timeout)
    backend.start(launch)
    wait_until(lambda: "started" in backend.logs(1), engine.timeout)
    time.sleep(1.0)
    assert backend.logs(1) == "started\n"  # it ran once
    backend.stop(1, grace_s=2)
    backend.stop(1, grace_s=2)
    deleted = watcher.wait(1, S.DELETED, timeout=engine.timeout)
    assert deleted.reason
    backend.stop(1, grace_s=2)
    time.sleep(0.5)
    watcher.poll()
    assert watcher.statuses(1).count(S.DELETED) == 1
    # A component the backend never ran is reported Deleted.
    backend.stop(99)
    assert watcher.wait(99, S.DELETED, timeout=engine.timeout).reason


def test_deleted_is_final(engine: Engine):
    backend = engine.backend()
    watcher = Watcher(backend)
    launch = job(1, "echo once")
    backend.start(launch)
    watcher.wait(1, S.COMPLETED, timeout=engine.timeout)
    backend.stop(1)  # finished already: Deleted at once
    watcher.wait(1, S.DELETED, timeout=engine.timeout)
    backend.start(launch)  # a late start of the same component: nothing runs, nothing is reported
    backend.stop(1)
    time.sleep(1.5)
    watcher.poll()
    assert watcher.statuses(1)[-1] is S.DELETED and watcher.statuses(1).count(S.DELETED) == 1
    assert {o.status for o in backend.all_observations() if o.component_id == 1} <= {S.DELETED}
    assert backend.logs(1) == "once\n"
    # A passive endpoint: Completed once it exists, Deleted when removed.
    backend.start(Launch(2, 102, "proj", "inference", "proj-w102-endpoint", kind="endpoint"))
    watcher.wait(2, S.COMPLETED, timeout=engine.timeout)
    backend.stop(2)
    watcher.wait(2, S.DELETED, timeout=engine.timeout)


def test_exit_codes_signals_and_reasons_are_kept(engine: Engine):
    backend = engine.backend()
    watcher = Watcher(backend)
    backend.start(job(1, "echo about to fail; exit 3"))
    backend.start(job(2, engine.die_by_signal(9)))
    backend.start(Launch(3, 103, "proj", "inference", "proj-w103-job", command=("no-such-program-anywhere", "x"),
                         missing_hint=HINT))
    backend.start(server(engine, 4, "exit 0; "))  # a service that ends has failed, whatever its code
    failed = watcher.wait(1, S.FAILED, timeout=engine.timeout)
    assert failed.exit_code == 3 and re.search(r"\b3\b", failed.reason), failed.reason
    assert "about to fail" in failed.reason  # its last line of output says why
    killed = watcher.wait(2, S.FAILED, timeout=engine.timeout)
    assert killed.exit_code == -9 and re.search(r"SIGKILL|signal 9", killed.reason), killed.reason
    missing = watcher.wait(3, S.FAILED, timeout=engine.timeout)
    assert missing.exit_code == 127 and "could not start no-such-program-anywhere" in missing.reason
    assert missing.reason.endswith(HINT), missing.reason
    service = watcher.wait(4, S.FAILED, timeout=engine.timeout)
    assert service.exit_code == 0 and "exited" in service.reason, service.reason
    assert "about to fail" in backend.logs(1)


def test_a_service_is_running_once_it_answers(engine: Engine):
    backend = engine.backend()
    watcher = Watcher(backend)
    backend.start(server(engine, 1, 'test "$PORT" -gt 0 || exit 9; sleep 1; '))
    running = watcher.wait(1, S.RUNNING, timeout=engine.timeout)
    assert running.endpoint_url and re.fullmatch(r"http://[\w.\-]+:\d+/", running.endpoint_url)
    assert engine.http_get(backend, 1, running.endpoint_url) == 200
    before = watcher.history[1][:-1]
    assert before and all(o.status is S.PENDING and o.endpoint_url is None for o in before)
    assert_only_changes(watcher.history[1])
    backend.stop(1, grace_s=2)
    watcher.wait(1, S.DELETED, timeout=engine.timeout)


def test_a_time_limit_ends_the_command_which_fails_saying_so(engine: Engine):
    backend = engine.backend()
    watcher = Watcher(backend)
    backend.start(job(1, "echo within its limit", time_limit_s=600))
    assert watcher.wait(1, S.COMPLETED, timeout=engine.timeout).exit_code == 0
    limit = engine.time_limit_s
    started = time.monotonic()
    backend.start(job(2, "sleep 300", time_limit_s=limit or 3600))
    if limit is None:  # the cluster counts longer limits (Slurm: minutes): it runs under one, then is deleted
        watcher.wait(2, S.RUNNING, timeout=engine.timeout)
        backend.stop(2, grace_s=2)
        watcher.wait(2, S.DELETED, timeout=engine.timeout)
        return
    failed = watcher.wait(2, S.FAILED, timeout=engine.timeout + limit)
    assert time.monotonic() - started >= limit
    assert failed.reason.startswith(f"time limit of {limit}s reached"), failed.reason
    assert_only_changes(watcher.history[2])


def test_what_corral_did_not_start_is_discovered_until_it_ends(engine: Engine):
    backend = engine.backend()
    already = {d.native_name for d in backend.discover()}  # what the cluster ran before this test
    backend.start(job(1, "sleep 300"))
    Watcher(backend).wait(1, S.RUNNING, timeout=engine.timeout)
    engine.expose(backend, 1)
    with engine.outsider() as outsider:
        [found] = wait_until(lambda: [d for d in backend.discover() if d.native_name == outsider.native_name],
                             engine.timeout)
        assert (found.kind, found.project) == (outsider.kind, outsider.project)
        assert found.started_at is not None and found.command
        # Corral's own component is not "found"
        assert {d.native_name for d in backend.discover()} - already == {outsider.native_name}
    wait_until(lambda: outsider.native_name not in {d.native_name for d in backend.discover()}, engine.timeout)
    backend.stop(1, grace_s=2)


def test_a_restarted_agent_adopts_what_runs_and_runs_nothing_twice(engine: Engine):
    first = engine.backend()
    watcher = Watcher(first)
    long = job(1, "echo started; sleep 4; echo finished")
    short = job(2, "sleep 2; exit 7")
    first.start(long)
    first.start(short)
    watcher.wait(1, S.RUNNING, timeout=engine.timeout)
    first.close()  # the agent goes away; its work keeps running
    time.sleep(2.5)  # component 2 ends while nobody watches
    second = engine.backend()
    try:
        again = Watcher(second)
        for obs in second.all_observations():  # the full state first, as the agent asks at start
            again.history[obs.component_id].append(obs)
        assert set(again.history) == {1, 2} and again.latest(1).status is S.RUNNING  # type: ignore[union-attr]
        second.start(long)  # the control plane's resync asks again: adopted, not run again
        second.start(short)
        ended = again.wait(2, S.FAILED, timeout=engine.timeout)
        assert ended.exit_code == 7
        assert again.wait(1, S.COMPLETED, timeout=engine.timeout).exit_code == 0
        assert second.logs(1) == "started\nfinished\n"
    finally:
        second.close()
