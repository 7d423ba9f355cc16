"""The supervisor of one local component: ``python -m corral.backends.local.supervisor``.

Usage (the backend runs it; nobody else needs to)::

    python -m corral.backends.local.supervisor run  <component dir>
    python -m corral.backends.local.supervisor reap <component dir>
    python -m corral.backends.local.supervisor serve   # a fork server: "run DIR" / "reap DIR" lines on stdin

``run`` detaches (fork, then ``setsid``: the supervisor leads its own session, so killing
the control plane, even with SIGKILL, leaves it running), takes ``supervisor.lock`` for its
whole life (the backend tells a live supervisor from a dead one by that lock, which no pid
reuse can fool), and starts the command from ``placement.json`` in its own process group,
inside the component's cgroup when the host allows, with stdout and stderr appended to
``output.log``, as the project's OS user when the placement names one (``run_as``: the
supervisor stays root, like slurmstepd, and only the command switches; its working
directory is made after the switch, so it lands nowhere that user could not write). It
then sleeps in ``sigwaitinfo`` until:

- SIGCHLD: the command exited. Processes it left behind in its group are terminated,
  then the exit (code or signal, and when) is written to ``status.json``;
- SIGUSR1 (or SIGTERM, SIGINT, SIGHUP): the backend asked it to stop (``stop.json``):
  SIGTERM to the group, SIGKILL once the grace period is over, again every second, until
  no process of the component is left; after 10 s of SIGKILLs it gives up and records
  the survivors (the backend reports DeleteFailed);
- the command's time limit (``time_limit`` in the placement) is reached: a stop as above,
  with ``TIME_LIMIT_GRACE_S`` of grace, recorded with the limit's reason as its cause
  (``time_limit: true``: the backend reports it Failed); a delete during that stop is
  still a delete;
- for a service not yet ready, every readiness interval: an HTTP GET or a TCP connect;
- every ``LOG_CHECK_S`` while the command runs: ``output.log`` past ``log_max_bytes`` is
  cut to its newest half, behind a line that says how much was dropped.

The supervisor is a child subreaper, so processes the command orphans are re-parented to
it and reaped. Every change of ``status.json`` is written atomically and followed by a
touch of the component's event file. ``reap`` is for a component whose supervisor died:
it stops what is left of the process group and records that the exit code was lost.

Standard library only, and few modules of it (no subprocess, pathlib, typing, dataclasses):
one runs per component, so it must start fast and stay small. ``serve`` is how the backend
starts them: one process that has imported this module forks a supervisor per line it
reads, so every supervisor shares that interpreter's pages (copy-on-write) instead of
loading its own, and starts without an interpreter's start-up (forkserver.py, which also
says how the pages a supervisor does copy are kept few). A supervisor does not depend on
the server: it detaches as before, and outlives it, the agent and the control plane.

One module on purpose, past the usual length: split in two (its dealings with the host
apart), each supervisor owned 0.19 MB more (bench/supervisor_memory.py: 1.07 -> 1.26 MB
a job, three runs each), more than Slurm's slurmstepd.
"""

from __future__ import annotations

import _signal
import errno
import fcntl
import os
import signal
import sys
import time

from corral.backends.local import cgroups
from corral.backends.local import files as f

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing, pathlib, subprocess, dataclasses: not loaded at run time
    from typing import Any

