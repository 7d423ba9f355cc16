"""The local backend's on-disk state: layout, atomic writes, and /proc reading.

Standard library only: the supervisor and the runners import this module.

Layout of a state directory (``LocalBackend(state_dir)``)::

    backend.lock                 flock held by the one LocalBackend using the directory
    events/<component id>        touched after every change of that component's files;
                                 observe() lists this directory only and unlinks what it read
    components/<component id>/
        launch.json              the Launch, as the agent gave it (backend, written once)
        placement.json           what the backend decided: GPUs, port, final argv and env
        supervisor.lock          flock held by the component's supervisor while it lives
        status.json              the supervisor's account: phase, pids, readiness, exit
        stop.json                a stop request (backend)
        final.json               a final status decided by the backend alone (deleted
                                 before it ran, could not be placed)
        output.log               the command's stdout and stderr
        supervisor.log           the supervisor's own errors
        progress.json            progress a job reports (downloads), see report_progress
        result.json              what a finished job leaves (a model, metrics)

Every JSON file is written to a temporary name and renamed over the old one, so a
reader sees the old or the new content, never a torn one, and an exit that was recorded
survives any crash after the rename.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: supervisors stay small
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

LAUNCH = "launch.json"
PLACEMENT = "placement.json"
STATUS = "status.json"
STOP = "stop.json"
FINAL = "final.json"
OUTPUT = "output.log"
SUPERVISOR_LOG = "supervisor.log"
SUPERVISOR_LOCK = "supervisor.lock"
PROGRESS = "progress.json"
RESULT = "result.json"

# Environment of every component: where to report progress and results.
ENV_PROGRESS_FILE = "CORRAL_PROGRESS_FILE"
ENV_RESULT_FILE = "CORRAL_RESULT_FILE"
ENV_EVENT_FILE = "CORRAL_EVENT_FILE"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _encoder() -> Any:
    """json.dumps(separators=(",", ":"), sort_keys=True), built once: a supervisor writes
    its status through it, and each call of json.dumps would build an encoder in Python
    code whose pages a supervisor forked from the fork server would then copy."""
    encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    one_shot = make({}, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
    return lambda data: "".join(one_shot(data, 0))


_dumps = _encoder()
_decode = json.JSONDecoder().decode


def write_json_atomic(path: str | Path, data: Any, *, before_sync: Callable[[], None] | None = None) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename.

    ``before_sync``: called once the new file is in place and before it is synced to disk,
    to tell a watcher at once (it reads the page cache; the sync follows). A crash of the
    host in between leaves what a crash before the write would: the previous file or none.
    """
    path = os.fspath(path)
    head, sep, name = path.rpartition("/")
    tmp = f"{head}{sep}.{name}.{os.getpid()}.tmp"
    payload = _dumps(data).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
        if before_sync is None:
            os.fsync(fd)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
            before_sync()
            os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None if the file does not exist (or is unreadable)."""
    try:
        with open(path, "rb") as fh:
            return _decode(fh.read().decode())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # UnicodeDecodeError included
        return None


def read_untrusted(path: str | Path, *, uid: int | None = None, max_bytes: int = 1 << 20) -> bytes | None:
    """The bytes of a file a workload controls, read by Corral: never through a link, never
    blocking on a FIFO, only a regular file of at most ``max_bytes`` (owned by ``uid``
    when given); None otherwise."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes or (uid is not None and info.st_uid != uid):
            return None
        return os.read(fd, max_bytes + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_json_untrusted(path: str | Path, *, uid: int | None = None, max_bytes: int = 1 << 20) -> Any | None:
    """JSON from a file a workload controls (see ``read_untrusted``); None if it is not."""
    data = read_untrusted(path, uid=uid, max_bytes=max_bytes)
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def touch_event(event_file: str | os.PathLike[str] | None) -> None:
    """Tell the backend that a component's files changed (creates the event file)."""
    if not event_file:
        return
    try:
        os.close(os.open(event_file, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass  # the state directory was removed: nobody is watching any more


def report_progress(progress: dict[str, Any], *, env: dict[str, str] | None = None) -> None:
    """For a job: publish its progress (shown in the component's observation).

    Known keys: ``bytes_done``, ``bytes_total``, ``files_done``, ``files_total``,
    ``phase`` (a word such as "downloading"), ``message``. Does nothing outside Corral.
    """
    env = os.environ if env is None else env
    target = env.get(ENV_PROGRESS_FILE)
    if not target:
        return
    write_json_atomic(target, {**progress, "at": now_iso()})
    touch_event(env.get(ENV_EVENT_FILE))


def write_result(result: dict[str, Any]) -> None:
    """For a job: leave a result (a model entry, metrics) for the final observation."""
    target = os.environ.get(ENV_RESULT_FILE)
    if target:
        write_json_atomic(target, result)


# --- /proc ------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, pgrp, session, start time in clock ticks after boot) of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return rest[0], int(rest[2]), int(rest[3]), int(rest[19])
    except (IndexError, ValueError):
        return None


def process_start_ticks(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[3] if stat else None


def same_process(pid: int | None, start_ticks: int | None) -> bool:
    """True when ``pid`` is alive (not a zombie) and is the process that started at
    ``start_ticks``: a reused pid has another start time."""
    if not pid or start_ticks is None:
        return False
    stat = proc_stat(pid)
    return stat is not None and stat[3] == start_ticks and stat[0] != "Z"


def boot_time() -> float:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return time.time() - time.monotonic()


def ticks_to_datetime(ticks: int) -> datetime:
    return datetime.fromtimestamp(boot_time() + ticks / _CLK_TCK, UTC)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid: int) -> set[int] | None:
    """Every descendant of ``pid`` (from /proc/PID/task/TID/children), or None when the
    kernel does not provide those files."""
    found: set[int] = set()
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as fh:
                    children = [int(c) for c in fh.read().split()]
            except FileNotFoundError:
                if parent == pid:
                    return None  # no CONFIG_PROC_CHILDREN
                continue
            except OSError:
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    queue.append(child)
    return found


def listener_uids(port: int) -> set[int]:
    """The users owning the sockets that listen on TCP ``port`` (any address, IPv4 or 6)."""
    uids: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            try:  # sl local_address rem_address st ... uid: st 0A is LISTEN
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    uids.add(int(fields[7]))
            except (IndexError, ValueError):
                continue
    return uids


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def environ_value(pid: int, name: str) -> str | None:
    """A variable of another process's environment (same user or root only)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None
