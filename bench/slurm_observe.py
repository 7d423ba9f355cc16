"""The Slurm backend's cost with many jobs in Slurm's queue, against the real test cluster
(scripts/slurm-test-cluster start; run as root):

    .venv/bin/python bench/slurm_observe.py --jobs 1000

Submits ``--jobs`` held components through the backend (``sbatch --hold``: they stay
PENDING), compares the submission rate with bare ``sbatch``, then measures what one poll
(``observe()`` forced to call ``squeue``) costs in wall time and in the agent's CPU, and
the agent's CPU share when polling every 0.5 s (the default). Everything is cancelled after.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
import uuid
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
    args = parser.parse_args()
    env = {"SLURM_CONF": os.environ.get("SLURM_CONF", "/tmp/corral-slurm/slurm.conf")}
    prefix = f"bench{uuid.uuid4().hex[:6]}-c"
    root = Path(tempfile.mkdtemp(prefix="corral-slurm-bench-"))
    os.chmod(root, 0o711)
    backend = SlurmBackend(root / "state", site=SlurmSite(job_prefix=prefix, extra_options=("--hold",)),
                           work_root=root / "work", slurm_env=env, poll_interval_s=0.5)
    try:
        n = max(1, args.jobs // 10)
        started = time.perf_counter()
        for i in range(n):
            subprocess.run(["sbatch", "--hold", "-J", f"{prefix}raw{i}", "-o", "/dev/null", "--wrap", "true"],
                           env={**os.environ, **env}, capture_output=True, check=True)
        raw_rate = n / (time.perf_counter() - started)
        started = time.perf_counter()
        for cid in range(1, args.jobs + 1):
            backend.start(Launch(cid, cid, "bench", "custom", f"bench-w{cid}-job", command=("true",),
                                 cpu_millicores=100, memory_bytes=64 << 20))
        rate = args.jobs / (time.perf_counter() - started)
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
        print(f"jobs in the queue: {args.jobs + n}")
        print(f"submissions/s: bare sbatch {raw_rate:.0f}, through the backend {rate:.0f} "
              f"({rate / raw_rate:.0%})")
        print(f"one poll (squeue of every job + mapping): p50 {walls[len(walls) // 2] * 1000:.1f} ms, "
              f"max {walls[-1] * 1000:.1f} ms, CPU {cpu_per_poll * 1000:.1f} ms")
        print(f"agent CPU polling every {backend.poll_interval_s} s: "
              f"{cpu_per_poll / backend.poll_interval_s:.1%} of a core")
    finally:
        listed = subprocess.run(["squeue", "-h", "-o", "%i %j"], env={**os.environ, **env}, capture_output=True,
                                text=True, check=False).stdout.split("\n")
        ids = [line.split()[0] for line in listed if line.split()[1:2] and line.split()[1].startswith(prefix)]
        if ids:
            subprocess.run(["scancel", *ids], env={**os.environ, **env}, check=False)
        backend.close()


if __name__ == "__main__":
    main()
