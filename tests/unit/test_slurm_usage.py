"""Reading sstat's output (as Slurm 22.05 prints it) into samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.backends.slurm.usage import Running, UsageSampler, cpu_seconds, parse_sstat, size_bytes

# A batch step and an srun step over two nodes, a second job, and a site gathering GPU use (NVML).
SSTAT = ("4.batch|cpu=00:00:02,energy=0,fs/disk=31639,mem=12092K,pages=1,vmem=287776K|cpu=00:00:02,mem=12092K\n"
         "4.0|cpu=00:01:30,energy=0,fs/disk=13954,mem=1.50G,pages=0,vmem=5840K|cpu=00:00:45,mem=768M\n"
         "7.batch|cpu=1-00:00:00,mem=0,gres/gpumem=2048M,gres/gpuutil=120|cpu=1-00:00:00,gres/gpuutil=60\n"
         "7.1|cpu=05:03.500,mem=1024K,gres/gpumem=1G,gres/gpuutil=80|gres/gpuutil=80\n"
         "8.batch||\n")


def test_slurm_times_and_sizes():
    assert cpu_seconds("00:00:07") == 7
    assert cpu_seconds("05:03.120") == 303.12
    assert cpu_seconds("1-02:03:04") == 86400 + 7384
    assert cpu_seconds("") is None and cpu_seconds("N/A") is None
    assert size_bytes("323788K") == 323788 * 1024 and size_bytes("1.50G") == 3 * 2**29 and size_bytes("0") == 0
    assert size_bytes("lots") is None


def test_a_jobs_steps_add_up():
    jobs = parse_sstat(SSTAT)
    assert set(jobs) == {4, 7, 8}
    assert jobs[4].cpu_s == 92 and jobs[4].memory_bytes == 12092 * 1024 + 3 * 2**29
    assert jobs[4].gpu_utilization is None and jobs[4].gpu_memory_bytes is None
    assert jobs[7].cpu_s == 86400 + 303.5 and jobs[7].gpu_memory_bytes == 3 * 2**30
    assert jobs[7].gpu_utilization == 70  # the mean of the steps' per-task means
    assert jobs[8].cpu_s is None and jobs[8].memory_bytes is None  # no accounting gathered


def test_cpu_is_a_rate_between_samples_and_the_first_since_the_start():
    started = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    sampler = UsageSampler()
    running = [Running(1, 4, started), Running(2, 8, started)]
    [first] = sampler.samples(running, parse_sstat(SSTAT), at=started + timedelta(seconds=46))
    assert (first.component_id, first.cpu_millicores) == (1, 2000)  # 92 s of CPU in 46 s; job 8: nothing
    later = parse_sstat(SSTAT.replace("00:01:30", "00:01:40"))
    [second] = sampler.samples(running, later, at=started + timedelta(seconds=66))
    assert second.cpu_millicores == 500  # 10 s more in 20 s
    assert sampler.samples([], {}) == [] and sampler._last_cpu == {}  # an ended job is forgotten


def test_each_sample_asks_about_a_bounded_number_of_jobs_those_asked_longest_ago_first():
    started = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    sampler = UsageSampler(max_jobs=2)
    running = [Running(c, 100 + c, started) for c in (1, 2, 3, 4, 5)]
    asked = [[r.component_id for r in sampler.due(running)] for _ in range(4)]
    assert asked == [[1, 2], [3, 4], [5, 1], [2, 3]]  # every job in turn, none twice before the others
    sampler.samples([], {}, still_running={2, 3})  # 1, 4 and 5 ended
    assert [r.component_id for r in sampler.due(running[1:3])] == [2, 3]
