"""GPUs of this host: detection with the vendors' tools, or a setting for tests.

Detection tries, in order, ``nvidia-smi --query-gpu=index,name,memory.total,uuid``,
``amd-smi static --json`` and ``rocm-smi --showproductname --showmeminfo vram --json``;
a host without any of them has no GPUs.

``CORRAL_LOCAL_GPUS`` (or ``LocalBackend(gpus=...)``) replaces detection:

- ``"4"``: four GPUs of vendor ``fake`` (for tests and CPU-only development);
- ``"nvidia:H100:8"`` or ``"nvidia:H100:8:80Gi"``: vendor, model, count and optionally the
  memory of each; several groups separated by commas (``"nvidia:A100:2,amd:MI300X:1"``),
  numbered 0, 1, ... in that order;
- ``"0"`` or ``"none"``: no GPUs, whatever the host has.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from corral.backends.base import GpuDevice
from corral.domain.resources import parse_bytes

ENV_GPUS = "CORRAL_LOCAL_GPUS"
_TIMEOUT_S = 15


def parse_gpu_setting(text: str) -> list[GpuDevice]:
    """Devices from a ``CORRAL_LOCAL_GPUS`` value (see the module docstring)."""
    text = text.strip()
    if text.lower() in ("", "0", "none"):
        return []
    if text.isdigit():
        return [GpuDevice(i, "fake", "fake-gpu") for i in range(int(text))]
    devices: list[GpuDevice] = []
    for group in text.split(","):
        parts = group.strip().split(":")
        if len(parts) not in (3, 4) or not parts[2].isdigit() or not parts[0] or not parts[1]:
            raise ValueError(
                f"{ENV_GPUS}: {group!r} is not N or vendor:model:count[:memory] (example: nvidia:H100:8:80Gi)"
            )
        memory = parse_bytes(parts[3]) if len(parts) == 4 else 0
        for _ in range(int(parts[2])):
            devices.append(GpuDevice(len(devices), parts[0].lower(), parts[1], memory))
    return devices


def _run(argv: Sequence[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def detect(nvidia_smi: str = "nvidia-smi", amd_smi: str = "amd-smi", rocm_smi: str = "rocm-smi") -> list[GpuDevice]:
    """The host's GPUs as the vendors' tools report them; [] when there is no tool."""
    out = _run([nvidia_smi, "--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits"])
    if out is not None:
        return parse_nvidia(out)
    out = _run([amd_smi, "static", "--json"])
    if out is not None:
        devices = parse_amd_smi(out)
        if devices:
            return devices
    out = _run([rocm_smi, "--showproductname", "--showmeminfo", "vram", "--json"])
    if out is not None:
        return parse_rocm_smi(out)
    return []


def parse_nvidia(text: str) -> list[GpuDevice]:
    devices = []
    for line in text.strip().splitlines():
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        try:
            memory = int(float(fields[2]) * 2**20)  # MiB
        except ValueError:
            memory = 0
        devices.append(GpuDevice(int(fields[0]), "nvidia", fields[1], memory, fields[3] if len(fields) > 3 else None))
    return devices


def _memory_value(value: object) -> int:
    """amd-smi prints sizes as {"value": 192, "unit": "GB"} or "196608 MB"."""
    if isinstance(value, dict):
        number, unit = value.get("value"), str(value.get("unit", "MB"))
    else:
        match = re.match(r"^\s*([\d.]+)\s*([A-Za-z]*)", str(value))
        if not match:
            return 0
        number, unit = match.group(1), match.group(2) or "MB"
    try:
        amount = float(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    factor = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}.get(unit.upper().replace("I", ""), 2**20)
    return int(amount * factor)


def parse_amd_smi(text: str) -> list[GpuDevice]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    items = data.get("gpu_data", data) if isinstance(data, dict) else data
    devices = []
    for position, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        asic = item.get("asic") or {}
        vram = item.get("vram") or {}
        model = asic.get("market_name") or asic.get("product_name") or "AMD GPU"
        index = item.get("gpu", position)
        devices.append(GpuDevice(int(index) if str(index).isdigit() else position, "amd", str(model),
                                 _memory_value(vram.get("size", 0))))
    return devices


def parse_rocm_smi(text: str) -> list[GpuDevice]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    devices = []
    for key in sorted(k for k in data if re.fullmatch(r"card\d+", k)):
        info = data[key]
        model = info.get("Card Series") or info.get("Card series") or info.get("Card Model") or "AMD GPU"
        memory = 0
        for name, value in info.items():
            if "VRAM Total Memory" in name:
                try:
                    memory = int(value)
                except (TypeError, ValueError):
                    memory = 0
        devices.append(GpuDevice(int(key[4:]), "amd", str(model), memory))
    return devices


@dataclass(frozen=True, slots=True)
class ComputeApp:
    pid: int
    process_name: str
    gpu_uuid: str
    used_memory_bytes: int


def nvidia_compute_apps(nvidia_smi: str = "nvidia-smi") -> list[ComputeApp] | None:
    """Processes using NVIDIA GPUs, or None when nvidia-smi is not there."""
    out = _run([nvidia_smi, "--query-compute-apps=pid,process_name,gpu_uuid,used_memory",
                "--format=csv,noheader,nounits"])
    if out is None:
        return None
    apps = []
    for line in out.strip().splitlines():
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        try:
            memory = int(float(fields[3]) * 2**20)
        except ValueError:
            memory = 0
        apps.append(ComputeApp(int(fields[0]), fields[1], fields[2], memory))
    return apps


def visible_devices_env(indices: Sequence[int]) -> dict[str, str]:
    """The variables that restrict CUDA and ROCm programs to these devices (none: "")."""
    value = ",".join(str(i) for i in indices)
    return {"CUDA_VISIBLE_DEVICES": value, "HIP_VISIBLE_DEVICES": value, "ROCR_VISIBLE_DEVICES": value}
