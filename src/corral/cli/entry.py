"""The `corral` command's entry point: a call that talks to the server runs in a warm process.

Most of a `corral workloads ls` is Python importing Typer, Click and Corral's client (~150 ms
on a loaded two-core machine, 15-20x `python -c pass`), not the request. So, as Mercurial's
`chg` does, the first such call runs as usual and leaves a *warm process* behind
(``corral.cli.warm``: those modules imported, listening on a Unix socket only its user can
reach); the next calls hand it their arguments, environment, working directory and their
own stdin, stdout and stderr (the file descriptors themselves), and it forks a child that
runs the command exactly as this process would have, then sends back the exit status.
Ctrl-C, SIGTERM and SIGHUP are passed on to the child (unless this process ignores them),
and a call ended by one ends this process by the same signal; Ctrl-Z stops the child with
this process, and a call put in the background of the terminal it reads from stays stopped
(as a read there would stop it). This process imports nothing but a few of the standard
library's C modules.

Only commands that talk to the server go there (``WARM_COMMANDS``), and only calls that
need nothing of this process but its three standard streams: `corral serve`, `agent`,
`login` (which may prompt for a token on the terminal), the database and secrets commands,
a call given a path to one of this process's descriptors (``/dev/fd/N``, ``<(...)``) and
a call started in the background of its terminal always run here. The warm process ends
after ``IDLE_EXIT_S`` without a call, and at once when a module it loaded has changed on
disk (an upgrade): that call then runs here. ``CORRAL_CLI_WARM=0`` turns it off. Anything
that goes wrong on the way (no socket, a refused connection, a process that went away or
does not answer within ``HANDSHAKE_S``) falls back to running the call here.

The socket lives in ``$XDG_RUNTIME_DIR/corral`` or else ``/tmp/corral-<uid>``: a directory
that must be this user's and closed to everyone else (0700), or nothing is used. Each side
checks the other's uid (SO_PEERCRED): a call runs with the caller's environment (HOME, and
so the saved token), so only its own user may make one, and a caller talks to no one else.
A call runs with the warm process's namespaces, cgroup, resource limits and seccomp state,
so those are part of the socket's name (``identity``), and the warm process checks a
caller's again: a sandboxed caller (``unshare -n``, another cgroup) never reaches the warm
process of an unconfined one.
"""

from __future__ import annotations

import os
import sys

ENV = "CORRAL_CLI_WARM"
WARM_COMMANDS = frozenset({"workloads", "projects", "clusters", "quotas", "models", "whoami"})
IDLE_EXIT_S = 900.0
STALE = b"S"  # the warm process's answer when it must not run the call (its code changed)
TAKEN, GO = b"A", b"G"  # the child has the call (then its pid); the caller still wants it run
HANDSHAKE_S = 10.0  # a warm process that does not take a call this fast (stopped, stuck) is passed by
_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


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
    if not argv or argv[0] not in WARM_COMMANDS:
        return False
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    # A path to one of this process's own descriptors names nothing in the warm process.
    if any("/dev/fd/" in arg or "/proc/self/fd/" in arg for arg in argv):
        return False
    return not _background_on_terminal()


