"""Submissions while busy, two versions of Corral alternately (an A/B of issue 13's figure).

    .venv/bin/python bench/submit_ab.py --before e56fecf               # this tree against e56fecf
    .venv/bin/python bench/submit_ab.py --before e56fecf --database sqlite --pairs 2

The submission phase of `bench/vs_slurm.py` alone (8 client threads, one keep-alive
connection each, POST /api/v1/workloads while 100 workloads run and the rest queue), run
on `--before` (a git revision: its `src/` is extracted and put first on PYTHONPATH) and
on this tree, one after the other, `--pairs` times. On this 2-core machine one version's
rate swings 20-30% within minutes, so a change shows only as a difference that holds
across pairs. Each run: a fresh `corral serve` (fresh data directory, fresh PostgreSQL
database), `--rounds` rounds of `--queued` submissions; printed per round: submissions/s,
p50 / p99, and CPU ms per submission of serve, the scheduler, the client threads and
PostgreSQL's processes (every postgres process on the host).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, pct  # noqa: E402
from _vs_slurm_sides import Corral, cpu_seconds, fresh_postgres_database  # noqa: E402
from vs_slurm import client_cpu, threaded  # noqa: E402

RUNNING = 100


def postgres_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip().startswith("postgres"):
                    out.append(int(entry.name))
    return out


def one_side(args: argparse.Namespace) -> None:
    """Runs inside the child process whose PYTHONPATH picks the version."""
    url = fresh_postgres_database(args.postgres, "corral_submit_ab") if args.database == "postgresql" else None
    root = Path(tempfile.mkdtemp(prefix="corral-submit-ab-"))
    corral = Corral(root, url)
    corral.start()
    try:
        corral.fill(RUNNING)
        time.sleep(1)
        assert corral.proc is not None
        serve = corral.proc.pid
        for rnd in range(args.rounds):
            def one(conn: Any, i: int, rnd: int = rnd) -> None:
                status, body = conn.call("POST", "/api/v1/workloads", corral.body(f"q{rnd}-{i}", ["sleep", "3600"]))
                if status != 201:
                    raise RuntimeError(f"submission {i}: {status} {body}")

            others = [p for p in corral.control_plane_pids() if p != serve]
            pg = postgres_pids() if url else []
            before = cpu_seconds([serve]), cpu_seconds(others), client_cpu(), cpu_seconds(pg)
            rate, lat = threaded(args.queued, 8, corral.http, one)
            after = cpu_seconds([serve]), cpu_seconds(others), client_cpu(), cpu_seconds(pg)
            cpu = [1000 * (b - a) / args.queued for a, b in zip(before, after)]
            print(f"{rate:.0f}/s p50 {pct(lat, 50) * 1000:.1f} p99 {pct(lat, 99) * 1000:.1f} ms; CPU ms a "
                  f"submission: serve {cpu[0]:.2f} scheduler {cpu[1]:.2f} client {cpu[2]:.2f}"
                  + (f" postgres {cpu[3]:.2f}" if url else ""), flush=True)
    finally:
        corral.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="a git revision to compare this tree with")
    ap.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="an administrative URL: a fresh database corral_submit_ab is made beside it")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of submissions per run")
    ap.add_argument("--queued", type=int, default=1500, help="submissions per round")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side here
    args = ap.parse_args()
    if args.side:
        one_side(args)
        return
    with tempfile.TemporaryDirectory(prefix="corral-submit-ab-src-") as old:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        sides = {f"before ({args.before})": Path(old) / "src", "after (this tree)": REPO / "src"}
        print(f"# submissions while busy, {args.database}, {args.queued} x {args.rounds} a run", flush=True)
        for pair in range(args.pairs):
            for label, src in sides.items():
                print(f"pair {pair + 1}, {label}:", flush=True)
                env = {**os.environ, "PYTHONPATH": str(src)}
                subprocess.run([sys.executable, __file__, *sys.argv[1:], "--side", label], env=env, check=True)


if __name__ == "__main__":
    main()
