"""What running local components use: CPU, memory and GPUs (``LocalBackend.usage``).

A component in a cgroup v2 of its own (see ``cgroups``) is measured by its cgroup
(memory by /proc where the cgroup lacks the memory controller):
``cpu.stat`` (``usage_usec``) and ``memory.current`` less ``inactive_file`` of
``memory.stat`` (the working set, as the kubelet counts it: reclaimable page cache is not
use). Otherwise by /proc: the processes under its supervisor (a subreaper, so orphans
stay under it), CPU as utime + stime of each plus what they (and the supervisor) reaped
(cutime + cstime, so that a finished child's time is not lost), memory as the sum of
their resident sets (pages shared between them count once per process).

GPUs: the component's devices (exclusive to it) as ``nvidia-smi --query-gpu`` or
``rocm-smi --showuse --showmemuse --json`` report them, only when a running component has
GPUs and the tool is installed; fake devices report nothing.

CPU is a rate: the sampler keeps each component's previous reading; the first sample
of a component is its mean since its main process started. The parsers are pure
functions (tested on real outputs); reading costs a few small files per process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.backends.base import Usage
from corral.backends.local import files as f

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_GPU_TIMEOUT_S = 10


# --- parsers (pure) ----------------------------------------------------------------------

def parse_cpu_stat(text: str) -> int | None:
    """cgroup v2 ``cpu.stat``: the CPU time used, in microseconds."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value)
    return None


def parse_memory(current: str, stat: str) -> int | None:
    """cgroup v2 ``memory.current`` less ``inactive_file`` of ``memory.stat``."""
    if not current.strip().isdigit():
        return None
    inactive = 0
    for line in stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "inactive_file" and value.strip().isdigit():
            inactive = int(value)
    return max(0, int(current) - inactive)


def parse_proc_stat_times(text: str) -> tuple[int, int, int] | None:
    """``/proc/PID/stat``: (utime + stime, cutime + cstime, start time), in clock ticks."""
    rest = text[text.rfind(")") + 2:].split()
    try:
        return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]), int(rest[19])
    except (IndexError, ValueError):
        return None


def parse_statm_rss(text: str) -> int | None:
    """``/proc/PID/statm``: the resident set, in pages."""
    fields = text.split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def parse_nvidia_query(text: str) -> dict[int, tuple[float | None, int | None]]:
    """``nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits``:
    index -> (utilization %, memory used in bytes); "[N/A]" fields are None."""
    out: dict[int, tuple[float | None, int | None]] = {}
    for line in text.strip().splitlines():
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        out[int(fields[0])] = (_number(fields[1]), _mib(fields[2]))
    return out