def _background_on_terminal() -> bool:
    """Reading a terminal whose foreground is another process group (`corral ... &`): here
    a read would stop the call (SIGTTIN); a warm process's child would read the shell's input."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) != os.getpgrp()
    except OSError:
        return False


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
        # Someone else's, or open to others: never talk through it, and say why calls are slow
        # (where there is a stderr to say it on).
        try:
            os.write(2, f"corral: no warm process: {base} is not a directory of yours that only you can enter "
                        f"(calls run in place, slower); remove it, set XDG_RUNTIME_DIR or CORRAL_CLI_WARM=0\n"
                        .encode())
        except OSError:
            pass
        return None
    path = os.path.join(base, f"cli-{_build_key()}.sock")
    return path if len(path.encode()) < 100 else None  # a Unix socket's path is short (108 bytes)


# What decides where modules come from, kept in the warm process's environment (and part of
# its key); every other PYTHON* variable (PYTHONPROFILEIMPORTTIME, PYTHONWARNINGS, ...) is one
# call's wish and is not.
_KEPT_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE",
                     "PYTHONPYCACHEPREFIX", "PYTHONPLATLIBDIR")


def _python_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEPT_PYTHON_VARS if k in os.environ}
    if env.get("PYTHONPATH"):  # relative entries mean this directory; the warm process runs in /
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    return env


def _build_key() -> str:
    """One warm process per interpreter, installation of Corral, module search path (a call
    with another PYTHONPATH must not run code imported from the first one's) and
    ``identity`` (a call must not run with more than its caller may)."""
    import zlib

    from corral import __file__ as package, __version__

    key = "\0".join([sys.executable, package or "", __version__,
                     *(f"{k}={v}" for k, v in sorted(_python_env().items())), identity("self")])
    return format(zlib.crc32(key.encode()), "08x")


def identity(pid: str) -> str:
    """What confines a process beyond its uid: its namespaces, cgroup, resource limits,
    seccomp and no_new_privs. A call runs with the warm process's."""
    parts = []
    for ns in _NAMESPACES:
        try:
            parts.append(os.readlink(f"/proc/{pid}/ns/{ns}"))
        except OSError:
            parts.append("-")
    for name in ("cgroup", "limits", "status"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            text = "-"
        if name == "status":
            text = "".join(line for line in text.splitlines(True) if line.startswith(("NoNewPrivs", "Seccomp")))
        parts.append(text)
    return "\0".join(parts)


def _call_warm(path: str, argv: list[str]) -> int | None:
    """The call's exit status, run by the warm process; None if it did not run it.

    The C modules ``_socket`` and ``_signal`` (``_wait_for``), not ``socket`` and ``signal``: those load
    enum, selectors and collections, 7 ms of a call that should take a few more than
    Python's own start."""
    import _socket
    import marshal

    fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
    if len(fds) != 3:
        return None  # a closed standard stream: the child could not stand in for it
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(HANDSHAKE_S)
    try:
        sock.connect(path)
        # Whoever listens must be this user (a directory swapped under us would be someone
        # else's socket): nothing of this call is sent to anyone else.
        credentials = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(credentials[4:8], sys.byteorder) != os.getuid():
            raise ConnectionRefusedError
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
        answer = b""
        while len(answer) < 5:
            chunk = sock.recv(5 - len(answer))
            if not chunk or answer + chunk == STALE:
                raise ConnectionAbortedError  # the warm process's code changed, or it went away
            answer += chunk
        if answer[:1] != TAKEN:
            raise ConnectionAbortedError
        child = int.from_bytes(answer[1:], "big")
        rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
        sock.sendmsg([GO], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        sock.settimeout(None)
    except TimeoutError:  # stopped or stuck: the next calls do not wait for it too
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        return None
    except OSError:  # none listening, refused, closed
        sock.close()
        return None
    return _wait_for(sock, child)


def _wait_for(sock: object, child: int) -> int:
    """Pass signals on while the child runs; its exit status, or this process ended by the
    signal that ended it."""
    import _signal

    ended_by: list[int] = []

    def forward(number: int, _frame: object) -> None:
        ended_by[:] = [number]
        try:
            sock.send(bytes([number]))  # type: ignore[attr-defined]
        except OSError:
            pass

    def stop(_number: int, _frame: object) -> None:
        """Ctrl-Z: the child stops with us; when we go on, it goes on, unless we are in the
        background of the terminal it reads from (a read there would stop it)."""
        _signal_child(child, _signal.SIGSTOP)
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGTSTP)  # stopped here until SIGCONT
        while _background_on_terminal():
            os.kill(os.getpid(), _signal.SIGTTIN)  # as a read would: stopped until brought back
        _signal.signal(_signal.SIGTSTP, stop)
        _signal_child(child, _signal.SIGCONT)

    passed_on = [n for n in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
                 if _signal.getsignal(n) != _signal.SIG_IGN]  # ignored here (nohup): ignored
    for number in passed_on:
        _signal.signal(number, forward)
    if _signal.getsignal(_signal.SIGTSTP) != _signal.SIG_IGN:
        _signal.signal(_signal.SIGTSTP, stop)
    answer = b""
    while True:
        try:
            chunk = sock.recv(4)  # type: ignore[attr-defined]
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        answer += chunk
    sock.close()  # type: ignore[attr-defined]
    if len(answer) == 4:
        return int.from_bytes(answer, "big", signed=True)
    if ended_by:  # the signal passed on ended the child: it ends us the same way (status 128+N)
        _signal.signal(ended_by[0], _signal.SIG_DFL)
        os.kill(os.getpid(), ended_by[0])
    print("corral: the command ended without an exit status", file=sys.stderr)
    return 1


def _signal_child(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except OSError:
        pass


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
    # process's environment; -P: its directory (/) is not searched for modules.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "PYTHON"))}
    env.update(_python_env())
    try:
        subprocess.Popen([sys.executable, "-P", "-m", "corral.cli.warm", path], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True, cwd="/")
    except OSError:
        pass
