"""What one CLI call costs, beside `python -c pass` (and Slurm's `squeue` where a Slurm answers).

    .venv/bin/python bench/cli_startup.py [--runs 21] [--compare-src DIR]

Starts `corral serve` on a fresh SQLite data dir (as bench/agent_latency.py does), then runs
each command --runs times, interleaved (one of each per round, so that a busy moment of the
machine hits all of them alike), and prints the median wall time, the median CPU time
(user + system, steadier than wall time on a shared machine) and the ratio of each to
`python -c pass` run by the same interpreter (the venv's; the target is <= 5x):

    python -c pass | import typer | a Typer app | corral --help | corral workloads ls [--json]
    | corral workloads submit ... | squeue

The corral commands run twice: in place (CORRAL_CLI_WARM=0: the process imports and runs
everything itself, as every call did before the warm process) and warm (the call is
handed to the warm process `corral.cli.entry` leaves behind; the first round, which starts
it, is not counted). A warm call's CPU time includes its child of the warm process.

`import typer` and "a Typer app" (one command, three options, run with one of them given:
Typer 0.29 builds a pydantic validator per option) are the floor any Typer command pays.

`squeue` is measured only when it is installed and a Slurm controller answers it (this
script never starts Slurm). --compare-src DIR measures the same corral commands with
PYTHONPATH=DIR too, e.g. the tree before a change:

    git archive <commit> src | tar -x -C /tmp/corral-before
    .venv/bin/python bench/cli_startup.py --compare-src /tmp/corral-before/src

Last, where the time of `corral workloads ls` goes: `python -X importtime`'s self times
summed per top-level package (shares of the import time; importtime itself adds overhead).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from _common import free_port, machine_note

CORRAL = Path(sys.executable).parent / "corral"
TYPER_APP = """
import typer
app = typer.Typer()
@app.command()
def ls(project: str | None = typer.Option(None), page: int = typer.Option(1),
       json_: bool = typer.Option(False, "--json")) -> None:
    print(project, page, json_)
