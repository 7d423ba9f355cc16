"""Reading a component's output file, the same way on every backend that keeps one.

The file may be written by the workload's own user (Slurm's job output) or cut while it
is read (the local supervisor's bounded output.log): it is opened without following
links, only as a regular file, and a read past its end goes on from its new end.

Standard library and ``backends.base`` only.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from corral.backends.base import OutputRead


def tail(fh: Any, lines: int, block: int = 65536, max_bytes: int = 8 << 20) -> bytes:
    """The last ``lines`` lines of a binary file, read from its end (at most ``max_bytes``)."""
    if lines <= 0:
        return b""
    end = fh.seek(0, os.SEEK_END)
    data, position = b"", end
    while position > 0 and data.count(b"\n") <= lines and end - position < max_bytes:
        step = min(block, position)
        position -= step
        fh.seek(position)
        data = fh.read(step) + data
    chunks = data.split(b"\n")
    if data.endswith(b"\n"):
        return b"\n".join(chunks[:-1][-lines:]) + b"\n"
    return b"\n".join(chunks[-lines:])


def last_line(path: str | os.PathLike[str], limit: int = 300) -> str:
    """The output's last non-empty line, shortened to ``limit`` characters ("" if none)."""
    read = read_file(Path(path), None, 5, 1 << 20, False)
    lines = read.data.decode(errors="replace").strip().splitlines()
    line = lines[-1].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_file(path: Path, offset: int | None, tail_lines: int, limit: int, over: bool) -> OutputRead:
    """``Backend.read_output`` over one file: from byte ``offset`` (None: its last
    ``tail_lines`` lines), at most ``limit`` bytes; ``over`` says the component has ended."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return OutputRead(b"", offset or 0, over)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return OutputRead(b"", offset or 0, over)
        if offset is None:
            return OutputRead(tail(fh, tail_lines), info.st_size, over)
        offset = min(offset, info.st_size)  # the file was cut: go on from its new end
        fh.seek(offset)
        data = fh.read(limit)
    return OutputRead(data, offset + len(data), over and len(data) < limit)


def follow(read: Callable[[int | None], OutputRead], poll_s: float = 0.25,
           stop: threading.Event | None = None) -> Iterator[str]:
    """``Backend.follow_logs`` on top of ``read_output`` (``read(None)`` starts with the
    tail): pieces of whole lines until the component has ended and all was read, or
    ``stop`` is set. Holds its thread: the agent's log API polls ``read_output`` instead."""
    chunk = read(None)
    offset, partial = chunk.offset, b""
    if chunk.data:
        yield chunk.data.decode(errors="replace")
    while True:
        chunk = read(offset)
        offset = chunk.offset
        data = partial + chunk.data
        cut = data.rfind(b"\n") + 1
        partial = data[cut:]
        if cut:
            yield data[:cut].decode(errors="replace")
        if chunk.data:
            continue
        if chunk.over:
            if partial:
                yield partial.decode(errors="replace")
            return
        if stop is not None:
            if stop.wait(poll_s):
                return
        else:
            time.sleep(poll_s)
