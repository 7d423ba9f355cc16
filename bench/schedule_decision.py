"""Micro-benchmark of the admission decision itself: ``corral.domain.scheduling.schedule``.

No database, no server: a synthetic snapshot shaped like a busy installation (by default
100,000 queued and 100,000 admitted workloads over 1,000 projects and 10 clusters), then
``schedule()`` timed on it. Clusters are full to about 97% of their GPUs, a third of the
projects borrow, some queued work is old enough to count as starving, some is
non-preemptible, a few admitted workloads were discovered, so the pass admits, reclaims,
preempts by priority and blocks behind starving heads as a real one would. Queue ages are
exponential (mean ``--mean-age-s``, default 120 s) against a 300 s starvation threshold.

    .venv/bin/python bench/schedule_decision.py
    .venv/bin/python bench/schedule_decision.py --queued 20000 --admitted 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from corral.domain.resources import Limit, Resources  # noqa: E402
from corral.domain.scheduling import (  # noqa: E402
    AdmittedWorkload,
    ProjectQuota,
    QueuedWorkload,
    Snapshot,
    schedule,
)

GI = 2**30
PRIORITIES = (-100, 0, 0, 0, 100)  # low, medium (most), high


def build(queued: int, admitted: int, projects: int, clusters: int, seed: int, mean_age_s: float = 120.0) -> Snapshot:
    rng = random.Random(seed)
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    # requests: mostly small, a long tail of 4- and 8-GPU jobs
    shapes = [Resources(gpu=g, cpu=c * 1000, memory=m * GI) for g, c, m in
              [(0, 2, 8), (1, 8, 32), (1, 8, 32), (1, 8, 32), (2, 16, 64), (4, 32, 128), (8, 64, 512)]]
    mean_gpu = sum(s.gpu for s in shapes) / len(shapes)
    per_cluster_gpu = int(admitted / clusters * mean_gpu / 0.97)
    capacity = {c: Resources(gpu=per_cluster_gpu, cpu=per_cluster_gpu * 16000, memory=per_cluster_gpu * 128 * GI,
                             ephemeral_storage=per_cluster_gpu * 1000 * GI) for c in range(1, clusters + 1)}
    quotas: dict[tuple[int, int], ProjectQuota] = {}
    weights = [rng.paretovariate(1.2) for _ in range(projects)]
    total_w = sum(weights)
    for c, cap in capacity.items():
        for p in range(1, projects + 1):
            share = weights[p - 1] / total_w * 0.9  # 90% of the cluster is guaranteed
            g = Resources(int(cap.gpu * share), int(cap.cpu * share), int(cap.memory * share),
                          int(cap.ephemeral_storage * share))
            kind = rng.random()
            limit = (Limit.from_resources(g) if kind < 0.4 else
                     Limit() if kind < 0.7 else
                     Limit(g.gpu * 2 + 8, None, None, None))
            quotas[(p, c)] = ProjectQuota(g, limit)
    borrowers = set(rng.sample(range(1, projects + 1), projects // 3))
    admitted_list = []
    ids = iter(range(1, 10**9))
    for _ in range(admitted):
        p = rng.choice(list(borrowers)) if rng.random() < 0.5 else rng.randint(1, projects)
        admitted_list.append(AdmittedWorkload(
            id=next(ids), project_id=p, cluster_id=rng.randint(1, clusters), priority=rng.choice(PRIORITIES),
            request=rng.choice(shapes), preemptible=rng.random() < 0.85,
            admitted_at=now - timedelta(seconds=rng.randint(1, 7 * 86400)), discovered=rng.random() < 0.01,
        ))
    queue = [
        QueuedWorkload(
            id=next(ids), project_id=rng.randint(1, projects), cluster_id=rng.randint(1, clusters),
            priority=rng.choice(PRIORITIES), request=rng.choice(shapes), preemptible=rng.random() < 0.9,
            queued_since=now - timedelta(seconds=1 + rng.expovariate(1 / mean_age_s)),
        )
        for _ in range(queued)
    ]
    policy = {p: "never" for p in range(1, projects + 1) if rng.random() < 0.1}
    names = {p: f"project-{p}" for p in range(1, projects + 1)}
    return Snapshot(now, capacity, quotas, admitted_list, queue, policy, 300.0, names)


def _kind(reason: str) -> str:
    for prefix in ("waiting for quota", "waiting for cluster capacity", "non-preemptible:", "no quota",
                   "waiting behind", "request exceeds the limit", "request exceeds the cluster",
                   "non-preemptible request exceeds"):
        if reason.startswith(prefix):
            return prefix.rstrip(":")
    return reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queued", type=int, default=100_000)
    ap.add_argument("--admitted", type=int, default=100_000)
    ap.add_argument("--projects", type=int, default=1_000)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean-age-s", type=float, default=120.0, help="mean time queued workloads have waited")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    snap = build(args.queued, args.admitted, args.projects, args.clusters, args.seed, args.mean_age_s)
    print(f"snapshot: {args.queued:,} queued, {args.admitted:,} admitted, {args.projects:,} projects, "
          f"{args.clusters} clusters (built in {time.perf_counter() - t0:.1f}s)")
    times, cpu = [], []
    decisions = None
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        decisions = schedule(snap)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    assert decisions is not None
    kinds = Counter(
        "reclaim" if p.reason.startswith("preempted to reclaim") else "priority" for p in decisions.preemptions
    )
    reasons = Counter(_kind(w.reason) for w in decisions.waiting)
    print(f"decisions: {len(decisions.admissions):,} admitted, {len(decisions.preemptions):,} preempted "
          f"({kinds['reclaim']:,} reclaim, {kinds['priority']:,} priority), {len(decisions.waiting):,} waiting")
    for reason, n in reasons.most_common(8):
        print(f"  waiting: {n:>7,}  {reason}")
    best, median = min(times), statistics.median(times)
    print(f"schedule(): best {best * 1000:.0f} ms, median {median * 1000:.0f} ms over {args.repeat} runs, "
          f"CPU time best {min(cpu) * 1000:.0f} ms (Python {platform.python_version()}, {platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"throughput: {args.queued / median:,.0f} queued workloads/s (median), "
          f"{args.queued / best:,.0f}/s (best), {args.queued / min(cpu):,.0f}/s of CPU time (best)")


if __name__ == "__main__":
    main()
