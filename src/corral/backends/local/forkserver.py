"""The supervisors' fork server: ``python -m corral.backends.local.supervisor serve``.

It reads "run DIR" and "reap DIR" lines on stdin and forks a supervisor for each (which
detaches at once, see supervisor.py); it ends at end of input. Forked, a supervisor shares
the server's memory copy-on-write: what it owns alone, and what "memory per running job"
counts, is every page either of them writes after the fork. So before it forks anything the
server makes its memory what a supervisor will find there unchanged: it loads what they
load, runs what they run (``_warm_up``: bytecode specialised, caches filled), and fills the
holes of its allocator's pools (``_fill_pools``: their new objects then go many to a fresh
page, not a few to each copied one). Measured by bench/supervisor_memory.py.
"""

from __future__ import annotations

import _signal
import os
import sys

from corral.backends.local import cgroups
from corral.backends.local import files as f
from corral.backends.local import supervisor as sv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PR_GET_DUMPABLE = 3  # a prctl that changes nothing


def _warm_up(rounds: int = 10) -> None:
    """Supervise a few ``true`` commands in the fork server before it forks anything.

    A supervisor owns a copy of every page it writes after the fork, and a Python function
    run for the first times writes a lot: its bytecode is specialised in place, the
    interpreter's attribute cache fills, lazily made objects are made. Run here, in a
    throwaway directory (tmpfs where there is one: the status writes fsync), all that is
    done once in pages every supervisor shares. Best effort: a warm-up that fails only
    leaves supervisors bigger."""
    supervisor = None
    base = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    work = f"{base}/corral-supervisor-warm-up-{os.getpid()}-{os.urandom(4).hex()}"
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, sv.SIGNALS)
    chld = _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # the supervisor waits for its command
    try:
        os.mkdir(work, 0o700)
        # With limits, in a cgroup of its own where the host allows (removed at its end, as
        # every component's is), so that the cgroup code a supervisor runs is warm too.
        f.write_json_atomic(f"{work}/{f.PLACEMENT}", {
            "component_id": 0, "argv": ["true"], "cgroups": True, "instance": f"warm-up-{os.getpid()}",
            "memory_bytes": 1 << 30, "cpu_millicores": 1000, "log_max_bytes": 1 << 20,
            "env": {"PATH": os.defpath}})
        for _ in range(rounds):
            try:
                os.unlink(f"{work}/{f.STATUS}")
            except FileNotFoundError:
                pass
            os.close(sv._lock(work))
            sv._prctl()(PR_GET_DUMPABLE, 0, 0, 0, 0)  # a harmless prctl: _become_subreaper's call, warm
            supervisor = sv.Supervisor(work)
            supervisor.subreaper = True  # as supervisors are: the scan reads its descendants
            supervisor.run()
            for _ in range(rounds):  # the steady state: a time-out, nothing to reap, the log
                supervisor.exit = None
                supervisor.next_timeout(None)
                _signal.sigtimedwait(sv.SIGNALS, 0)
                supervisor.reap_children()
                supervisor.watch_log()
    except Exception as exc:  # noqa: BLE001 (best effort, said in the server's log)
        print(f"supervisor serve: warm-up failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        _signal.signal(_signal.SIGCHLD, chld)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        if supervisor is not None:
            cgroups.remove(supervisor.cgroup)  # again: on a busy host the kernel can take a while
        try:
            for name in os.listdir(work):
                os.unlink(f"{work}/{name}")
            os.rmdir(work)
        except OSError:
            pass


_PADDING: list[Any] = []


def _fill_pools() -> None:
    """Fill, for good, the free blocks of the server's partly used small-object pools.

    A supervisor's new objects would otherwise land in those holes, left all over the
    server's memory by what it loaded and freed: a few to a page, each page then copied. With
    no hole left they are carved out of fresh pools, many to a page. How many blocks of each
    size are free is what CPython's sys._debugmallocstats() prints; best effort elsewhere."""
    free = _free_blocks()
    _PADDING[:] = [None] * sum(free.values())  # one allocation, outside the pools
    i = 0
    for size, count in free.items():
        for _ in range(count):
            _PADDING[i] = _block_of(size)
            i += 1


def _free_blocks() -> dict[int, int]:
    """{block size: free blocks in partly used pools}, read from sys._debugmallocstats()."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return {}
    read_end, write_end = os.pipe()  # its report goes to fd 2; a few KiB, well within a pipe
    saved = os.dup(2)
    try:
        os.dup2(write_end, 2)
        stats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    text = b""
    while chunk := os.read(read_end, 65536):
        text += chunk
    os.close(read_end)
    free = {}
    table = text.split(b"avail blocks", 1)[-1].split(b"\n\n", 1)[0]
    for line in table.splitlines():
        fields = line.split()  # class, size, pools, blocks in use, avail blocks
        if len(fields) == 5 and all(x.isdigit() for x in fields):
            size, avail = int(fields[1]), int(fields[4])
            if avail and 16 <= size <= 512 and size % 16 == 0:
                free[size] = avail
    return free


def _block_of(size: int) -> Any:
    """A new object that takes exactly one block of ``size`` bytes."""
    if size == 16:
        return object()
    if size == 32:
        return float(os.getpid()) + 0.5  # 24 bytes
    return b"\0" * (size - 33)  # bytes: a 32-byte header and the terminating NUL


def prepare_server() -> None:
    """Make the fork server's memory what every supervisor shares: everything they load, warm."""
    import gc

    # What a supervisor may load later is loaded once here, shared by all of them.
    for name in ("socket", "stat"):  # not http.client: see supervisor._http_ok
        __import__(name)
    try:
        sv._prctl()
    except (OSError, AttributeError, ImportError):
        pass
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # the short-lived forks are reaped by the kernel
    cgroups.remember_mount()
    _warm_up()
    gc.collect()
    _fill_pools()
    gc.freeze()  # what is loaded now stays put: the collector never writes to those shared pages


def serve() -> int:
    """The fork server: for each "run DIR" or "reap DIR" line on stdin, fork a supervisor
    (which detaches at once); end at end of file. Forked children are reaped as they go."""
    prepare_server()
    for line in sys.stdin.buffer:
        mode, _, component_dir = line.decode().rstrip("\n").partition(" ")
        if mode not in ("run", "reap") or not component_dir:
            print(f"supervisor serve: ignored {line!r}", file=sys.stderr, flush=True)
            continue
        if os.fork() == 0:
            code = 1
            try:
                _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # the supervisor waits for its command
                os.chdir(component_dir)
                code = sv.main([mode, component_dir])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
    return 0