def parse_rocm_use(text: str) -> dict[int, tuple[float | None, int | None]]:
    """``rocm-smi --showuse --showmemuse --showmeminfo vram --json``: card index ->
    (GPU use %, VRAM used in bytes)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    out: dict[int, tuple[float | None, int | None]] = {}
    for key, info in (data.items() if isinstance(data, dict) else ()):
        match = re.fullmatch(r"card(\d+)", key)
        if not match or not isinstance(info, dict):
            continue
        util = _number(info.get("GPU use (%)"))
        used = _number(info.get("VRAM Total Used Memory (B)"))
        out[int(match.group(1))] = (util, None if used is None else int(used))
    return out


def _number(value: object) -> float | None:
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _mib(value: str) -> int | None:
    number = _number(value)
    return None if number is None else int(number * 2**20)


# --- reading ------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class Target:
    """A running component to measure: its cgroup (None: by /proc), its supervisor (whose
    descendants are its processes), its main process, its GPU devices and their vendor."""

    component_id: int
    cgroup: str | None
    supervisor_pid: int | None
    supervisor_start: int | None
    pid: int | None
    gpus: tuple[int, ...] = ()
    gpu_vendor: str | None = None


def cgroup_reading(path: str) -> tuple[float, int | None] | None:
    """(CPU seconds, memory bytes) of a cgroup, or None when it is gone."""
    usec = parse_cpu_stat(_read(os.path.join(path, "cpu.stat")))
    if usec is None:
        return None
    return usec / 1e6, parse_memory(_read(os.path.join(path, "memory.current")),
                                    _read(os.path.join(path, "memory.stat")))


def tree_reading(supervisor_pid: int, supervisor_start: int | None) -> tuple[float, int | None] | None:
    """(CPU seconds, resident bytes) of the supervisor's descendants, or None when the
    supervisor is gone (or is another process now)."""
    own = parse_proc_stat_times(_read(f"/proc/{supervisor_pid}/stat"))
    if own is None or (supervisor_start is not None and own[2] != supervisor_start):
        return None
    pids = f.descendants(supervisor_pid)
    if pids is None:  # no /proc/PID/task/TID/children: its session, by a scan of /proc
        pids = {p for p in f.all_pids() if (st := f.proc_stat(p)) is not None and st[2] == supervisor_pid}
        pids.discard(supervisor_pid)
    ticks, pages = own[1], 0  # what the supervisor reaped (the command, orphans) stays counted
    for pid in pids:
        times = parse_proc_stat_times(_read(f"/proc/{pid}/stat"))
        if times is None:
            continue  # exited meanwhile
        ticks += times[0] + times[1]
        pages += parse_statm_rss(_read(f"/proc/{pid}/statm")) or 0
    return ticks / _CLK_TCK, pages * _PAGE


def _start_seconds_ago(pid: int | None) -> float | None:
    if not pid:
        return None
    times = parse_proc_stat_times(_read(f"/proc/{pid}/stat"))
    if times is None:
        return None
    return max(0.001, time.time() - (f.boot_time() + times[2] / _CLK_TCK))


def _run(argv: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=_GPU_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


class UsageSampler:
    """Turns readings into ``Usage``: keeps each component's previous CPU reading."""

    def __init__(self, nvidia_smi: str = "nvidia-smi", rocm_smi: str = "rocm-smi") -> None:
        self.nvidia_smi, self.rocm_smi = nvidia_smi, rocm_smi
        self._previous: dict[int, tuple[float, float]] = {}  # component id -> (CPU seconds, monotonic time)

    def gpu_readings(self, vendors: Iterable[str]) -> dict[tuple[str, int], tuple[float | None, int | None]]:
        """(vendor, device index) -> (utilization, memory used), for the vendors named, by
        their tools where installed."""
        out: dict[tuple[str, int], tuple[float | None, int | None]] = {}
        wanted = set(vendors)
        if "nvidia" in wanted and shutil.which(self.nvidia_smi):
            text = _run([self.nvidia_smi, "--query-gpu=index,utilization.gpu,memory.used",
                         "--format=csv,noheader,nounits"])
            out.update({("nvidia", i): v for i, v in parse_nvidia_query(text or "").items()})
        if "amd" in wanted and shutil.which(self.rocm_smi):
            text = _run([self.rocm_smi, "--showuse", "--showmemuse", "--showmeminfo", "vram", "--json"])
            out.update({("amd", i): v for i, v in parse_rocm_use(text or "").items()})
        return out

    def sample(self, targets: Sequence[Target]) -> list[Usage]:
        at = datetime.now(UTC)
        now = time.monotonic()
        gpus = self.gpu_readings({t.gpu_vendor for t in targets if t.gpus and t.gpu_vendor})
        samples = []
        for target in targets:
            reading = cgroup_reading(target.cgroup) if target.cgroup else None
            if (reading is None or reading[1] is None) and target.supervisor_pid:
                # No cgroup, or one without the memory controller (a hybrid host): /proc.
                tree = tree_reading(target.supervisor_pid, target.supervisor_start)
                reading = tree if reading is None or tree is None else (reading[0], tree[1])
            if reading is None:
                self._previous.pop(target.component_id, None)
                continue  # gone meanwhile
            cpu_s, memory = reading
            previous = self._previous.get(target.component_id)
            self._previous[target.component_id] = (cpu_s, now)
            if previous is not None and now > previous[1]:
                millicores: int | None = int(max(0.0, cpu_s - previous[0]) / (now - previous[1]) * 1000)
            else:
                elapsed = _start_seconds_ago(target.pid)
                millicores = int(cpu_s / elapsed * 1000) if elapsed else None
            util: float | None = None
            gpu_memory: int | None = None
            found = [gpus[(target.gpu_vendor, i)] for i in target.gpus if (target.gpu_vendor, i) in gpus]
            if found:
                utils = [u for u, _ in found if u is not None]
                used = [m for _, m in found if m is not None]
                util = sum(utils) / len(utils) if utils else None
                gpu_memory = sum(used) if used else None
            samples.append(Usage(target.component_id, at, millicores, memory, util, gpu_memory))
        return samples

    def forget_except(self, component_ids: set[int]) -> None:
        for cid in [c for c in self._previous if c not in component_ids]:
            del self._previous[cid]
