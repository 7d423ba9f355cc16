"""The local backend's status mapping: from what a component's supervisor wrote
(``status.json``: phase, pid, readiness, stop, exit), the backend's own final word and the
reports its workload wrote, to one ``Observation`` per ``statuses.md``. No side effects."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from corral.backends import output
from corral.backends.base import Observation
from corral.backends.local import files as f
from corral.backends.local.supervisor import signal_name
from corral.backends.progress import clean_progress, progress_reason
from corral.backends.results import result_words
from corral.domain.resources import format_bytes
from corral.domain.results import normalise_result
from corral.domain.statuses import ComponentStatus as S

SUPERVISOR_START_TIMEOUT_S = 30.0  # a supervisor that wrote nothing by then did not start


def _now() -> datetime:
    return datetime.now(UTC)


def derive(comp: Any, *, waiting: str | None, alive: Callable[[], bool], report: Callable[[str], Any]) -> Observation:
    """What the component's files say now, as an observation. ``waiting``: why it waits for
    GPUs (None: it does not); ``alive()``: whether its supervisor holds its lock; ``report``
    reads a report its workload wrote (progress, result)."""
    launch = comp.launch

    def make(status: S, reason: str, at: datetime | str | None, **extra: Any) -> Observation:
        when = f.parse_iso(at) if isinstance(at, str) else at
        return Observation(comp.id, launch.native_name, status, reason, when or _now(),
                           workload_id=launch.workload_id, **extra)

    if comp.final is not None:
        return make(S(comp.final["status"]), comp.final["reason"], comp.final["at"],
                    exit_code=comp.final.get("exit_code"), result=_result(report))
    if waiting is not None:
        return make(S.PENDING, waiting, comp.submitted_at)
    status = f.read_json(comp.dir / f.STATUS)
    placed_at = (comp.placement or {}).get("placed_at")
    if status is None:
        if not alive() and age_s(placed_at) > SUPERVISOR_START_TIMEOUT_S \
                and not (comp.dir / f.STATUS).exists():
            why = output.last_line(comp.dir / f.SUPERVISOR_LOG)
            return make(S.FAILED, f"its supervisor did not start: {why}", None)
        return make(S.PENDING, "starting", placed_at)
    exit_ = status.get("exit")
    if exited(status):
        return _exit_observation(comp, status, make, report)
    if not alive():
        # It may have written its last word between our read and the probe: a
        # supervisor writes status.json before it lets go of its lock, so read again.
        status = f.read_json(comp.dir / f.STATUS) or status
        exit_ = status.get("exit")
        if exited(status) or exit_ is not None:  # it died after the exit, before cleaning up: the code is known
            return _exit_observation(comp, status, make, report)
        pid = status.get("pid")
        if f.same_process(pid, status.get("pid_start")):
            return make(S.UNKNOWN, f"the supervisor (pid {status.get('supervisor_pid')}) is gone; the command "
                                   f"(pid {pid}) still runs, and its exit code will not be known", None)
        return make(S.FAILED, "the supervisor died and the command is gone; its exit code was lost", None)
    stop = status.get("stop")
    started = status.get("started_at")
    if status.get("phase") == "stopping" and stop:
        after = f", SIGKILL after {stop['grace_s']:g}s" if stop.get("signal_sent") == "SIGTERM" else ""
        state = S.RUNNING if status.get("ready") else S.PENDING
        return make(state, f"stopping: {stop.get('signal_sent', 'SIGTERM')} sent{after}",
                    status.get("updated_at"))
    if exit_ is not None:  # the command exited; processes it left are being stopped
        state = S.RUNNING if status.get("ready") else S.PENDING
        return make(state, f"{_exit_words(exit_)}; stopping the processes it left behind",
                    status.get("updated_at"))
    if not status.get("ready"):
        if status.get("pid") is None:
            return make(S.PENDING, "starting", status.get("updated_at"))
        reason = f"starting: waiting for {status.get('waiting_for')} to answer"
        return make(S.PENDING, reason, started or status.get("updated_at"))
    progress = report(f.PROGRESS)
    endpoint = None
    if launch.is_service and status.get("port"):
        endpoint = f"http://127.0.0.1:{status['port']}{launch.endpoint_path}"
    reason = progress_reason(progress) or (f"serving at {endpoint}" if endpoint else "running")
    at = max(filter(None, (f.parse_iso(status.get("ready_at") or started),
                           f.parse_iso((progress or {}).get("at")))), default=None)
    return make(S.RUNNING, reason, at, endpoint_url=endpoint,
                progress=clean_progress(progress))

def _exit_observation(comp: Any, status: dict[str, Any], make: Any, report: Callable[[str], Any]) -> Observation:
    exit_ = status["exit"]
    code, sig = exit_.get("code"), exit_.get("signal")
    exit_code = code if code is not None else (-sig if sig else None)
    at = exit_.get("at")
    result = _result(report)
    progress = clean_progress(report(f.PROGRESS))
    if exit_.get("stopped") and exit_.get("cause") == "deleted":
        at = exit_.get("ended_at") or at
        if exit_.get("delete_failed"):
            return make(S.DELETE_FAILED, exit_["delete_failed"], at, exit_code=exit_code)
        how = ""
        if (status.get("stop") or {}).get("signal_sent") == "SIGKILL":
            how = f" (killed with SIGKILL after the {status['stop']['grace_s']:g}s grace period)"
        elif exit_.get("never_started"):
            how = " before it started"
        return make(S.DELETED, "deleted" + how, at, exit_code=exit_code)
    if exit_.get("error"):
        error = exit_["error"]
        if code == 127 and comp.launch.missing_hint and error.startswith("could not start "):
            error += f"; {comp.launch.missing_hint}"  # its program is not on this host: say what to install
        return make(S.FAILED, error, at, exit_code=exit_code)
    if exit_.get("lost"):
        return make(S.FAILED, "the supervisor died; the exit code of the command was lost", at)
    leftovers = f"; {exit_['leftovers']}" if exit_.get("leftovers") else ""
    if exit_.get("oom_kills"):
        limit = format_bytes(comp.launch.memory_bytes)
        return make(S.FAILED, f"killed: out of memory (limit {limit}){leftovers}", at, exit_code=exit_code)
    words = _exit_words(exit_)
    if exit_.get("time_limit"):  # the supervisor ended it at its time limit
        return make(S.FAILED, f"{exit_.get('cause')}; {words}", at, exit_code=exit_code)
    if exit_.get("stopped"):  # stopped, but not by Corral: someone signalled the supervisor
        return make(S.FAILED, f"stopped because {exit_.get('cause')}; {words}", at, exit_code=exit_code)
    if code == 0 and not comp.launch.is_service:
        reason = "completed" + (f": {result_words(result)}" if result else "")
        return make(S.COMPLETED, reason + leftovers, at, exit_code=0, result=result, progress=progress)
    reason = ("the service " if comp.launch.is_service else "") + words
    tail = output.last_line(comp.dir / f.OUTPUT)
    if tail:
        reason += f"; last output: {tail}"
    return make(S.FAILED, reason + leftovers, at, exit_code=exit_code, result=result)


def exited(status: dict[str, Any] | None) -> bool:
    return bool(status) and status.get("phase") == "exited" and bool(status.get("exit"))  # type: ignore[union-attr]


def age_s(iso: str | None) -> float:
    when = f.parse_iso(iso)
    return (_now() - when).total_seconds() if when else 0.0


def _exit_words(exit_: dict[str, Any]) -> str:
    if exit_.get("signal") is not None:
        name = exit_.get("signal_name") or signal_name(exit_["signal"])
        return f"killed by {name}"
    return f"exited with code {exit_.get('code')}"


def _result(report: Callable[[str], Any]) -> dict[str, Any] | None:
    """The result file, which the job may have written itself: anything but a JSON object
    is said to be refused (the agent checks the rest, domain/results.py)."""
    result = report(f.RESULT)
    return result if result is None or isinstance(result, dict) else normalise_result(result)
