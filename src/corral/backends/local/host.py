"""What the local backend learns of its host: whether cgroup limits can be enforced, and
how much memory there is."""

from __future__ import annotations

import os


def probe_limits(enabled: bool, parent: str | None, instance: str) -> str:
    """Whether memory and CPU limits can be enforced here, tried once with a probe cgroup:
    "" when they can, else one line saying why not (for the cluster's isolation line; a
    component's own outcome stays in its status.json ``limits``, see ``inspect``)."""
    from corral.backends.local import cgroups

    setup = cgroups.setup_component_cgroup(0, 1 << 30, 1000, parent=parent, enabled=enabled,
                                           instance=f"{instance}-probe")
    cgroups.remove(setup.path)
    whys = [text.removeprefix("not enforced: ") for text in (setup.memory, setup.cpu)
            if text.startswith("not enforced")]
    if not whys:
        return ""
    if len(whys) == 2 and whys[0] != whys[1]:
        return f"memory and CPU limits are not enforced on this host: memory: {whys[0]}; CPU: {whys[1]}"
    which = "memory and CPU limits are" if len(whys) == 2 else \
        ("the memory limit is" if setup.memory.startswith("not enforced") else "the CPU limit is")
    return f"{which} not enforced on this host: {whys[0]}"


def mem_total() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
