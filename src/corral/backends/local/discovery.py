"""What the local cluster runs that Corral did not start: GPU processes nvidia-smi sees
that no component owns (``LocalBackend.discover``), so that their GPUs count."""

from __future__ import annotations

import os
import pwd

from corral.backends.base import Discovered
from corral.backends.local import files as f
from corral.backends.local import gpus as gpu_detect


def unowned_gpu_processes(apps: list[gpu_detect.ComputeApp], known: set[int], sessions: set[int],
                          index_of: dict[str, int]) -> list[Discovered]:
    """``apps`` (nvidia-smi's compute apps) less those of a component: a process is owned
    when ``CORRAL_COMPONENT_ID`` in its environment names a ``known`` component, or it runs
    in one of the supervisors' ``sessions``. ``index_of``: GPU UUID -> index."""
    by_pid: dict[int, list[gpu_detect.ComputeApp]] = {}
    for app in apps:
        by_pid.setdefault(app.pid, []).append(app)
    found = []
    for pid, entries in sorted(by_pid.items()):
        owner = f.environ_value(pid, "CORRAL_COMPONENT_ID")
        stat = f.proc_stat(pid)
        if (owner and owner.isdigit() and int(owner) in known) or (stat and stat[2] in sessions):
            continue
        try:
            user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
        except (OSError, KeyError):
            user = None
        found.append(Discovered(
            native_name=f"pid-{pid}", kind="process", command=f.cmdline(pid) or entries[0].process_name,
            pid=pid, user=user,
            gpu_indices=tuple(sorted({index_of[e.gpu_uuid] for e in entries if e.gpu_uuid in index_of})),
            gpu_memory_bytes=sum(e.used_memory_bytes for e in entries),
            started_at=f.ticks_to_datetime(stat[3]) if stat else None,
        ))
    return found
