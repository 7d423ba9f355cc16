"""Corral against Slurm on this machine, in one run, one side after the other (issue 13).

    .venv/bin/python bench/vs_slurm.py            # as root; ~5 min; Slurm 22.05 from Debian's packages

Starts a real Slurm cluster of its own (scripts/slurm-test-cluster with
CORRAL_SLURM_STATE=/tmp/corral-slurm-bench, slurmctld on port 7817 and four slurmd "nodes"
of 50 declared CPUs on 7818-7821: the tests' cluster under /tmp/corral-slurm is left alone)
and `corral serve` on a fresh data directory with its built-in cluster (SQLite; and once on
a fresh PostgreSQL database for the submission figure). Both run the same trivial `sleep`
jobs. Printed, side by side with the ratio and the target:

1. submissions/s from 8 client threads while the cluster is busy: 100 jobs running, the
   next 1,000 all queue (Slurm: 100 jobs of 2 CPUs fill the 200 CPUs, the 1,000 ask for 1;
   Corral: a hard quota of 100m CPU and 100 workloads of 1m running). Slurm: `sbatch`,
   one process per submission; Corral: POST /api/v1/workloads over one keep-alive
   connection per thread;
2. one CLI call: `corral workloads list` against `squeue` and `python3 -c pass` (the
   interpreter the CLI runs on: this venv's), warm (a user's second call on: the warm
   process, corral.cli.entry) and in place (a first call, or CORRAL_CLI_WARM=0);
3. process exit -> finished visible: the job writes its end time (`date +%s.%N`) as its
   last act, the client polls (Slurm: `squeue -j ID -t all` until COMPLETED, back to back;
   Corral: GET /api/v1/workloads/ID every 5 ms until Complete);
4. memory the system adds per running job: PSS (/proc/PID/smaps_rollup) of the
   slurmstepd processes per job against Corral's supervisors per component, with 100 running;
5. idle CPU of the control plane with nothing to do: slurmctld + slurmd against
   `corral serve` and its children (scheduler), both measured over the same window;
6. cancelling 200 running jobs: one `scancel` against one POST /api/v1/workloads/delete
   (200 DELETEs if that endpoint does not answer), until none is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_note, pct  # noqa: E402
from _vs_slurm_sides import (  # noqa: E402
    Corral,
    Http,
    Slurm,
    cpu_seconds,
    fresh_postgres_database,
    pss_kib,
)

RUNNING, QUEUED, THREADS = 100, 1000, 8


def threaded(total: int, threads: int, make: Callable[[], Any], one: Callable[[Any, int], None]
             ) -> tuple[float, list[float]]:
    """``total`` calls of ``one(state, i)`` from ``threads`` threads (each with its own
    ``make()`` state); (calls per second, each call's latency in seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(t: int) -> None:
        state = make()
        mine = []
        try:
            for i in range(t, total, threads):
                t0 = time.perf_counter()
                one(state, i)
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(latencies) / elapsed, latencies


# --------------------------------------------------------------------------- 1 and 4: busy submissions, memory

def slurm_submissions(slurm: Slurm) -> dict[str, Any]:
    for i in range(RUNNING):
        slurm.sbatch(f"busy{i}", "sleep 3600", cpus=2)
    slurm.wait_count("R", RUNNING)
    deadline = time.monotonic() + 60
    while len(stepds := slurm.stepd_pids()) < RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)  # RUNNING is shown before every node has started the job's slurmstepd
    memory = {"processes": len(stepds), "pss_kib": sum(pss_kib(p) for p in stepds)}
    daemons = slurm.daemon_pids()
    cpu0, client0 = cpu_seconds(daemons), client_cpu()
    rate, lat = threaded(QUEUED, THREADS, lambda: None, lambda _, i: slurm.sbatch(f"q{i}", "sleep 3600"))
    cpu = {"slurmctld + slurmd": cpu_seconds(daemons) - cpu0, "client (sbatch processes)": client_cpu() - client0}
    pending = slurm.count("PD")
    slurm.cancel_all()
    return {"rate": rate, "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000, "queued": pending,
            "memory": memory, "cpu_ms_per_submission": {k: 1000 * v / QUEUED for k, v in cpu.items()}}


