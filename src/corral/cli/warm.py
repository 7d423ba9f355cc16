"""The warm process of the `corral` command: ``python -m corral.cli.warm <socket path>``.

`corral.cli.entry` starts it after a call it ran itself, and hands it the next calls (see
there for why). It imports what the server-talking commands need once, then for each
connection from its own user, confined as it is (``entry.identity``), forks a child that
takes over the caller's stdin, stdout and stderr, environment, working directory and umask,
runs the command as `corral` would, and sends back its exit status. The child is a fresh
copy of this process for every call, so nothing one call does is seen by the next.

It holds ``<socket>.lock`` for its whole life (a second one started meanwhile leaves at
once), ends after ``IDLE_EXIT_S`` without a call, when its socket is no longer the one at
its path, and when a module it loaded has changed on disk: that call is answered
``STALE`` and runs in the caller instead.
"""

from __future__ import annotations

import fcntl
import gc
import marshal
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from corral.cli.entry import GO, IDLE_EXIT_S, STALE, TAKEN, WARM_COMMANDS, identity

_CHECK_EVERY_S = 30.0  # how often an idle warm process looks at its socket and its age


def serve(path: str) -> int:
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another warm process serves this path
    _preload()
    loaded = _module_times()
    own = identity("self")
    # What is loaded now stays as it is: the collector of a child never walks it, so the
    # child does not copy the pages it lies on (CPython's advice for servers that fork).
    gc.collect()
    gc.freeze()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    inode = os.stat(path).st_ino
    signal.signal(signal.SIGCHLD, _reap)  # reaped by us, so their CPU time is counted as ours (cutime)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    idle_for = 0.0
    try:
        while idle_for < IDLE_EXIT_S:
            if not selector.select(_CHECK_EVERY_S):
                idle_for += _CHECK_EVERY_S
                if not _still_ours(path, inode):
                    return 0
                continue
            idle_for = 0.0
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                if not _same_caller(conn, own):
                    continue  # another user's, or a confined caller's: refused, unanswered
                if _module_times() != loaded:
                    conn.sendall(STALE)
                    return 0
                if os.fork() == 0:
                    listener.close()
                    selector.close()
                    os.close(lock)
                    _run_child(conn)  # never returns
    finally:
        if _still_ours(path, inode):
            os.unlink(path)
    return 0


def _reap(_signum: int, _frame: object) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


# What the warm commands import, some of it only when they print or send (see each module).
PRELOAD = ("corral.cli.output", "corral.cli.tables", "corral.cli.config", "corral.cli.workloads_delete",
           "corral.cli.workloads_export", "corral.client", "corral.client.transport", "rich.console", "rich.table",
           "rich.text", "rich.box", "yaml", "urllib.request", "urllib.error", "http.client",
           "httpx")  # httpx: what `workloads logs --follow` streams with


_ROOT: Any = None  # the `corral` command, built with every warm command below it


def _preload() -> None:
    """Import and build what a call of the warm commands needs, so that a child does not:
    Typer builds a command's parameters (a validator each) when it runs, which costs
    more than the rest of a warm call."""
    global _ROOT
    import importlib

    import typer.main

    from corral.cli.main import app

    _ROOT = typer.main.get_command(app)
    for name in sorted(WARM_COMMANDS):
        command = _ROOT.load(name)  # imports the command's module
        for sub in getattr(command, "list_commands", lambda _ctx: [])(None):
            command.get_command(None, sub)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # Typer validates each option's value with a pydantic TypeAdapter when it parses: the
    # first one looks pydantic's plugins up (a scan of the installed packages), once.
    from pydantic import TypeAdapter

    TypeAdapter(int).validate_python(1)
    "localhost".encode("idna")  # the codec a connection's host name goes through (getaddrinfo)


def _module_times() -> dict[str, float]:
    """When each of Corral's loaded modules, and each other package's top module, was last
    written: an upgrade (pip rewrites a package's files) or an edit changes one of them.
    Not every module of every package: a call would wait for ~400 stats instead of ~150."""
    times = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and path.startswith("/") and ("." not in name or name.startswith("corral.")):
            try:
                times[path] = os.stat(path).st_mtime
            except OSError:
                times[path] = -1.0
    return times


def _still_ours(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _same_caller(conn: socket.socket, own: str) -> bool:
    """The caller is this user, confined as this process is (``entry.identity``): its call
    will run with this process's namespaces, cgroup and limits."""
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", credentials)
    return uid == os.getuid() and identity(str(pid)) == own


def _run_child(conn: socket.socket) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        request = marshal.loads(_read(conn, int.from_bytes(_read(conn, 4), "big")))
        conn.sendall(TAKEN + os.getpid().to_bytes(4, "big"))  # the caller stops and continues us on Ctrl-Z
        go, fds, _flags, _addr = socket.recv_fds(conn, 1, 3)
        if go != GO or len(fds) != 3:  # the caller gave up waiting and runs the call itself
            os._exit(0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _take_over(request)
        threading.Thread(target=_signals_from, args=(conn,), daemon=True).start()
        code = _run(request["argv"])
    except BaseException:  # noqa: BLE001 (whatever happens, the caller gets an answer)
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        try:
            conn.sendall(struct.pack(">i", code))
        finally:
            os._exit(0)


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            os._exit(0)  # the caller went away before the call began
        data += chunk
    return data


def _take_over(request: dict) -> None:
    """Become the caller: its environment, directory, umask and standard streams."""
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # TZ: local times as the caller's
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    streams = []
    for fd, (mode, encoding) in enumerate(zip(("r", "w", "w"), request["encodings"])):
        enc, errors = encoding or ("utf-8", "strict")
        line = fd == 2 or os.isatty(fd)
        streams.append(open(fd, mode, encoding=enc, errors=errors, closefd=False,  # noqa: SIM115
                            buffering=1 if line else -1))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
    sys.argv = ["corral", *request["argv"]]


def _signals_from(conn: socket.socket) -> None:
    """Signals the caller received, one byte each; the caller gone (end of file) is a hang-up."""
    while True:
        try:
            data = conn.recv(16)
        except OSError:
            data = b""
        if not data:
            os.kill(os.getpid(), signal.SIGHUP)
            return
        for number in data:
            os.kill(os.getpid(), number)


def _run(argv: list[str]) -> int:
    """Run the command as `corral` does (Click's standalone mode: usage errors, Ctrl-C and
    the commands' own errors end in SystemExit). An unexpected exception's traceback is
    printed without local variables, as Typer's is (they may hold a token)."""
    try:
        _ROOT.main(argv, prog_name="corral")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(sys.argv[1]))
