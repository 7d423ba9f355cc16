"""The Slurm backend's cost with many jobs in Slurm's queue, against the real test cluster
(scripts/slurm-test-cluster start; run as root):

    .venv/bin/python bench/slurm_observe.py --jobs 1000

Submits ``--jobs`` held components through the backend (``sbatch --hold``: they stay
PENDING) the way the agent does (``start_many`` with the launches of ``--batch`` workloads
at a time, as one answer to its work poll brings them) and compares the rate with bare
``sbatch`` one after the other, before the backend's jobs and after (the queue 10x
longer). With those jobs queued it measures what one poll (``observe()`` forced to call
``squeue``) costs in wall time and CPU (the agent's process and squeue's), and so the
agent's CPU share when polling every 0.5 s (the default). For reference: the backend one
``start`` at a time (what the agent did before ``start_many``), bare ``sbatch`` as many at
once as the backend runs. Then status latency: ``--latency-samples`` held jobs released
one at a time, from Slurm's change (the allocation in slurmctld's log) and from the
release to the backend observing Running, polled like the agent. Everything is cancelled
after. Finished jobs stay in the controller's memory for MinJobAge (300 s) and every
``squeue`` receives them: wait that long between runs (the output says how many it holds).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.backends.base import Launch
from corral.backends.slurm import SlurmBackend, SlurmSite
from corral.domain.statuses import ComponentStatus as S


def cpu_s(who: int | None = None) -> float:
    """CPU seconds of this process and its children (the squeue calls), or of ``who`` only."""
    whom = (who,) if who is not None else (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    return sum(usage.ru_utime + usage.ru_stime for usage in map(resource.getrusage, whom))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--batch", type=int, default=100, help="workloads per start_many (one work answer)")
    args = parser.parse_args()
    env = {"SLURM_CONF": os.environ.get("SLURM_CONF", "/tmp/corral-slurm/slurm.conf")}
    prefix = f"bench{uuid.uuid4().hex[:6]}-c"
    root = Path(tempfile.mkdtemp(prefix="corral-slurm-bench-"))
    os.chmod(root, 0o711)
    backend = SlurmBackend(root / "state", site=SlurmSite(job_prefix=prefix, extra_options=("--hold",)),
                           work_root=root / "work", slurm_env=env, poll_interval_s=0.5)
    launches = [Launch(cid, cid, "bench", "custom", f"bench-w{cid}-job", command=("true",), cpu_millicores=100,
                       memory_bytes=64 << 20) for cid in range(1, args.jobs + 1)]
    sbatch = ["sbatch", "--hold", "-o", "/dev/null", "--wrap", "true"]
    slurm_env = {**os.environ, **env}

    def bare(tag: str, count: int, at_once: int = 1) -> float:
        def one(i: int) -> None:
            subprocess.run([*sbatch, "-J", f"{prefix}{tag}{i}"], env=slurm_env, capture_output=True, check=True)
        started = time.perf_counter()
        with ThreadPoolExecutor(at_once) as pool:
            list(pool.map(one, range(count)))
        return count / (time.perf_counter() - started)

    try:
        n = max(1, args.jobs // 10)
        raw_rate = bare("raw", n)
        started = time.perf_counter()
        for first in range(0, len(launches), args.batch):
            errors = backend.start_many(launches[first:first + args.batch])
            assert not errors, errors
        rate = args.jobs / (time.perf_counter() - started)
        backend.all_observations()
        listed = subprocess.run(["squeue", "-h", "-a", "-t", "all", "-o", "%T"], env=slurm_env, capture_output=True,
                                text=True, check=True).stdout.split()
        queued, remembered = sum(state == "PENDING" for state in listed), len(listed)
        walls, cpus = [], []
        own = cpu_s(resource.RUSAGE_SELF)
        for _ in range(args.polls):
            backend._next_poll = 0.0  # force the squeue call
            cpu, wall = cpu_s(), time.perf_counter()
            backend.observe()
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_s() - cpu)
        own = (cpu_s(resource.RUSAGE_SELF) - own) / args.polls
        raw_after = bare("rawafter", n)
        one_by_one = [Launch(cid, cid, "bench", "custom", f"bench-w{cid}-job", command=("true",), cpu_millicores=100,
                             memory_bytes=64 << 20) for cid in range(args.jobs + 1, args.jobs + n + 1)]
        started = time.perf_counter()
        for launch in one_by_one:
            backend.start(launch)
        serial_rate = n / (time.perf_counter() - started)
        raw_parallel = bare("rawpar", n, backend.submit_concurrency)
        from_slurm, from_release = status_latencies(backend, args.latency_samples, slurm_env)
        walls.sort()
        cpu_per_poll = sum(cpus) / len(cpus)
        print(f"while polling: {queued} jobs in the queue, {remembered} in the controller's memory (finished ones "
              "stay MinJobAge, 300 s: every squeue gets them all; run again after that)")
        print(f"submissions/s: bare sbatch {raw_rate:.0f} (after: {raw_after:.0f}), through the backend "
              f"{rate:.0f} ({rate / raw_rate:.0%}; {rate / raw_after:.0%} of after), {backend.submit_concurrency} "
              f"sbatch at once, {args.batch} workloads per start_many")
        print(f"for reference: the backend one start() at a time {serial_rate:.0f}/s ({serial_rate / raw_rate:.0%}), "
              f"bare sbatch {backend.submit_concurrency} at once {raw_parallel:.0f}/s")
        print(f"one poll (squeue of every job + mapping): p50 {walls[len(walls) // 2] * 1000:.1f} ms, "
              f"max {walls[-1] * 1000:.1f} ms, CPU {cpu_per_poll * 1000:.1f} ms (the agent's process "
              f"{own * 1000:.1f} ms, squeue {(cpu_per_poll - own) * 1000:.1f} ms)")
        print(f"agent CPU polling every {backend.poll_interval_s} s: "
              f"{cpu_per_poll / backend.poll_interval_s:.1%} of a core")
        for name, latencies in (("Slurm's change (allocation)", from_slurm), ("scontrol release", from_release)):
            latencies.sort()
            p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
            print(f"{name} -> Running observed ({len(latencies)} jobs, observe() every 0.1 s like the agent): "
                  f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    finally:
        cancel(prefix)
        backend.close()


# A job started by the main scheduler or by backfill, in slurmctld's log.
STARTED = re.compile(r"(?:sched: Allocate|sched/backfill: _start_job: Started) JobId=(\d+)\s")


def status_latencies(backend: SlurmBackend, samples: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Held jobs (``sleep``) released one at a time, at a random moment of the poll cycle:
    from Slurm's change (its "sched: Allocate JobId=N" line in slurmctld's log, ms
    precision; or backfill's "Started JobId=N") to the backend observing Running, and from
    the ``scontrol release``."""
    first = max(backend._jobs) + 1
    ids = range(first, first + samples)
    assert not backend.start_many([Launch(cid, cid, "bench", "custom", f"bench-w{cid}-job", command=("sleep", "60"),
                                          cpu_millicores=100, memory_bytes=64 << 20) for cid in ids])
    seen, released = {}, {}
    for cid in ids:
        time.sleep(random.uniform(0, backend.poll_interval_s))
        subprocess.run(["scontrol", "release", str(backend._jobs[cid].job_id)], env=env, check=True)
        released[cid] = time.time()
        while not any(o.component_id == cid and o.status is S.RUNNING for o in backend.observe()):
            if time.time() - released[cid] > 30:
                raise RuntimeError(f"component {cid} not seen running 30 s after its release")
            time.sleep(0.1)  # the agent's poll_s
        seen[cid] = time.time()
        backend.stop(cid)  # the next one finds a free slot
        backend.observe()  # (stop() asks for an early poll: had now, not after the next release)
    config = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True).stdout
    log = next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("SlurmctldLogFile"))
    allocated = {}
    for line in Path(log).read_text(errors="replace").splitlines():
        started = STARTED.search(line)  # (not an array task's "12_3(13)")
        if started:
            allocated[int(started.group(1))] = datetime.fromisoformat(line[1:line.index("]")]).timestamp()  # local
    from_slurm = [seen[cid] - allocated[backend._jobs[cid].job_id] for cid in ids]
    return from_slurm, [seen[cid] - released[cid] for cid in ids]


def cancel(name_prefix: str) -> None:
    """Cancels every job whose name starts with ``name_prefix``."""
    env = {**os.environ, "SLURM_CONF": os.environ.get("SLURM_CONF", "/tmp/corral-slurm/slurm.conf")}
    listed = subprocess.run(["squeue", "-h", "-o", "%i %j"], env=env, capture_output=True, text=True,
                            check=False).stdout.split("\n")
    ids = [line.split()[0] for line in listed if line.split()[1:2] and line.split()[1].startswith(name_prefix)]
    if ids:
        subprocess.run(["scancel", *ids], env=env, check=False)


if __name__ == "__main__":
    main()
