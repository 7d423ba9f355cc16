"""corral.fswatch: inotify through libc, on real directories."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from corral.fswatch import DirWatch


def test_a_watch_sees_files_created_and_written_and_only_the_names_it_was_given(tmp_path: Path):
    watch = DirWatch([tmp_path])
    try:
        assert watch.wait(0) is False
        (tmp_path / "7").touch()
        assert watch.wait(5) is True
        assert watch.changed() is False  # drained
        os.close(os.open(tmp_path / "7", os.O_WRONLY))  # touched again (an existing event file)
        assert watch.wait(5) is True
    finally:
        watch.close()
    named = DirWatch([tmp_path], names=["db-wal"])
    try:
        (tmp_path / "other").write_text("x")
        assert named.wait(0.05) is False
        (tmp_path / "db-wal").write_text("x")
        assert named.wait(5) is True
    finally:
        named.close()


def test_wake_ends_a_wait_from_another_thread(tmp_path: Path):
    watch = DirWatch([tmp_path])
    try:
        threading.Timer(0.1, watch.wake).start()
        assert watch.wait(30) is False  # woken, nothing changed
    finally:
        watch.close()