def client_cpu() -> float:
    """CPU seconds of this process and the children it waited for (sbatch, the CLI)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def corral_submissions(corral: Corral) -> dict[str, Any]:
    corral.fill(RUNNING)
    with contextlib.closing(corral.http()) as h:
        time.sleep(1)
        sups = corral.supervisor_pids()
        memory = {"processes": len(sups), "pss_kib": sum(pss_kib(p) for p in sups)}

        def one(conn: Http, i: int) -> None:
            status, body = conn.call("POST", "/api/v1/workloads", corral.body(f"q{i}", ["sleep", "3600"]))
            if status != 201:
                raise RuntimeError(f"submission {i}: {status} {body}")

        assert corral.proc is not None
        serve, others = corral.proc.pid, [p for p in corral.control_plane_pids() if p != corral.proc.pid]
        cpu0, others0, client0 = cpu_seconds([serve]), cpu_seconds(others), client_cpu()
        rate, lat = threaded(QUEUED, THREADS, corral.http, one)
        cpu = {"serve (API, agent)": cpu_seconds([serve]) - cpu0, "scheduler": cpu_seconds(others) - others0,
               "client (8 threads)": client_cpu() - client0}
        pending = corral.count(h, "Pending")
    return {"rate": rate, "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000, "queued": pending,
            "memory": memory, "cpu_ms_per_submission": {k: 1000 * v / QUEUED for k, v in cpu.items()}}


# --------------------------------------------------------------------------- 2: one CLI call

def timed_runs(argv: list[str], env: dict[str, str] | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t0)
    return out


def cli_calls(slurm: Slurm, corral: Corral, n: int) -> dict[str, Any]:
    from _vs_slurm_sides import CORRAL

    # "corral": as a user's second and later calls run (in the warm process the first call
    # leaves behind, corral.cli.entry); "corral_in_place": as a first call, or with
    # CORRAL_CLI_WARM=0, runs (the whole CLI imported by the call's own process).
    runs: dict[str, list[float]] = {"python": [], "squeue": [], "corral": [], "corral_in_place": []}
    runtime = tempfile.mkdtemp(prefix="cw-vs-", dir="/tmp")  # this run's warm process, stopped below
    warm_env = {**corral.cli_env(), "XDG_RUNTIME_DIR": runtime}
    in_place_env = {**warm_env, "CORRAL_CLI_WARM": "0"}
    timed_runs([str(CORRAL), "workloads", "list"], warm_env, 1)  # starts the warm process: not counted
    time.sleep(2)
    for _ in range(n):  # interleaved, so that load changes hit all of them alike
        # The interpreter the CLI runs on (`python3` on PATH may be a shim that costs more).
        runs["python"] += timed_runs([sys.executable, "-c", "pass"], None, 1)
        runs["squeue"] += timed_runs(["squeue"], slurm.env, 1)
        runs["corral"] += timed_runs([str(CORRAL), "workloads", "list"], warm_env, 1)
        runs["corral_in_place"] += timed_runs([str(CORRAL), "workloads", "list"], in_place_env, 1)
    subprocess.run(["pkill", "-TERM", "-f", f"corral.cli.warm {runtime}/"], check=False)
    shutil.rmtree(runtime, ignore_errors=True)
    return {k: {"p50_ms": pct(v, 50) * 1000, "p90_ms": pct(v, 90) * 1000} for k, v in runs.items()}


# --------------------------------------------------------------------------- 3: exit -> finished visible

def slurm_exit_latency(slurm: Slurm, marks: Path, n: int) -> list[float]:
    out = []
    for i in range(n):
        mark = marks / f"s{i}"
        job = slurm.sbatch(f"exit{i}", f"sleep 0.3; date +%s.%N > {mark}")
        deadline = time.monotonic() + 60
        while True:
            state = slurm.run("squeue", "-h", "-j", str(job), "-t", "all", "-o", "%T").strip()
            if state in ("COMPLETED", "FAILED", "CANCELLED", ""):
                seen = time.time()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Slurm job {job} still {state}")
        out.append(seen - float(mark.read_text()))
    return out


def corral_exit_latency(corral: Corral, marks: Path, n: int) -> list[float]:
    out = []
    with contextlib.closing(corral.http()) as h:
        for i in range(n):
            mark = marks / f"c{i}"
            status, body = h.call("POST", "/api/v1/workloads",
                                  corral.body(f"exit{i}", ["sh", "-c", f"sleep 0.3; date +%s.%N > {mark}"]))
            assert status == 201, body
            deadline = time.monotonic() + 60
            while True:
                _, detail = h.call("GET", f"/api/v1/workloads/{body['id']}")
                if detail["status"] in ("Complete", "Failed"):
                    seen = time.time()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Corral workload {body['id']} still {detail['status']}")
                time.sleep(0.005)
            if detail["status"] != "Complete":
                raise RuntimeError(f"exit{i}: {detail['status']} {detail['status_reason']}")
            out.append(seen - float(mark.read_text()))
    return out


# --------------------------------------------------------------------------- 5: idle CPU

def idle_cpu(slurm: Slurm, corral: Corral, seconds: float) -> dict[str, float]:
    s_pids, c_pids = slurm.daemon_pids(), corral.control_plane_pids()
    s0, c0, t0 = cpu_seconds(s_pids), cpu_seconds(c_pids), time.monotonic()
    time.sleep(seconds)
    s1, c1, t1 = cpu_seconds(s_pids), cpu_seconds(c_pids), time.monotonic()
    return {"slurm_pct": 100 * (s1 - s0) / (t1 - t0), "corral_pct": 100 * (c1 - c0) / (t1 - t0),
            "slurm_processes": len(s_pids), "corral_processes": len(c_pids)}


# --------------------------------------------------------------------------- 6: cancel 200 running

def slurm_cancel(slurm: Slurm, n: int) -> dict[str, float]:
    jobs = [slurm.sbatch(f"cancel{i}", "sleep 3600") for i in range(n)]
    slurm.wait_count("R", n)
    t0 = time.perf_counter()
    slurm.run("scancel", *map(str, jobs))
    answered = time.perf_counter() - t0
    while slurm.run("squeue", "-h", "-o", "%i").split():
        time.sleep(0.02)
    return {"answered_s": answered, "gone_s": time.perf_counter() - t0}


def corral_cancel(corral: Corral, n: int) -> dict[str, Any]:
    corral.set_quota(n)
    with contextlib.closing(corral.http()) as h:
        ids = []
        for i in range(n):
            status, body = h.call("POST", "/api/v1/workloads", corral.body(f"cancel{i}", ["sleep", "3600"]))
            assert status == 201, body
            ids.append(body["id"])
        corral.wait_count(h, n, "Running")
        t0 = time.perf_counter()
        status, body = h.call("POST", "/api/v1/workloads/delete", {"ids": ids})
        how = "one POST /api/v1/workloads/delete"
        if status in (404, 405):
            how = f"200 DELETEs (bulk delete answered {status})"
            for wid in ids:
                status, body = h.call("DELETE", f"/api/v1/workloads/{wid}")
                assert status == 202, body
        elif status != 200:
            raise RuntimeError(f"bulk delete: {status} {body}")
        answered = time.perf_counter() - t0
        corral.wait_count(h, n, "Deleted", timeout=600)
        return {"answered_s": answered, "gone_s": time.perf_counter() - t0, "how": how}


# --------------------------------------------------------------------------- the run

def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def table(r: dict[str, Any]) -> list[str]:
    s, c, cp = r["submit"]["slurm"], r["submit"]["corral"], r["submit"].get("corral_pg")
    cli, ex, mem, idle, cancel = r["cli"], r["exit"], r["memory"], r["idle"], r["cancel"]
    rows = [("submissions/s, 8 threads, 100 running + 1,000 queued (Corral: SQLite)",
             f"{s['rate']:.0f}/s (p99 {s['p99_ms']:.0f} ms)", f"{c['rate']:.0f}/s (p99 {c['p99_ms']:.0f} ms)",
             ratio(c["rate"], s["rate"]), ">= Slurm", c["rate"] >= s["rate"])]
    if cp:
        rows.append(("same, Corral on PostgreSQL", f"{s['rate']:.0f}/s",
                     f"{cp['rate']:.0f}/s (p50 {cp['p50_ms']:.0f}, p99 {cp['p99_ms']:.0f} ms)",
                     ratio(cp["rate"], s["rate"]), ">= Slurm, >= 1,000/s, p99 <= 50 ms",
                     cp["rate"] >= max(1000, s["rate"]) and cp["p99_ms"] <= 50))
    py = cli["python"]["p50_ms"]
    rows.append(("one CLI call, p50 (`squeue` / `corral workloads list`); `python3 -c pass` "
                 f"{py:.0f} ms", f"{cli['squeue']['p50_ms']:.0f} ms ({cli['squeue']['p50_ms'] / py:.1f}x python)",
                 f"{cli['corral']['p50_ms']:.0f} ms ({cli['corral']['p50_ms'] / py:.1f}x python)",
                 ratio(cli["corral"]["p50_ms"], cli["squeue"]["p50_ms"]), "<= 5x `python3 -c pass`",
                 cli["corral"]["p50_ms"] <= 5 * py))
    if "corral_in_place" in cli:
        rows.append(("same, a first call (no warm process yet) or CORRAL_CLI_WARM=0", "-",
                     f"{cli['corral_in_place']['p50_ms']:.0f} ms ({cli['corral_in_place']['p50_ms'] / py:.1f}x python)",
                     "-", "(for reference)", None))
    rows.append(("process exit -> finished visible, p50 / p99",
                 f"{ex['slurm']['p50']:.0f} / {ex['slurm']['p99']:.0f} ms",
                 f"{ex['corral']['p50']:.0f} / {ex['corral']['p99']:.0f} ms",
                 f"{ratio(ex['corral']['p50'], ex['slurm']['p50'])} / {ratio(ex['corral']['p99'], ex['slurm']['p99'])}",
                 "<= Slurm", ex["corral"]["p50"] <= ex["slurm"]["p50"] and ex["corral"]["p99"] <= ex["slurm"]["p99"]))
    rows.append(("memory added per running job (PSS)",
                 f"{mem['slurm_mb']:.2f} MB (slurmstepd, {mem['slurm_processes']} for {RUNNING} jobs)",
                 f"{mem['corral_mb']:.2f} MB (supervisors, {mem['corral_processes']} processes for {RUNNING} "
                 "workloads, their fork server included)",
                 ratio(mem["corral_mb"], mem["slurm_mb"]), "<= Slurm", mem["corral_mb"] <= mem["slurm_mb"]))
    rows.append((f"idle CPU of the control plane ({r['idle_s']:.0f} s, nothing to do)",
                 f"{idle['slurm_pct']:.2f}% of a core (slurmctld + {idle['slurm_processes'] - 1} slurmd)",
                 f"{idle['corral_pct']:.2f}% of a core (serve + {idle['corral_processes'] - 1} children)",
                 ratio(idle["corral_pct"], idle["slurm_pct"]), "<= 1% of a core", idle["corral_pct"] <= 1.0))
    rows.append(("cancel 200 running jobs, until none is left",
                 f"{cancel['slurm']['gone_s']:.2f} s (one scancel, answered in {cancel['slurm']['answered_s']:.2f} s)",
                 f"{cancel['corral']['gone_s']:.2f} s ({cancel['corral']['how']}, answered in "
                 f"{cancel['corral']['answered_s']:.2f} s)",
                 ratio(cancel["corral"]["gone_s"], cancel["slurm"]["gone_s"]), "<= Slurm",
                 cancel["corral"]["gone_s"] <= cancel["slurm"]["gone_s"]))
    out = ["| figure | Slurm 22.05 | Corral | Corral / Slurm | target | met |", "|---|---|---|---:|---|:---:|"]
    out += [f"| {f} | {a} | {b} | {q} | {t} | {'-' if m is None else 'yes' if m else '**missed**'} |"
            for f, a, b, q, t, m in rows]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slurm-state", type=Path, default=Path("/tmp/corral-slurm-bench"))
    ap.add_argument("--slurm-port-base", type=int, default=7817)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="an administrative URL: a fresh database corral_vs_slurm is made beside it ('' to skip)")
    ap.add_argument("--samples", type=int, default=40, help="exit -> finished samples per side")
    ap.add_argument("--cli-runs", type=int, default=15)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--cancel", type=int, default=200)
    ap.add_argument("--running", type=int, default=100, help="jobs running while submitting (a smoke run: less)")
    ap.add_argument("--queued", type=int, default=1000, help="submissions measured")
    args = ap.parse_args()
    globals().update(RUNNING=args.running, QUEUED=args.queued)

    note = machine_note()
    print(f"# Corral vs Slurm; {note}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="corral-vs-slurm-"))
    root.chmod(0o755)
    marks = root / "marks"
    marks.mkdir()
    marks.chmod(0o1777)  # the workloads write here as their project's user
    slurm = Slurm(args.slurm_state, args.slurm_port_base, nodes=4, cpus=50, memory_mb=60000)
    r: dict[str, Any] = {"note": note, "idle_s": args.idle_seconds, "submit": {}}
    slurm.start()
    try:
        slurm.cancel_all()
        print("1. submissions while busy ...", flush=True)
        r["submit"]["slurm"] = slurm_submissions(slurm)
        print(f"   Slurm: {r['submit']['slurm']}", flush=True)
        variants = [("corral", None)]
        if args.postgres:
            variants.append(("corral_pg", fresh_postgres_database(args.postgres, "corral_vs_slurm")))
        for key, url in variants:
            corral = Corral(root / key, url)
            corral.start()
            try:
                r["submit"][key] = corral_submissions(corral)
            finally:
                corral.stop()
            print(f"   Corral ({corral.label}): {r['submit'][key]}", flush=True)
        sm, cm = r["submit"]["slurm"]["memory"], r["submit"]["corral"]["memory"]
        r["memory"] = {"slurm_mb": sm["pss_kib"] / 1024 / max(1, sm["processes"]), "slurm_processes": sm["processes"],
                       "corral_mb": cm["pss_kib"] / 1024 / RUNNING,
                       "corral_processes": cm["processes"]}

        corral = Corral(root / "idle")
        corral.start()
        try:
            time.sleep(5)
            print(f"5. idle CPU over {args.idle_seconds:.0f} s (both at once) ...", flush=True)
            r["idle"] = idle_cpu(slurm, corral, args.idle_seconds)
            print(f"   {r['idle']}", flush=True)
            print("2. one CLI call ...", flush=True)
            r["cli"] = cli_calls(slurm, corral, args.cli_runs)
            print(f"   {r['cli']}", flush=True)
            print("3. process exit -> finished visible ...", flush=True)
            r["exit"] = {"slurm": None, "corral": None}
            from _common import summary

            r["exit"]["slurm"] = summary(slurm_exit_latency(slurm, marks, args.samples))
            r["exit"]["corral"] = summary(corral_exit_latency(corral, marks, args.samples))
            print(f"   {r['exit']}", flush=True)
            print(f"6. cancel {args.cancel} running ...", flush=True)
            r["cancel"] = {"slurm": slurm_cancel(slurm, args.cancel)}
            r["cancel"]["corral"] = corral_cancel(corral, args.cancel)
            print(f"   {r['cancel']}", flush=True)
        finally:
            corral.stop()
    finally:
        slurm.cancel_all()
        slurm.stop()
    lines = table(r)
    lines += ["", "CPU per submission while submitting (ms; PostgreSQL's own backends not counted):"]
    for key, label in (("slurm", "Slurm"), ("corral", "Corral, SQLite"), ("corral_pg", "Corral, PostgreSQL")):
        if key in r["submit"]:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["submit"][key]["cpu_ms_per_submission"].items())
            lines.append(f"- {label}: {parts}")
    text = "\n".join([f"Corral vs Slurm, same machine, one run; {note}.", "", *lines])
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vs-slurm.md").write_text(text + "\n")
    (RESULTS / "vs-slurm.json").write_text(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
