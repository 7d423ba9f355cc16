"""What a job's progress report (``files.report_progress``) says, in words, on any backend.

Standard library only.
"""

from __future__ import annotations

from typing import Any


def human_bytes(n: float) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= factor:
            value = n / factor
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def progress_reason(progress: dict[str, Any] | None) -> str | None:
    """ "downloading: 120 MB of 400 MB" from a job's progress report."""
    if not progress:
        return None
    if progress.get("message"):
        return str(progress["message"])
    phase = progress.get("phase") or "progress"
    done, total = progress.get("bytes_done"), progress.get("bytes_total")
    if done is not None:
        text = f"{phase}: {human_bytes(done)}"
        return text + (f" of {human_bytes(total)}" if total else "")
    files_done, files_total = progress.get("files_done"), progress.get("files_total")
    if files_done is not None:
        return f"{phase}: {files_done}" + (f" of {files_total}" if files_total else "") + " files"
    return None


def clean_progress(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """The report as an observation carries it (without its own timestamp)."""
    if not progress:
        return None
    return {k: v for k, v in progress.items() if k != "at"}
