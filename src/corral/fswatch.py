"""Waiting for files to change without polling them: Linux inotify, through libc.

    watch = DirWatch([events_dir])          # OSError where inotify is missing
    watch.wait(timeout=1.0)                 # True: something changed in a watched directory
    watch.wake()                            # from another thread: end a wait now (returns False)
    watch.close()

The agent waits on its backend's event directory this way (a supervisor creates
``events/<component id>`` after each change), and the scheduler and the server wait on
SQLite's database and write-ahead log (every commit writes there). A wait costs nothing
while nothing changes; callers keep a slow timer anyway (a missed wake-up costs a timer).
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
from collections.abc import Iterable

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
CHANGES = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name

_libc: ctypes.CDLL | None = None


def _inotify() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError("inotify is not available on this system")
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        _libc = libc
    return _libc


class DirWatch:
    """Changes to files directly in ``dirs`` (not in their subdirectories); with ``names``,
    only to files of those names."""

    def __init__(self, dirs: Iterable[str | os.PathLike[str]], *, names: Iterable[str] | None = None,
                 mask: int = CHANGES) -> None:
        libc = _inotify()
        self._names = None if names is None else {os.fsencode(n) for n in names}
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            for directory in dirs:
                if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"cannot watch {directory}: {os.strerror(errno)}")
        except OSError:
            self.close()
            raise

    def wait(self, timeout: float | None) -> bool:
        """Until a watched file changes (True), ``wake()`` is called or ``timeout`` passes (False)."""
        if self._fd < 0:
            raise OSError("the watch is closed")
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], None if timeout is None else max(0.0, timeout))
        if self._wake_r in ready:
            _drain(self._wake_r)
        return self._fd in ready and self._matched()

    def changed(self) -> bool:
        """Whether a watched file changed since the previous call (never waits)."""
        return self.wait(0)

    def _matched(self) -> bool:
        matched = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return matched
            if not data:
                return matched
            if self._names is None:
                matched = True
                continue
            offset = 0
            while offset + _HEADER.size <= len(data):
                _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size:offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW or name in self._names:
                    matched = True

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending, or the watch is closed

    def close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._wake_r = self._wake_w = -1


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass
