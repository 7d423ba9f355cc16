"""The local backend's usage parsers on real outputs: cgroup v2 files, /proc, nvidia-smi
and rocm-smi (this machine has no GPUs: these outputs were captured on hosts that do)."""

from __future__ import annotations

from pathlib import Path

from corral.backends.local import usage

# cgroup v2 cpu.stat of a busy container (Linux 6.1)
CPU_STAT = """usage_usec 5213045
user_usec 4911250
system_usec 301795
core_sched.force_idle_usec 0
nr_periods 0
nr_throttled 0
throttled_usec 0
nr_bursts 0
burst_usec 0
"""

MEMORY_STAT = """anon 104857600
file 52428800
kernel 1048576
kernel_stack 65536
pagetables 262144
shmem 0
file_mapped 4096
file_dirty 0
active_anon 104857600
inactive_anon 0
active_file 20971520
inactive_file 31457280
unevictable 0
"""

# /proc/PID/stat of `python3 -c 'while True: pass'` (comm with a space and a parenthesis)
PROC_STAT = ("4242 (py thon) (x)) R 4200 4242 4200 0 -1 4194304 1123 0 0 0 850 23 7 2 20 0 1 0 "
             "987654 31653888 2287 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 3 0 0 0 0 0")

# nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits (8x H100)
NVIDIA = """0, 97, 71342
1, 0, 4
2, [N/A], [N/A]
"""

# rocm-smi --showuse --showmemuse --showmeminfo vram --json (MI300X, ROCm 6.1)
ROCM = ('{"card0": {"GPU use (%)": "88", "GPU Memory Allocated (VRAM%)": "41", '
        '"VRAM Total Memory (B)": "205822885888", "VRAM Total Used Memory (B)": "84489543680"}, '
        '"card1": {"GPU use (%)": "0", "GPU Memory Allocated (VRAM%)": "0", '
        '"VRAM Total Memory (B)": "205822885888", "VRAM Total Used Memory (B)": "11083776"}, '
        '"system": {"Driver version": "6.7.0"}}')


def test_cgroup_cpu_and_memory():
    assert usage.parse_cpu_stat(CPU_STAT) == 5_213_045
    assert usage.parse_cpu_stat("nr_periods 0\n") is None
    assert usage.parse_memory("160432128\n", MEMORY_STAT) == 160_432_128 - 31_457_280  # working set
    assert usage.parse_memory("max\n", MEMORY_STAT) is None


def test_cgroup_reading_from_files(tmp_path: Path):
    (tmp_path / "cpu.stat").write_text(CPU_STAT)
    (tmp_path / "memory.current").write_text("160432128\n")
    (tmp_path / "memory.stat").write_text(MEMORY_STAT)
    assert usage.cgroup_reading(str(tmp_path)) == (5.213045, 128_974_848)
    assert usage.cgroup_reading(str(tmp_path / "gone")) is None


def test_proc_stat_and_statm():
    assert usage.parse_proc_stat_times(PROC_STAT) == (850 + 23, 7 + 2, 987654)
    assert usage.parse_proc_stat_times("12 (x) R 1") is None
    assert usage.parse_statm_rss("7728 2287 1024 1 0 1300 0\n") == 2287
    assert usage.parse_statm_rss("") is None


def test_nvidia_smi_query():
    assert usage.parse_nvidia_query(NVIDIA) == {0: (97.0, 71342 * 2**20), 1: (0.0, 4 * 2**20), 2: (None, None)}
    assert usage.parse_nvidia_query("No devices were found\n") == {}


def test_rocm_smi_use():
    assert usage.parse_rocm_use(ROCM) == {0: (88.0, 84_489_543_680), 1: (0.0, 11_083_776)}
    assert usage.parse_rocm_use("not json") == {}


def test_gpu_use_is_the_mean_of_the_components_devices(tmp_path: Path):
    class Fixed(usage.UsageSampler):
        def gpu_readings(self, vendors):  # type: ignore[no-untyped-def]
            assert set(vendors) == {"nvidia"}
            return {("nvidia", i): v for i, v in usage.parse_nvidia_query(NVIDIA).items()}

    (tmp_path / "cpu.stat").write_text(CPU_STAT)
    (tmp_path / "memory.current").write_text("160432128\n")
    (tmp_path / "memory.stat").write_text(MEMORY_STAT)
    target = usage.Target(5, str(tmp_path), None, None, None, gpus=(0, 1, 2), gpu_vendor="nvidia")
    sampler = Fixed()
    [sample] = sampler.sample([target])
    assert sample.component_id == 5 and sample.memory_bytes == 128_974_848
    assert sample.gpu_utilization == 48.5 and sample.gpu_memory_bytes == (71342 + 4) * 2**20
    assert sample.cpu_millicores is None  # no previous reading and no process to date it from
    (tmp_path / "cpu.stat").write_text(CPU_STAT.replace("5213045", "9213045"))
    [again] = sampler.sample([target])  # 4 CPU seconds more, in far less time: a rate over 1 core
    assert again.cpu_millicores is not None and again.cpu_millicores > 1000


def test_the_vendor_tools_are_run_when_installed(tmp_path: Path):
    """The real subprocess path, with stand-ins printing the captured outputs above (this
    machine has neither tool): each is asked only for its vendor, and a missing one is
    skipped."""
    calls = tmp_path / "calls"
    for name, output in (("nvidia-smi", NVIDIA), ("rocm-smi", ROCM)):
        tool = tmp_path / name
        tool.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {calls}\ncat <<'OUT'\n{output}\nOUT\n")
        tool.chmod(0o755)
    sampler = usage.UsageSampler(nvidia_smi=str(tmp_path / "nvidia-smi"), rocm_smi=str(tmp_path / "rocm-smi"))
    got = sampler.gpu_readings({"nvidia"})
    assert got == {("nvidia", 0): (97.0, 71342 * 2**20), ("nvidia", 1): (0.0, 4 * 2**20), ("nvidia", 2): (None, None)}
    assert calls.read_text().split("\n")[0].endswith(
        "nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits")
    assert sampler.gpu_readings({"amd"}) == {("amd", 0): (88.0, 84_489_543_680), ("amd", 1): (0.0, 11_083_776)}
    assert len(calls.read_text().splitlines()) == 2
    assert sampler.gpu_readings({"fake"}) == {}
    missing = usage.UsageSampler(nvidia_smi=str(tmp_path / "no-such-tool"))
    assert missing.gpu_readings({"nvidia"}) == {}
