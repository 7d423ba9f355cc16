"""The `corral` command's entry point: a call that talks to the server runs in a warm process.

Most of a `corral workloads ls` is Python importing Typer, Click and Corral's client (~150 ms
on a loaded two-core machine, 15-20x `python -c pass`), not the request. So, as Mercurial's
`chg` does, the first such call runs as usual and leaves a *warm process* behind
(``corral.cli.warm``: those modules imported, listening on a Unix socket only its user can
reach); the next calls hand it their arguments, environment, working directory and their
own stdin, stdout and stderr (the file descriptors themselves), and it forks a child that
runs the command exactly as this process would have, then sends back the exit status.
Ctrl-C, SIGTERM and SIGHUP are passed on to the child. This process imports nothing but a
few of the standard library's C modules.

Only commands that talk to the server go there (``WARM_COMMANDS``); `corral serve`,
`agent`, `login` (which may prompt for a token on the terminal), the database and secrets
commands always run here. The warm process ends after ``IDLE_EXIT_S`` without a call, and
at once when a module it loaded has changed on disk (an upgrade): that call then runs here.
``CORRAL_CLI_WARM=0`` turns it off. Anything that goes wrong on the way (no socket, a
refused connection, a process that went away) falls back to running the call here.

The socket lives in ``$XDG_RUNTIME_DIR/corral`` or else ``/tmp/corral-<uid>``: a directory
that must be this user's and closed to everyone else (0700), or nothing is used. The warm
process also checks each caller's uid (SO_PEERCRED): a call runs with the caller's
environment (HOME, and so the saved token), so only its own user may make one.
"""

from __future__ import annotations

import os
import sys

ENV = "CORRAL_CLI_WARM"
WARM_COMMANDS = frozenset({"workloads", "projects", "clusters", "quotas", "models", "whoami"})
IDLE_EXIT_S = 900.0
STALE = b"S"  # the warm process's answer when it must not run the call (its code changed)
TAKEN, GO = b"A", b"G"  # the child has the call; the caller still wants it run (not given up)
HANDSHAKE_S = 10.0  # a warm process that does not take a call this fast (stopped, stuck) is passed by


def main() -> None:
    argv = sys.argv[1:]
    path = socket_path() if wants_warm(argv) else None
    if path is not None:
        code = _call_warm(path, argv)
        if code is not None:
            sys.exit(code)
    from corral.cli.main import app

    try:
        app(prog_name="corral")
    finally:
        if path is not None:
            _start_warm(path)


def wants_warm(argv: list[str]) -> bool:
    return (bool(argv) and argv[0] in WARM_COMMANDS
            and os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off"))


def socket_path() -> str | None:
    """Where this user's warm process listens, in a directory only this user can enter;
    None when no such directory can be had (then none is used)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = os.path.join(runtime, "corral") if runtime and os.path.isabs(runtime) else f"/tmp/corral-{os.getuid()}"
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    is_dir = st.st_mode & 0o170000 == 0o040000  # stat.S_ISDIR, without loading stat
    if not is_dir or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # someone else's, or open to others: never talk through it
    path = os.path.join(base, f"cli-{_build_key()}.sock")
    return path if len(path.encode()) < 100 else None  # a Unix socket's path is short (108 bytes)


# What decides where modules come from, kept in the warm process's environment (and part of
# its key); every other PYTHON* variable (PYTHONPROFILEIMPORTTIME, PYTHONWARNINGS, ...) is one
# call's wish and is not.
_KEPT_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE",
                     "PYTHONPYCACHEPREFIX", "PYTHONPLATLIBDIR")


def _build_key() -> str:
    """One warm process per interpreter, installation of Corral and module search path
    (a call with another PYTHONPATH must not run code imported from the first one's)."""
    import zlib

    from corral import __file__ as package, __version__

    key = "\0".join([sys.executable, package or "", __version__,
                     *(f"{k}={os.environ[k]}" for k in _KEPT_PYTHON_VARS if k in os.environ)])
    return format(zlib.crc32(key.encode()), "08x")


def _call_warm(path: str, argv: list[str]) -> int | None:
    """The call's exit status, run by the warm process; None if it did not run it.

    The C modules ``_socket`` and ``_signal``, not ``socket`` and ``signal``: those load
    enum, selectors and collections, 7 ms of a call that should take a few more than
    Python's own start."""
    import _signal
    import _socket
    import marshal

    fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
    if len(fds) != 3:
        return None  # a closed standard stream: the child could not stand in for it
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = marshal.dumps({
            "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": _umask(),
            "encodings": [(s.encoding, s.errors) if s is not None else None
                          for s in (sys.stdin, sys.stdout, sys.stderr)],
        })
        sock.sendall(len(request).to_bytes(4, "big") + request)
        # The command runs only once both sides agree: a caller that gave up waiting runs it
        # itself, and its child, seeing the connection closed instead of GO, never does. The
        # streams go with GO: sent earlier, a stuck warm process would hold them open (and a
        # pipe from this call would not end) until it went on.
        sock.settimeout(HANDSHAKE_S)
        if sock.recv(1) != TAKEN:  # STALE, or closed: run here
            raise ConnectionError
        rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
        sock.sendmsg([GO], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        sock.settimeout(None)
    except OSError:  # refused, timed out, closed
        sock.close()
        return None

    def forward(number: int, _frame: object) -> None:
        try:
            sock.send(bytes([number]))
        except OSError:
            pass

    passed_on = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
    for number in passed_on:
        _signal.signal(number, forward)
    answer = b""
    while True:
        try:
            chunk = sock.recv(4)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        answer += chunk
    sock.close()
    if len(answer) != 4:  # the child died without a word (SIGKILL): say so, as a shell would
        print("corral: the command ended without an exit status", file=sys.stderr)
        return 1
    return int.from_bytes(answer, "big", signed=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _start_warm(path: str) -> None:
    """Leave a warm process behind for the next calls (it gives up if one is running)."""
    import subprocess

    # Nothing of this call's own (its token, its Python debugging wishes) stays in the warm
    # process's environment; a relative module path keeps its meaning from "/".
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORRAL_", "PYTHON")) or k in _KEPT_PYTHON_VARS}
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    try:
        subprocess.Popen([sys.executable, "-m", "corral.cli.warm", path], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True, cwd="/")
    except OSError:
        pass
