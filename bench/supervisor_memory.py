"""Memory the local backend adds per running job: its supervisors' PSS (issue 13).

    .venv/bin/python bench/supervisor_memory.py              # 100 `sleep` components, LocalBackend
    .venv/bin/python bench/supervisor_memory.py --serve      # the same through `corral serve`
    .venv/bin/python bench/supervisor_memory.py -n 20 --json

Starts N `sleep 3600` components through the real local backend (a ``LocalBackend`` on a
fresh state directory, or with ``--serve`` a whole ``corral serve`` with its built-in
cluster, as bench/vs_slurm.py does), waits until all run, then reads
/proc/PID/smaps_rollup of every supervisor and of their fork server: their PSS summed and
divided by N is the figure, compared with slurmstepd's per job (1.12 MB, bench/vs_slurm.py
measures it in the same run as Corral; run that script for both sides at once).

Then, from /proc/PID/smaps, where one supervisor's memory goes (averaged over all of them):
per kind of mapping, the pages it owns alone (Private_Dirty + Private_Clean: what it
wrote since the fork, copy-on-write) and its share of the pages it shares (Pss minus
private). Kinds: the python executable's text and data, other libraries, [heap] (malloc),
anonymous mappings (obmalloc's arenas, big mallocs), [stack], and the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine_note  # noqa: E402

SLURM_MB = 1.12  # slurmstepd per job, bench/vs_slurm.py on this machine (BENCHMARKS.md)
MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$")


def rollup(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[key] = int(parts[0])
    return out


def kind_of(perms: str, name: str, exe: str) -> str:
    if name in ("[heap]", "[stack]"):
        return name
    if not name:
        return "anonymous (obmalloc arenas, big mallocs)"
    if name.startswith("["):
        return "[vdso/vvar]"
    if os.path.realpath(name) == exe:
        return f"python executable, {'text' if 'x' in perms else 'data' if 'w' in perms else 'read-only'}"
    if ".so" in name:
        return f"libraries, {'text' if 'x' in perms else 'data' if 'w' in perms else 'read-only'}"
    return "other files"


def breakdown(pid: int) -> dict[str, dict[str, int]]:
    """Per kind of mapping: private (dirty + clean) and shared PSS share, in KiB."""
    exe = os.path.realpath(f"/proc/{pid}/exe")
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"private": 0, "private_dirty": 0, "pss": 0, "rss": 0})
    kind = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = MAPPING.match(line)
        if m:
            kind = kind_of(m.group(1), m.group(2).strip(), exe)
            continue
        key, _, rest = line.partition(":")
        if kind is None or not rest.strip().endswith("kB"):
            continue
        value = int(rest.split()[0])
        if key in ("Private_Dirty", "Private_Clean"):
            out[kind]["private"] += value
            if key == "Private_Dirty":
                out[kind]["private_dirty"] += value
        elif key == "Pss":
            out[kind]["pss"] += value
        elif key == "Rss":
            out[kind]["rss"] += value
    return dict(out)


def average(rows: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, float]]:
    total: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        for kind, values in row.items():
            for k, v in values.items():
                total[kind][k] += v / len(rows)
    return {k: dict(v) for k, v in total.items()}


# --------------------------------------------------------------------------- the two ways to start them

def with_backend(n: int, root: Path, settle: float) -> tuple[list[int], int | None, Any]:
    sys.path.insert(0, str(REPO))
    from corral.backends.base import Launch
    from corral.backends.local import LocalBackend
    from corral.backends.local import files as f
    from tests.conftest import work_root_for

    state = root / "local-cluster"
    backend = LocalBackend(state, gpus="0", work_root=work_root_for(state))
    for cid in range(1, n + 1):
        backend.start(Launch(cid, 100 + cid, "proj", "custom", f"proj-w{100 + cid}-job", command=("sleep", "3600")))
    deadline = time.monotonic() + 120
    running: set[int] = set()
    while len(running) < n:
        running |= {o.component_id for o in backend.observe() if o.status.value == "Running"}
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(running)} of {n} components running after 120 s")
        time.sleep(0.05)
    time.sleep(settle)  # each supervisor settles into its wait (and looks at its log a few times)
    sups = [int((backend.components_dir / str(cid) / f.SUPERVISOR_LOCK).read_text()) for cid in range(1, n + 1)]

    def stop() -> None:
        from tests.integration.backends.conftest import kill_leftovers

        for cid in range(1, n + 1):
            backend.stop(cid, grace_s=1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                (f.read_json(backend.components_dir / str(c) / f.STATUS) or {}).get("phase") != "exited"
                for c in range(1, n + 1)):
            time.sleep(0.2)
        backend.close()
        kill_leftovers(state)

    return sups, backend._spawner.server_pid, stop


def with_serve(n: int, root: Path, settle: float) -> tuple[list[int], int | None, Any]:
    from _vs_slurm_sides import Corral

    corral = Corral(root)
    corral.start()
    corral.set_quota(n)
    with contextlib.closing(corral.http()) as h:
        for i in range(n):
            status, body = h.call("POST", "/api/v1/workloads", corral.body(f"mem{i}", ["sleep", "3600"]))
            assert status == 201, body
        corral.wait_count(h, n, "Running")
    time.sleep(settle)
    pids = corral.supervisor_pids()
    # The fork server writes to spawner.log, each supervisor to its component's supervisor.log.
    server = [p for p in pids if os.readlink(f"/proc/{p}/fd/1").endswith("/spawner.log")]
    sups = [p for p in pids if p not in server]
    return sups, (server[0] if server else None), corral.stop


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="components to run (default 100)")
    parser.add_argument("--serve", action="store_true", help="through `corral serve` rather than a LocalBackend")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--settle", type=float, default=12.0,
                        help="seconds between all running and measuring (default 12: past the supervisors' "
                             "log checks' back-off to every 5 s)")
    parser.add_argument("--hold", type=float, default=0, help="seconds to keep them running after measuring")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="corral-supmem-") as tmp:
        start = with_serve if args.serve else with_backend
        sups, server, stop = start(args.n, Path(tmp), args.settle)
        try:
            rollups = {p: rollup(p) for p in sups}
            server_rollup = rollup(server) if server else {}
            parts = [breakdown(p) for p in sups]
            server_parts = breakdown(server) if server else {}
            if args.hold:
                time.sleep(args.hold)
        finally:
            stop()

    pss = sum(r["Pss"] for r in rollups.values()) + server_rollup.get("Pss", 0)
    per_job_mb = pss / 1024 / args.n
    avg = average(parts)
    one = {k: sum(r[k] for r in rollups.values()) / len(rollups)
           for k in ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean", "Shared_Dirty")}
    print(machine_note())
    print(f"{len(sups)} supervisors + {'1 fork server' if server else 'no fork server'} for {args.n} "
          f"running `sleep` components ({'corral serve' if args.serve else 'LocalBackend'})")
    print(f"PSS per job: {per_job_mb:.2f} MB (Slurm's slurmstepd: {SLURM_MB:.2f} MB; "
          f"ratio {per_job_mb / SLURM_MB:.2f}x; target <= 1.00x) "
          f"[MB = MiB, as bench/vs_slurm.py]")
    print(f"  supervisors' PSS {sum(r['Pss'] for r in rollups.values()) / 1024:.1f} MiB, "
          f"fork server's {server_rollup.get('Pss', 0) / 1024:.2f} MiB "
          f"(RSS {server_rollup.get('Rss', 0) / 1024:.1f} MiB)")
    print("one supervisor, mean (KiB): " + ", ".join(f"{k} {v:.0f}" for k, v in one.items()))
    print(f"\n{'where one supervisor`s memory goes (KiB, mean)':50} {'private':>8} {'(dirty)':>8} "
          f"{'shared PSS':>10} {'RSS':>8}")
    for kind, v in sorted(avg.items(), key=lambda kv: -kv[1]["pss"]):
        if v["rss"] < 1:
            continue
        print(f"  {kind:48} {v['private']:8.0f} {v['private_dirty']:8.0f} {v['pss'] - v['private']:10.1f} "
              f"{v['rss']:8.0f}")
    total_private = sum(v["private"] for v in avg.values())
    total_shared = sum(v["pss"] - v["private"] for v in avg.values())
    print(f"  {'total':48} {total_private:8.0f} {'':8} {total_shared:10.1f}")
    if server_parts:
        print("\nthe fork server (KiB): " + ", ".join(
            f"{k} private {v['private']} pss {v['pss']}" for k, v in sorted(server_parts.items(),
                                                                             key=lambda kv: -kv[1]['pss'])
            if v["pss"] >= 50))
    if args.json:
        print(json.dumps({"n": args.n, "per_job_mb": per_job_mb, "slurm_mb": SLURM_MB,
                          "supervisor_mean_kib": one, "breakdown_kib": avg,
                          "server_kib": server_rollup}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
