"""GPUs: detection, the override setting, exclusive assignment, discovery."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from corral.backends.base import GpuDevice, Launch
from corral.backends.local import LocalBackend, gpus
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from tests.conftest import work_root_for


def gpu_job(cid: int, gpu: int = 1, script: str = "sleep 300") -> Launch:
    show = 'echo "cuda=$CUDA_VISIBLE_DEVICES hip=$HIP_VISIBLE_DEVICES rocr=$ROCR_VISIBLE_DEVICES"'
    return Launch(cid, cid, "proj", "training", f"job-{cid}", command=("/bin/sh", "-c", f"{show}; {script}"), gpu=gpu)


def devices_seen(backend: LocalBackend, cid: int, watcher: Watcher) -> str:
    watcher.wait(cid, S.RUNNING)
    for _ in range(100):
        line = backend.logs(cid, 1).strip()
        if line:
            cuda, hip, rocr = (part.split("=", 1)[1] for part in line.split(" "))
            assert cuda == hip == rocr
            return cuda
        import time

        time.sleep(0.05)
    raise AssertionError("no output")


def test_two_components_never_share_a_gpu(state_dir: Path):
    backend = LocalBackend(state_dir, gpus="2", work_root=work_root_for(state_dir))
    watcher = Watcher(backend)
    try:
        assert [g.index for g in backend.capacity().nodes[0].gpus] == [0, 1]
        for cid in (1, 2, 3):
            backend.start(gpu_job(cid))
        backend.start(gpu_job(4, gpu=0, script="true"))
        first, second = devices_seen(backend, 1, watcher), devices_seen(backend, 2, watcher)
        assert {first, second} == {"0", "1"}
        waiting = watcher.wait(3, S.PENDING)
        assert waiting.reason == "waiting for 1 GPU(s): 0 of 2 free"
        watcher.wait(4, S.COMPLETED)
        assert backend.logs(4).strip() == "cuda= hip= rocr="  # no GPU: sees none
        backend.stop(1, grace_s=0)
        watcher.wait(1, S.DELETED)
        assert devices_seen(backend, 3, watcher) == first  # the freed device, and only it
        assert watcher.statuses(3)[-1] is S.RUNNING
    finally:
        backend.close()
    # Assignments persist: a new backend knows devices 0 and 1 are taken.
    backend = LocalBackend(state_dir, gpus="2", work_root=work_root_for(state_dir))
    watcher = Watcher(backend)
    try:
        backend.start(gpu_job(5))
        assert watcher.wait(5, S.PENDING).reason == "waiting for 1 GPU(s): 0 of 2 free"
        backend.start(gpu_job(6, gpu=3))
        assert watcher.wait(6, S.FAILED).reason == "asks for 3 GPU(s); this host has 2"
        backend.stop(5)
        assert watcher.wait(5, S.DELETED).reason == "deleted before it started"
        for cid in (2, 3):
            backend.stop(cid, grace_s=0)
            watcher.wait(cid, S.DELETED)
    finally:
        backend.close()


def test_gpu_setting_forms():
    assert gpus.parse_gpu_setting("none") == [] and gpus.parse_gpu_setting("0") == []
    assert [(g.index, g.vendor) for g in gpus.parse_gpu_setting("2")] == [(0, "fake"), (1, "fake")]
    devices = gpus.parse_gpu_setting("nvidia:H100:2:80Gi, amd:MI300X:1")
    assert devices == [GpuDevice(0, "nvidia", "H100", 80 * 2**30), GpuDevice(1, "nvidia", "H100", 80 * 2**30),
                       GpuDevice(2, "amd", "MI300X", 0)]
    with pytest.raises(ValueError, match="vendor:model:count"):
        gpus.parse_gpu_setting("nvidia:H100")


def test_environment_setting_overrides_detection(state_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORRAL_LOCAL_GPUS", "nvidia:A100:3")
    with LocalBackend(state_dir, work_root=work_root_for(state_dir)) as backend:
        node = backend.capacity().nodes[0]
        assert (len(node.gpus), node.gpu_vendor, node.gpu_model) == (3, "nvidia", "A100")
        assert node.cpu_millicores >= 1000 and node.memory_bytes > 2**28
        assert backend.capacity().total().gpu == 3


def fake_nvidia_smi(tmp_path: Path, apps: list[tuple[int, str, str, int]]) -> str:
    """An nvidia-smi that answers the two queries the backend makes."""
    lines = "\n".join(f"{pid}, {name}, {uuid}, {mib}" for pid, name, uuid, mib in apps)
    script = tmp_path / "nvidia-smi"
    script.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$1" in
          --query-gpu=*) printf '0, NVIDIA H100 80GB HBM3, 81559, GPU-aaa\\n'
                         printf '1, NVIDIA H100 80GB HBM3, 81559, GPU-bbb\\n' ;;
          --query-compute-apps=*) printf '%s\\n' "LINES" ;;
          *) exit 2 ;;
        esac
        """).replace("LINES", lines))
    script.chmod(0o755)
    return str(script)