app()
"""


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    # Each server its own work area, reachable by the projects' OS users (the data dir is 0700).
    work_root = Path(tempfile.mkdtemp(prefix="corral-cli-bench-work-"))
    work_root.chmod(0o711)
    env.update(CORRAL_DATA_DIR=str(data_dir), CORRAL_WORKLOAD_ROOT=str(work_root), CORRAL_LOG_LEVEL="warning")
    log = (data_dir / "server.log").open("ab")
    proc = subprocess.Popen([str(CORRAL), "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"`corral serve` exited with {proc.returncode}:\n{(data_dir / 'server.log').read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        sys.exit("`corral serve` did not answer /healthz within 60 s")
    return proc, url, (data_dir / "admin-token").read_text().strip(), work_root


WARM_PATTERN = "corral.cli.warm /nonexistent/"  # this run's warm process (main sets it)


def warm_children_cpu_ms() -> float:
    """CPU time of the calls the `corral` command's warm processes ran (children they reaped)."""
    found = subprocess.run(["pgrep", "-f", WARM_PATTERN], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in found:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run; the command must succeed. The CPU time counts the
    calling process and, for a call a warm process ran, that call's child of it."""
    before, warm_before = resource.getrusage(resource.RUSAGE_CHILDREN), warm_children_cpu_ms()
    t0 = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    wall = (time.perf_counter() - t0) * 1000
    after, warm_after = resource.getrusage(resource.RUSAGE_CHILDREN), warm_children_cpu_ms()
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
    return wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000 + warm_after - warm_before


def slurm_answers() -> str | None:
    """None if `squeue` runs against a live controller, else why not."""
    if shutil.which("squeue") is None:
        return "squeue is not installed"
    try:
        result = subprocess.run(["squeue"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "squeue did not answer within 10 s"
    if result.returncode != 0:
        return f"no Slurm controller answers squeue ({(result.stderr.strip().splitlines() or ['?'])[-1]})"
    return None


def import_shares(argv: list[str], env: dict[str, str]) -> list[tuple[str, float]]:
    """`python -X importtime` self times of one run, summed per top-level package (ms)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True,
                            timeout=60)
    per_root: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|")
        self_us, root = int(parts[0].split(":")[1]), parts[2].strip().split(".")[0]
        label = root if root not in sys.stdlib_module_names and not root.startswith("_") else "stdlib"
        per_root[label] += self_us / 1000
    return sorted(per_root.items(), key=lambda kv: -kv[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--compare-src", type=Path, help="also run the corral commands with PYTHONPATH=DIR")
    args = parser.parse_args()
    print(machine_note(), flush=True)

    data_dir = Path(tempfile.mkdtemp(prefix="corral-cli-bench-"))
    proc, url, token, work_root = start_server(data_dir)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_") and k != "PYTHONPATH"}
    # A runtime directory of the run's own: its warm process is this run's, stopped at the end.
    runtime = tempfile.mkdtemp(prefix="cw-bench-", dir="/tmp")
    base_env.update(CORRAL_SERVER=url, CORRAL_TOKEN=token, CORRAL_CONFIG=str(data_dir / "cli-config.json"),
                    COLUMNS="80", NO_COLOR="1", XDG_RUNTIME_DIR=runtime)
    global WARM_PATTERN
    WARM_PATTERN = f"corral.cli.warm {runtime}/"
    trees = {"": base_env}
    if args.compare_src:
        trees[f" [{args.compare_src}]"] = {**base_env, "PYTHONPATH": str(args.compare_src.resolve())}
    try:
        submit = [str(CORRAL), "workloads", "submit", "--type", "custom", "--project", "default",
                  "--command", "true", "--name"]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {"python -c pass": ([sys.executable, "-c", "pass"],
                                                                                    base_env)}
        commands["python -c 'import typer'"] = ([sys.executable, "-c", "import typer"], base_env)
        commands["a Typer app, 3 options"] = ([sys.executable, "-c", TYPER_APP, "--project", "x"], base_env)
        for suffix, env in trees.items():
            in_place = {**env, "CORRAL_CLI_WARM": "0"}
            commands[f"corral --help{suffix}"] = ([str(CORRAL), "--help"], env)
            commands[f"corral workloads ls, in place{suffix}"] = ([str(CORRAL), "workloads", "ls"], in_place)
            commands[f"corral workloads ls --json, in place{suffix}"] = ([str(CORRAL), "workloads", "ls", "--json"],
                                                                          in_place)
            commands[f"corral workloads submit, in place{suffix}"] = (submit, in_place)
            if "PYTHONPATH" not in env:  # the warm process: of this tree only
                commands["corral workloads ls, warm"] = ([str(CORRAL), "workloads", "ls"], env)
                commands["corral workloads ls --json, warm"] = ([str(CORRAL), "workloads", "ls", "--json"], env)
                commands["corral workloads submit, warm"] = (submit, env)
        slurm = slurm_answers()
        if slurm is None:
            commands["squeue"] = (["squeue"], base_env)

        names = (f"cli-bench-{n}" for n in range(1_000_000))  # each submission a workload of its own
        samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for _ in range(args.runs + 1):  # the first round warms the page cache and .pyc files
            for label, (argv, env) in commands.items():
                samples[label].append(timed(argv + ([next(names)] if argv is submit else []), env))
        samples = {label: runs[1:] for label, runs in samples.items()}

        base_wall = statistics.median(w for w, _ in samples["python -c pass"])
        base_cpu = statistics.median(c for _, c in samples["python -c pass"])
        print(f"\n{args.runs} runs each, medians; ratios to `{Path(sys.executable).name} -c pass` (target <= 5x)\n")
        print("| command | wall ms | x pass | CPU ms | x pass |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, runs in samples.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"| {label} | {wall:.1f} | {wall / base_wall:.1f}x | {cpu:.1f} | {cpu / base_cpu:.1f}x |")
        if slurm is not None:
            print(f"| squeue | - | - | - | - |  (skipped: {slurm})")
        system_python = shutil.which("python3", path="/usr/bin")
        if system_python:
            sys_wall = statistics.median(timed([system_python, "-c", "pass"], base_env)[0] for _ in range(args.runs))
            print(f"\n(for reference: {system_python} -c pass {sys_wall:.1f} ms wall)")

        for suffix, env in trees.items():
            shares = import_shares([str(CORRAL), "workloads", "ls"], {**env, "CORRAL_CLI_WARM": "0"})
            total = sum(ms for _, ms in shares)
            print(f"\nwhere `corral workloads ls`{suffix} spends its import time (-X importtime self times, "
                  f"{total:.0f} ms in all):")
            print("  " + ", ".join(f"{root} {ms / total:.0%}" for root, ms in shares[:10] if ms / total >= 0.01))
    finally:
        subprocess.run(["pkill", "-TERM", "-f", WARM_PATTERN], check=False)
        shutil.rmtree(runtime, ignore_errors=True)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work_root, ignore_errors=True)


if __name__ == "__main__":
    main()