# Plain ints, and _signal rather than signal's wrappers around it: those turn every number
# into an enum member, and running the enum machinery writes to pages of the fork server that
# each supervisor would then own a copy of.
SIGNALS = {int(s) for s in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
LEFTOVER_GRACE_S = 2.0  # after the command exits, its group's other processes get this long
KILL_RETRY_S = 1.0
GIVE_UP_AFTER_KILL_S = 10.0
STOP_POLL_S = 0.1
PR_SET_CHILD_SUBREAPER = 36
LOG_CHECK_S = 5.0  # output.log is looked at this often while quiet...
LOG_CHECK_MIN_S = 0.25  # ...and this often while it grows fast
TIME_LIMIT_GRACE_S = 30.0  # SIGTERM at the time limit, SIGKILL this long after (Slurm's KillWait, Kubernetes' default)


class SpawnError(OSError):
    """The command could not be started; ``stage`` says where: "cwd" or "exec"."""

    def __init__(self, number: int, text: str, stage: str) -> None:
        super().__init__(number, text)
        self.stage = stage


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Supervisor:
    def __init__(self, component_dir: str) -> None:
        self.dir = component_dir
        self.placement: dict[str, Any] = f.read_json(self.path(f.PLACEMENT)) or {}
        self.events_file = self.placement.get("events_file")
        self.status: dict[str, Any] = {}
        self.pid: int | None = None
        self.pgid: int | None = None
        self.exit: dict[str, Any] | None = None  # the command's exit, once reaped
        self.cgroup: str | None = None
        self.ready = False
        self.stop_requested: dict[str, Any] | None = None
        self.stop_deadline: float | None = None  # monotonic: SIGKILL at this time
        self.time_limit_at: float | None = None  # monotonic: the command's time limit ends it then
        self.kill_started: float | None = None
        self.next_kill: float | None = None
        self.leftover_deadline: float | None = None
        self.reaping = False
        self.subreaper = False  # set by main() once prctl(PR_SET_CHILD_SUBREAPER) worked
        self.session = os.getpid()  # run: the supervisor leads the command's session
        self.log_interval = LOG_CHECK_MIN_S
        self.log_size = 0

    def path(self, name: str) -> str:
        return f"{self.dir}/{name}"  # dir is absolute and normalised (main); posixpath.join is Python code

    # --- status ----------------------------------------------------------------------

    def publish(self, **changes: Any) -> None:
        self.status.update(changes, updated_at=f.now_iso())
        # The agent hears of it before the sync to disk (~0.4-1.3 ms here): exit -> visible.
        f.write_json_atomic(self.path(f.STATUS), self.status, before_sync=lambda: f.touch_event(self.events_file))

    # --- run -------------------------------------------------------------------------

    def run(self) -> int:
        existing = f.read_json(self.path(f.STATUS))
        if existing is not None:
            return 0  # a supervisor ran here already; the backend uses `reap` for the rest
        me = os.getpid()
        self.session = me
        self.publish(phase="starting", supervisor_pid=me, supervisor_start=f.process_start_ticks(me),
                     session=me, started_at=None, ready=False)
        stop = f.read_json(self.path(f.STOP))
        if stop is not None:
            return self.finish(code=None, sig=None, at=f.now_iso(), stopped=True, cause="deleted",
                               never_started=True)
        setup = cgroups.setup_component_cgroup(
            int(self.placement["component_id"]), int(self.placement.get("memory_bytes") or 0),
            int(self.placement.get("cpu_millicores") or 0), self.placement.get("cgroup_parent"),
            bool(self.placement.get("cgroups", True)), str(self.placement.get("instance") or ""),
        )
        self.cgroup = setup.path
        limits = {"memory": setup.memory, "cpu": setup.cpu, "cgroup": setup.path}
        try:
            self.spawn()
        except OSError as exc:
            cgroups.remove(self.cgroup)
            code = 127 if exc.errno == errno.ENOENT else 126
            what = self.placement.get("argv", ["?"])[0]
            error = (f"could not be created: {exc.strerror}" if getattr(exc, "stage", None) == "cwd"
                     else f"could not start {what}: {exc.strerror or exc}")
            return self.finish(code=code, sig=None, at=f.now_iso(), stopped=False, cause=None, error=error,
                               limits=limits)
        assert self.pid is not None
        limit = self.placement.get("time_limit")
        if limit:
            self.time_limit_at = time.monotonic() + float(limit["seconds"])
        if self.cgroup and self.pid not in cgroups.members(self.cgroup):
            why = f"not enforced: the command could not join cgroup {self.cgroup}"
            limits.update({k: why for k in ("memory", "cpu") if limits[k]}, cgroup=None)
            try:
                os.rmdir(self.cgroup)  # nobody will remove it later (a command that exited at once)
            except OSError:
                pass  # something is in it after all: left in place, as before
            self.cgroup = None
        readiness = self.placement.get("readiness")
        self.ready = readiness is None
        self.publish(
            phase="running" if self.ready else "starting", pid=self.pid, pgid=self.pgid,
            pid_start=f.process_start_ticks(self.pid), started_at=f.now_iso(), ready=self.ready,
            ready_at=f.now_iso() if self.ready else None,
            waiting_for=None if self.ready else readiness.get("url"), limits=limits,
            port=self.placement.get("port"),
        )
        return self.loop(readiness)

    def spawn(self) -> None:
        """fork + exec the command: its own process group, signals unblocked and at their
        defaults, in the cgroup, output to output.log. An exec failure comes back through
        a close-on-exec pipe as OSError."""
        argv = [str(a) for a in self.placement["argv"]]
        env = self.placement.get("env") or {}
        cwd = self.placement.get("cwd") or self.dir
        log = self.path(f.OUTPUT)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: only os calls until exec
            stage = "exec"
            try:
                os.close(read_end)
                os.setpgid(0, 0)
                if self.cgroup:
                    try:
                        cgroups.join(self.cgroup, os.getpid())
                    except OSError:
                        pass  # runs without limits; the parent notices and says so
                for sig in (signal.SIGPIPE, signal.SIGXFSZ, *SIGNALS):
                    _signal.signal(sig, _signal.SIG_DFL)
                _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # Corral's file
                run_as = self.placement.get("run_as")
                if run_as:
                    os.setgroups(run_as["groups"])
                    os.setgid(run_as["gid"])
                    os.setuid(run_as["uid"])
                    os.umask(0o077)
                stage = "cwd"
                os.makedirs(cwd, mode=0o700, exist_ok=True)
                os.chdir(cwd)
                stage = "exec"
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.closerange(3, write_end)
                os.closerange(write_end + 1, 1 << 16)
                os.execvpe(argv[0], argv, env)
            except OSError as exc:
                os.write(write_end, f"{exc.errno or 0}:{stage}:{exc.strerror or exc}".encode())
            finally:
                os._exit(127)
        os.close(write_end)
        try:
            failure = os.read(read_end, 4096).decode(errors="replace")
        finally:
            os.close(read_end)
        if failure:
            os.waitpid(pid, 0)
            number, _, rest = failure.partition(":")
            stage, _, text = rest.partition(":")
            if stage == "cwd":
                text = f"its working directory {cwd}: {text}"
            raise SpawnError(int(number) if number.isdigit() else 0, text, stage)
        self.pid = self.pgid = pid

    def loop(self, readiness: dict[str, Any] | None) -> int:
        while True:
            timeout = self.next_timeout(readiness)
            if timeout is None:
                info = signal.sigwaitinfo(SIGNALS)
                got: int | None = info.si_signo
            else:
                info = signal.sigtimedwait(SIGNALS, max(timeout, 0.0))
                got = info.si_signo if info is not None else None
            self.reap_children()
            if got in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP) and self.stop_requested is None:
                request = f.read_json(self.path(f.STOP))
                if request is not None:
                    self.begin_stop(request, cause="deleted")
                elif got != signal.SIGUSR1:
                    self.begin_stop({"grace_s": 10.0}, cause=f"the supervisor received {signal_name(got)}")
            elif got == signal.SIGUSR1 and (self.stop_requested or {}).get("time_limit"):
                self.delete_during_time_limit()
            if self.time_limit_at is not None and self.stop_requested is None and self.exit is None \
                    and time.monotonic() >= self.time_limit_at:
                self.begin_stop({"grace_s": TIME_LIMIT_GRACE_S}, cause=str(self.placement["time_limit"]["reason"]),
                                time_limit=True)
            if self.stop_requested is not None:
                done = self.advance_stop()
                if done is not None:
                    return done
                continue
            if self.exit is not None:
                done = self.advance_leftovers()
                if done is not None:
                    return done
                continue
            if not self.ready and readiness is not None and self.check_ready(readiness, self.placement.get("run_as")):
                self.ready = True
                self.publish(phase="running", ready=True, ready_at=f.now_iso(), waiting_for=None)
            self.watch_log()

    def watch_log(self) -> None:
        """Cap output.log; look again soon while it grows fast, rarely while it is quiet."""
        max_bytes = int(self.placement.get("log_max_bytes") or 0)
        size = cap_log(self.path(f.OUTPUT), max_bytes)
        fast = max_bytes and size - self.log_size > max_bytes // 16
        self.log_interval = LOG_CHECK_MIN_S if fast else min(self.log_interval * 2, LOG_CHECK_S)
        self.log_size = size

    def next_timeout(self, readiness: dict[str, Any] | None) -> float | None:
        if self.stop_requested is not None or self.leftover_deadline is not None:
            return STOP_POLL_S
        if self.exit is not None:
            return 0.0
        wait = self.log_interval
        if not self.ready and readiness is not None:
            wait = float(readiness.get("interval_s") or 0.25)
        if self.time_limit_at is not None:
            wait = min(wait, self.time_limit_at - time.monotonic())
        return wait

    def reap_children(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self.exit is None:
                if os.WIFSIGNALED(status):
                    self.exit = {"code": None, "signal": os.WTERMSIG(status), "at": f.now_iso()}
                else:
                    self.exit = {"code": os.WEXITSTATUS(status), "signal": None, "at": f.now_iso()}
                phase = "stopping" if self.stop_requested is not None else "exiting"
                if phase == "exiting" and not self.anything_left():
                    continue  # nothing to end: the loop's finish() records the exit now, in one write
                self.publish(phase=phase, exit=dict(self.exit, final=False))

    # --- readiness -------------------------------------------------------------------

    @staticmethod
    def check_ready(readiness: dict[str, Any], run_as: dict[str, Any] | None = None) -> bool:
        host, port = readiness.get("host", "127.0.0.1"), int(readiness["port"])
        if run_as and f.listener_uids(port) != {run_as["uid"]}:
            # Not (yet) the component's own server: nothing, or another user's process that
            # took the port first (it would get the proxy's traffic and the service token).
            return False
        import socket

        try:
            with socket.create_connection((host, port), timeout=2 if readiness.get("kind") == "http" else 1) as sock:
                return readiness.get("kind") != "http" or _http_ok(sock, host, port, readiness.get("path") or "/")
        except (OSError, ValueError):
            return False

    # --- stopping --------------------------------------------------------------------

    def group_alive(self) -> bool:
        """Cheap check: is anything left in the component's cgroup or process group?"""
        if self.cgroup and any(_alive(pid) for pid in cgroups.members(self.cgroup)):
            return True
        if self.pgid is None or self.reaping:
            return False  # a reaper cannot trust a pgid whose leader it never knew alive
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def scan(self) -> list[int]:
        """Every live process of the component (zombies do not count): its cgroup's when
        it has one; else the supervisor's descendants (as a subreaper it inherits what
        the command orphans, daemons included); a reaper, whose predecessor's orphans
        went elsewhere (and a supervisor that could not become a subreaper), looks for
        the session in /proc instead."""
        me = os.getpid()
        if self.cgroup:
            found = set(cgroups.members(self.cgroup))
        elif not self.reaping and self.subreaper and (tree := f.descendants(me)) is not None:
            found = tree
        else:
            found = set()
            for pid in f.all_pids():
                stat = f.proc_stat(pid)
                if stat is not None and stat[2] == self.session:
                    found.add(pid)
        return sorted(pid for pid in found if pid != me and _alive(pid))

    def anything_left(self) -> bool:
        return self.group_alive() or bool(self.scan())

    def signal_all(self, sig: int) -> None:
        if sig == signal.SIGKILL and self.cgroup:
            cgroups.kill_all(self.cgroup)
        if self.pgid is not None and not self.reaping:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in self.scan():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def begin_stop(self, request: dict[str, Any], cause: str, time_limit: bool = False) -> None:
        grace = max(0.0, float(request.get("grace_s", 30.0)))
        self.stop_requested = {"cause": cause, "grace_s": grace, "requested_at": request.get("requested_at")
                               or f.now_iso()}
        if time_limit:
            self.stop_requested["time_limit"] = True
        self.stop_deadline = time.monotonic() + grace
        self.signal_all(signal.SIGTERM)
        self.publish(phase="stopping", stop=dict(self.stop_requested, signal_sent="SIGTERM"))

    def delete_during_time_limit(self) -> None:
        """The backend asks for a delete while the time limit's stop runs: it ends as a
        delete (Deleted, not Failed), within the delete's grace period if that is shorter."""
        request = f.read_json(self.path(f.STOP))
        if request is None or self.stop_requested is None:
            return
        self.stop_requested.pop("time_limit", None)
        self.stop_requested["cause"] = "deleted"
        deadline = time.monotonic() + max(0.0, float(request.get("grace_s", 30.0)))
        self.stop_deadline = min(self.stop_deadline or deadline, deadline)

    def advance_stop(self) -> int | None:
        assert self.stop_requested is not None
        now = time.monotonic()
        if not self.anything_left():
            return self.finish_from_exit(stopped=True, cause=self.stop_requested["cause"],
                                         **({"time_limit": True} if self.stop_requested.get("time_limit") else {}))
        if self.stop_deadline is not None and now < self.stop_deadline:
            return None
        if self.kill_started is None:
            self.kill_started = now
            self.publish(stop=dict(self.stop_requested, signal_sent="SIGKILL"))
        if self.next_kill is None or now >= self.next_kill:
            self.signal_all(signal.SIGKILL)
            self.next_kill = now + KILL_RETRY_S
        if now - self.kill_started >= GIVE_UP_AFTER_KILL_S:
            return self.finish_from_exit(stopped=True, cause=self.stop_requested["cause"],
                                         delete_failed=describe_survivors(self.scan() or [self.pgid or 0]))
        return None

    def advance_leftovers(self) -> int | None:
        """The command exited: end what it left in its group, then record the exit."""
        now = time.monotonic()
        if not self.anything_left():
            return self.finish_from_exit(stopped=False, cause=None)
        if self.leftover_deadline is None:
            self.leftover_deadline = now + LEFTOVER_GRACE_S
            self.signal_all(signal.SIGTERM)
            return None
        if now >= self.leftover_deadline:
            self.signal_all(signal.SIGKILL)
            if now - self.leftover_deadline >= GIVE_UP_AFTER_KILL_S:
                return self.finish_from_exit(stopped=False, cause=None,
                                             leftovers=describe_survivors(self.scan()))
        return None

    # --- the end ---------------------------------------------------------------------

    def finish_from_exit(self, stopped: bool, cause: str | None, **extra: Any) -> int:
        exit_ = self.exit or {"code": None, "signal": None, "at": f.now_iso()}
        return self.finish(code=exit_["code"], sig=exit_["signal"], at=exit_["at"], stopped=stopped,
                           cause=cause, ended_at=f.now_iso(), **extra)

    def finish(self, *, code: int | None, sig: int | None, at: str, stopped: bool, cause: str | None,
               limits: dict[str, Any] | None = None, **extra: Any) -> int:
        record = {"code": code, "signal": sig, "at": at, "stopped": stopped, "cause": cause,
                  "oom_kills": cgroups.oom_kills(self.cgroup), "final": True, **extra}
        if sig is not None:
            record["signal_name"] = signal_name(sig)
        changes: dict[str, Any] = {"phase": "exited", "exit": record}
        if limits is not None:
            changes["limits"] = limits
        self.publish(**changes)  # first: the exit is news; removing the cgroup may take a moment
        if not extra.get("delete_failed") and not extra.get("leftovers"):
            cgroups.remove(self.cgroup)
        return 0

    # --- reap (the supervisor died) --------------------------------------------------

    def reap(self) -> int:
        """Stop what a dead supervisor left (the backend asked for a stop) and record the
        exit, whose code is lost unless the dead supervisor had written it."""
        self.reaping = True
        self.status = f.read_json(self.path(f.STATUS)) or {}
        if self.status.get("phase") == "exited":
            return 0
        self.pgid = self.status.get("pgid")
        self.session = self.status.get("session") or self.status.get("supervisor_pid") or -1
        self.cgroup = (self.status.get("limits") or {}).get("cgroup")
        self.exit = self.status.get("exit") or {"code": None, "signal": None, "at": f.now_iso(),
                                                 "lost": True}
        me = os.getpid()
        self.publish(supervisor_pid=me, supervisor_start=f.process_start_ticks(me))
        self.begin_stop(f.read_json(self.path(f.STOP)) or {"grace_s": 0.0}, cause="deleted")
        while True:
            done = self.advance_stop()
            if done is not None:
                return done
            time.sleep(STOP_POLL_S)


def cap_log(path: str, max_bytes: int) -> int:
    """Past ``max_bytes``, keep the newest half of the log (from a line start) behind a
    marker. The command appends (O_APPEND) all along: what it writes while this runs lands
    after the kept tail, or, in the instant between read and truncate, is lost."""
    if max_bytes <= 0:
        return 0
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return 0
    size = 0
    try:
        size = os.fstat(fd).st_size
        if size <= max_bytes:
            return size
        keep = os.pread(fd, max_bytes // 2, size - max_bytes // 2)
        keep = keep[keep.find(b"\n") + 1:] if b"\n" in keep else keep
        marker = (f"[corral: output.log reached {max_bytes} bytes; the oldest "
                  f"{size - len(keep)} bytes were dropped]\n").encode()
        os.pwrite(fd, marker + keep, 0)
        size = len(marker) + len(keep)
        os.ftruncate(fd, size)
    except OSError:
        pass
    finally:
        os.close(fd)
    return size


def _http_ok(sock: Any, host: str, port: int, path: str) -> bool:
    """A GET answered with 2xx or 3xx. By hand, not with http.client: that module (and the
    email and random modules it loads) would sit in every supervisor's memory."""
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    head = b""
    while b"\n" not in head and len(head) < 4096:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    parts = head.split(b"\n", 1)[0].split()  # HTTP/1.x 200 OK
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() and 200 <= int(parts[1]) < 400


def _alive(pid: int) -> bool:
    stat = f.proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def describe_survivors(pids: list[int]) -> str:
    states = {"D": "uninterruptible sleep", "R": "running", "S": "sleeping", "T": "stopped", "t": "traced"}
    parts = []
    for pid in pids[:10]:
        stat = f.proc_stat(pid)
        state = stat[0] if stat else "?"
        parts.append(f"pid {pid} ({states.get(state, state)})")
    more = f" and {len(pids) - 10} more" if len(pids) > 10 else ""
    return f"{len(pids)} process(es) still alive after SIGKILL: {', '.join(parts)}{more}"


def _detach(component_dir: str) -> None:
    """Fork into the background in a new session; the caller's process returns at once."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    log = os.open(f"{component_dir}/{f.SUPERVISOR_LOG}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _lock(component_dir: str) -> int:
    """Take the component's supervisor lock, waiting while another supervisor holds it."""
    fd = os.open(f"{component_dir}/{f.SUPERVISOR_LOCK}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


_PRCTL: Any = None


def _prctl() -> Any:
    global _PRCTL
    if _PRCTL is None:
        import ctypes

        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    return _PRCTL


def _become_subreaper() -> bool:
    """Orphans of the command become our children (and are reaped by us), not init's."""
    try:
        return _prctl()(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError, ImportError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("run", "reap"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, component_dir = argv[0], argv[1]
    if not component_dir.startswith("/"):  # the backend passes an absolute path
        component_dir = os.path.abspath(component_dir)
    _detach(component_dir)
    # Blocking: a duplicate waits for the first to end, then sees status.json and leaves;
    # the backend's liveness probe holds the lock only for an instant.
    _lock(component_dir)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, SIGNALS)
    subreaper = _become_subreaper()
    supervisor = Supervisor(component_dir)
    supervisor.subreaper = subreaper
    try:
        return supervisor.run() if mode == "run" else supervisor.reap()
    except Exception:
        import traceback

        traceback.print_exc()
        if supervisor.exit is not None:  # never lose an exit: record it before dying
            try:
                supervisor.finish_from_exit(stopped=supervisor.stop_requested is not None,
                                            cause=(supervisor.stop_requested or {}).get("cause"),
                                            error="the supervisor failed; see supervisor.log")
            except Exception:
                traceback.print_exc()
        raise


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        # The fork server lives in forkserver.py and uses this module: one copy of it, not
        # a second one imported under its package name beside this __main__.
        sys.modules.setdefault("corral.backends.local.supervisor", sys.modules[__name__])
        from corral.backends.local import forkserver

        sys.exit(forkserver.serve())
    sys.exit(main(sys.argv[1:]))