def test_detection_and_discovery_with_nvidia_smi(state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CORRAL_LOCAL_GPUS", raising=False)
    outsider = subprocess.Popen(["sleep", "300"])  # a GPU process nobody told Corral about
    try:
        with LocalBackend(state_dir, nvidia_smi=fake_nvidia_smi(tmp_path, []), work_root=work_root_for(state_dir)) as probe:
            devices = probe.capacity().nodes[0].gpus
            assert [(g.index, g.model, g.memory_bytes, g.uuid) for g in devices] == [
                (0, "NVIDIA H100 80GB HBM3", 81559 * 2**20, "GPU-aaa"),
                (1, "NVIDIA H100 80GB HBM3", 81559 * 2**20, "GPU-bbb")]
            assert probe.discover() == []
            watcher = Watcher(probe)
            probe.start(gpu_job(1))
            watcher.wait(1, S.RUNNING)
            ours = probe.inspect(1)["status"]["pid"]
        smi = fake_nvidia_smi(tmp_path, [(ours, "python", "GPU-aaa", 1000), (outsider.pid, "sleep", "GPU-bbb", 2000),
                                         (outsider.pid, "sleep", "GPU-aaa", 10)])
        with LocalBackend(state_dir, nvidia_smi=smi, work_root=work_root_for(state_dir)) as backend:
            found = backend.discover()
            assert len(found) == 1
            d = found[0]
            assert (d.native_name, d.kind, d.pid, d.gpu_indices) == (f"pid-{outsider.pid}", "process", outsider.pid,
                                                                     (0, 1))
            assert d.gpu_memory_bytes == 2010 * 2**20 and d.command == "sleep 300" and d.started_at is not None
            backend.stop(1, grace_s=0)
            Watcher(backend).wait(1, S.DELETED)
    finally:
        os.kill(outsider.pid, signal.SIGKILL)
        outsider.wait()


def test_no_nvidia_smi_means_no_discovery(backend: LocalBackend):
    backend.nvidia_smi = "/nonexistent/nvidia-smi"
    assert backend.discover() == []


def test_amd_tools_output_is_understood():
    amd = '[{"gpu": 0, "asic": {"market_name": "AMD Instinct MI300X"}, "vram": {"size": {"value": 192, "unit": "GB"}}}]'
    assert gpus.parse_amd_smi(amd) == [GpuDevice(0, "amd", "AMD Instinct MI300X", 192 * 2**30)]
    rocm = '{"card0": {"Card Series": "AMD Instinct MI250X", "VRAM Total Memory (B)": "68702699520"}}'
    assert gpus.parse_rocm_smi(rocm) == [GpuDevice(0, "amd", "AMD Instinct MI250X", 68702699520)]
