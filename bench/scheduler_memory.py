"""The scheduler's memory after draining 100,000 queued (issue 13: it reached 222 MB;
target: the server's 150 MB).

    .venv/bin/python bench/scheduler_memory.py --database-url sqlite:////tmp/corral-sched-mem.db
    .venv/bin/python bench/scheduler_memory.py --database-url postgresql://postgres@127.0.0.1:5432/corral_sched_mem

Builds `bench/admission_throughput.py`'s data set afresh (100,000 queued over 1,000 projects
and 10 clusters), then, each in a process of its own as `corral serve` runs its scheduler:

1. drain: the scheduler's loop (``AdmissionLoop``, the first pass loads everything) steps
   until a step runs no pass; RSS before loading (the scheduler's imports), after the
   drain, and the peak.
2. reload: a fresh loop loads the drained database (what a restarted scheduler holds).

RSS and peak (VmHWM) from /proc/self/status.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time

TARGET_MB = 150


def _memory_mb() -> dict[str, float]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def child(url: str) -> None:
    """Step the real scheduler loop until it has nothing to do; print JSON figures."""
    from corral.db.engine import make_engine
    from corral.scheduler.loop import AdmissionLoop

    engine = make_engine(url, pool_size=2)  # as run_process makes it
    loop = AdmissionLoop(engine)
    before = _memory_mb()["VmRSS"]
    started, passes = time.perf_counter(), -1
    while loop.passes != passes:  # a step that ran no pass: nothing left to do
        passes = loop.passes
        loop.step()
    took = time.perf_counter() - started
    held = len(loop.admitter.admitted_on)
    waiting = len(loop.admitter.queued)
    after = _memory_mb()
    print(json.dumps({"before": before, "after": after["VmRSS"], "peak": after["VmHWM"],
                      "passes": loop.passes, "held": held, "waiting": waiting, "seconds": took}))


def run_child(url: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", "--database-url", url],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="sqlite:////tmp/corral-sched-mem.db")
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=1_000)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.database_url)
        return
    # Only here: the child imports what the scheduler process imports, nothing of the bench's.
    from _common import machine_note
    from admission_throughput import fresh, set_up
    from corral.db.engine import make_engine
    from corral.db.migrate import upgrade

    print(machine_note(), flush=True)
    url = fresh(args.database_url)
    engine = make_engine(url)
    upgrade(engine)
    set_up(engine, argparse.Namespace(queued=args.queued, projects=args.projects, clusters=args.clusters),
           random.Random(7))
    engine.dispose()
    for label in ("drain", "reload"):
        m = run_child(url)
        verdict = "met" if m["after"] <= TARGET_MB else "MISSED"
        print(f"{label}: {m['held']:,} holding, {m['waiting']:,} waiting after {m['passes']} passes "
              f"({m['seconds']:.1f} s): RSS {m['before']:.0f} MB before loading, {m['after']:.0f} MB after "
              f"(peak {m['peak']:.0f} MB); target <= {TARGET_MB} MB: {verdict}", flush=True)


if __name__ == "__main__":
    main()
