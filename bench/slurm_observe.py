"""The Slurm backend's cost with many jobs in Slurm's queue, against the real test cluster
(scripts/slurm-test-cluster start; run as root):

    .venv/bin/python bench/slurm_observe.py --jobs 1000

Submits ``--jobs`` held components through the backend (``sbatch --hold``: they stay
PENDING) the way the agent does (``start_many`` with the launches of ``--batch`` workloads
at a time, as one answer to its work poll brings them), compares the submission rate
with bare ``sbatch`` one after the other (before and after, the queue growing in
between), and prints for reference the backend one ``start`` at a time and bare
``sbatch`` as many at once as the backend runs. Then measures what one poll (``observe()``
forced to call ``squeue``) costs in wall time and in the agent's CPU, and the agent's CPU
share when polling every 0.5 s (the default). Everything is cancelled after.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.backends.base import Launch
from corral.backends.slurm import SlurmBackend, SlurmSite


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=20)
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
        raw_after = bare("rawafter", n)
        one_by_one = [Launch(cid, cid, "bench", "custom", f"bench-w{cid}-job", command=("true",), cpu_millicores=100,
                             memory_bytes=64 << 20) for cid in
                      range(args.jobs + 1, args.jobs + n + 1)]
        started = time.perf_counter()
        for launch in one_by_one:
            backend.start(launch)
        serial_rate = n / (time.perf_counter() - started)
        raw_parallel = bare("rawpar", n, backend.submit_concurrency)
        cancel(f"{prefix}raw")  # the queue holds the backend's jobs only while polling
        backend.all_observations()
        walls, cpus = [], []
        for _ in range(args.polls):
            backend._next_poll = 0.0  # force the squeue call
            cpu, wall = cpu_s(), time.perf_counter()
            backend.observe()
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_s() - cpu)
        walls.sort()
        cpu_per_poll = sum(cpus) / len(cpus)
        print(f"jobs in the queue while polling: {len(backend._jobs)} (the backend's)")
        print(f"submissions/s: bare sbatch {raw_rate:.0f} (after: {raw_after:.0f}), through the backend "
              f"{rate:.0f} ({rate / raw_rate:.0%}; {rate / raw_after:.0%} of after), {backend.submit_concurrency} "
              f"sbatch at once, {args.batch} workloads per start_many")
        print(f"for reference: the backend one start() at a time {serial_rate:.0f}/s ({serial_rate / raw_rate:.0%}), "
              f"bare sbatch {backend.submit_concurrency} at once {raw_parallel:.0f}/s")
        print(f"one poll (squeue of every job + mapping): p50 {walls[len(walls) // 2] * 1000:.1f} ms, "
              f"max {walls[-1] * 1000:.1f} ms, CPU {cpu_per_poll * 1000:.1f} ms")
        print(f"agent CPU polling every {backend.poll_interval_s} s: "
              f"{cpu_per_poll / backend.poll_interval_s:.1%} of a core")
    finally:
        cancel(prefix)
        backend.close()


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
