"""Cancelling N running jobs in one request: Corral's bulk delete against one `scancel` (issue 13).

    .venv/bin/python bench/bulk_cancel.py [--n 200] [--rounds 2] [--no-slurm]   # as root for Slurm

Corral: `corral serve` on a fresh data directory (SQLite, its built-in local cluster), N
workloads running `sleep`; then ONE POST /api/v1/workloads/delete with their ids. Timed
from that request to (a) its answer, (b) every one of the N `sleep` processes gone from
the host, (c) all N shown Deleted by the API (the list's Deleted total); "all gone" is
the later of (b) and (c).

Slurm, when installed (sbatch, slurmctld, slurmd, munged): a cluster of its own started
with scripts/slurm-test-cluster in its own state directory (/tmp/corral-slurm-bulkbench),
on its own ports (slurmctld 9817, slurmd 9818-9821) and with its own munged, so the tests'
cluster under /tmp/corral-slurm is left alone; N `sbatch --wrap sleep` jobs running, then
ONE `scancel` with their ids, timed to (a) scancel's exit, (b) the N processes gone,
(c) squeue empty. Otherwise the Slurm side prints "not measured" and why.

Both sides run the same command, `sleep 3600.<token>` (digits: sleep reads a number), the
token telling this run's processes from anything else on the host. The rounds alternate (Slurm, then Corral).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from _common import machine_note
from _vs_slurm_sides import Corral, Slurm

SLURM_STATE = Path("/tmp/corral-slurm-bulkbench")
SLURM_PORT_BASE = 9817
SLURM_MUNGE_SOCKET = "/run/munge-corral-bulkbench/munge.socket"


def new_token() -> str:
    return str(uuid.uuid4().int)[:12]


def sleepers(token: str) -> int:
    """How many `sleep 3600.<token>` processes are alive on the host."""
    needle = f"3600.{token}".encode()
    n = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[0].endswith(b"sleep") and argv[1] == needle:
            n += 1
    return n


def wait_sleepers(token: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (found := sleepers(token)) != n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{found} sleep processes, waited for {n}")
        time.sleep(0.05)


def until_gone(token: str, shown_gone: Any, t0: float, timeout: float = 600) -> dict[str, float]:
    """From ``t0``: when the processes are gone, when ``shown_gone()`` says so too."""
    processes = shown = None
    deadline = time.monotonic() + timeout
    while processes is None or shown is None:
        if processes is None and sleepers(token) == 0:
            processes = time.perf_counter() - t0
        if shown is None and shown_gone():
            shown = time.perf_counter() - t0
        if time.monotonic() > deadline:
            raise RuntimeError(f"not gone after {timeout} s (processes {processes}, shown {shown})")
        time.sleep(0.01)
    return {"processes_gone_s": processes, "shown_gone_s": shown, "all_gone_s": max(processes, shown)}


# --------------------------------------------------------------------------- Slurm

def slurm_missing() -> str | None:
    missing = [c for c in ("sbatch", "squeue", "scancel", "munge") if shutil.which(c) is None]
    missing += [p for p in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged") if not os.access(p, os.X_OK)]
    if missing:
        return f"Slurm is not installed here (missing {', '.join(missing)})"
    if os.geteuid() != 0:
        return "the Slurm side needs root (slurmd runs the jobs)"
    return None


def slurm_round(slurm: Slurm, n: int) -> dict[str, float]:
    token = new_token()
    jobs = [slurm.sbatch(f"bulk{i}", f"sleep 3600.{token}") for i in range(n)]
    slurm.wait_count("R", n)
    wait_sleepers(token, n)
    t0 = time.perf_counter()
    slurm.run("scancel", *map(str, jobs))
    answered = time.perf_counter() - t0
    gone = until_gone(token, lambda: not slurm.run("squeue", "-h", "-o", "%i").split(), t0)
    return {"answered_s": answered, **gone}


# --------------------------------------------------------------------------- Corral

def corral_round(corral: Corral, n: int) -> dict[str, Any]:
    token = new_token()
    with closing(corral.http()) as h:
        deleted_before = corral.count(h, "Deleted")
        ids = []
        for i in range(n):
            status, body = h.call("POST", "/api/v1/workloads", corral.body(f"bulk-{token}-{i}",
                                                                           ["sleep", f"3600.{token}"]))
            if status != 201:
                raise RuntimeError(f"submit: {status} {body}")
            ids.append(body["id"])
        corral.wait_count(h, n, "Running")
        wait_sleepers(token, n)
        t0 = time.perf_counter()
        status, body = h.call("POST", "/api/v1/workloads/delete", {"ids": ids})
        answered = time.perf_counter() - t0
        if status != 200 or body["counts"]["done"] != n:
            raise RuntimeError(f"bulk delete: {status} {body if status != 200 else body['counts']}")
        with closing(corral.http()) as reader:  # a second client, polling the list as a user would
            gone = until_gone(token, lambda: corral.count(reader, "Deleted") - deleted_before == n, t0)
    return {"answered_s": answered, **gone}


# --------------------------------------------------------------------------- the run

def fmt(rounds: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in rounds]
    return " / ".join(f"{v:.2f}" for v in values) + (f" (median {statistics.median(values):.2f})"
                                                     if len(values) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="running jobs cancelled at once")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-slurm", action="store_true", help="measure Corral only")
    args = ap.parse_args()
    print(f"# cancelling {args.n} running jobs in one request; {machine_note()}", flush=True)

    why_not = "--no-slurm" if args.no_slurm else slurm_missing()
    slurm = None
    if why_not is None:
        slurm = Slurm(SLURM_STATE, SLURM_PORT_BASE, nodes=4, cpus=max(8, -(-args.n // 4)),
                      memory_mb=max(4000, 1000 * -(-args.n // 4)))
        slurm.env["CORRAL_SLURM_MUNGE_SOCKET"] = SLURM_MUNGE_SOCKET  # not another bench's munged
    root = Path(tempfile.mkdtemp(prefix="corral-bulk-cancel-"))
    root.chmod(0o755)
    corral = Corral(root / "corral")
    results: dict[str, list[dict[str, float]]] = {"slurm": [], "corral": []}
    try:
        if slurm is not None:
            slurm.start()
            slurm.cancel_all()
        corral.start()
        corral.set_quota(args.n)  # n workloads of 1m CPU
        for r in range(args.rounds):
            if slurm is not None:
                results["slurm"].append(slurm_round(slurm, args.n))
                print(f"round {r + 1} Slurm:  {results['slurm'][-1]}", flush=True)
            results["corral"].append(corral_round(corral, args.n))
            print(f"round {r + 1} Corral: {results['corral'][-1]}", flush=True)
    finally:
        corral.stop()
        if slurm is not None:
            slurm.cancel_all()
            slurm.stop()

    c = results["corral"]
    print()
    print(f"| cancel {args.n} running `sleep` jobs, seconds per round | Slurm (one scancel) "
          f"| Corral (one POST /api/v1/workloads/delete) | Corral / Slurm |")
    print("| --- | --- | --- | --- |")
    for key, label in (("answered_s", "request answered"), ("processes_gone_s", "every process gone"),
                       ("shown_gone_s", "all shown gone (squeue empty / API: Deleted)"),
                       ("all_gone_s", "all gone (the later of the two)")):
        if results["slurm"]:
            s = results["slurm"]
            ratio = statistics.median(x[key] for x in c) / statistics.median(x[key] for x in s)
            print(f"| {label} | {fmt(s, key)} | {fmt(c, key)} | {ratio:.2f}x |")
        else:
            print(f"| {label} | not measured | {fmt(c, key)} | - |")
    if not results["slurm"]:
        print(f"\nSlurm side not measured: {why_not}.")
    else:
        ratio = statistics.median(x["all_gone_s"] for x in c) / statistics.median(x["all_gone_s"]
                                                                                 for x in results["slurm"])
        verdict = "met" if ratio <= 1.0 else "MISSED"
        print(f"\ntarget: Corral <= Slurm to all gone: {ratio:.2f}x, {verdict}")


if __name__ == "__main__":
    main()
