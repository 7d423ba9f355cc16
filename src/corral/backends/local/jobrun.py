"""Runner for training-type and evaluation jobs: ``python -m corral.backends.local.jobrun``.

    python -m corral.backends.local.jobrun --output-dir DIR
        [--register-as NAME --store DIR --project P --kind training
         --base-model REF --dataset REF]
        [--metrics-file FILE]
        -- COMMAND [ARG ...]

Runs the user's command (same process group, same environment, which carries
``CORRAL_OUTPUT_DIR`` and friends, see ``corral.backends.recipes``), waits for it and
exits as it did (same code; killed by a signal: killed by the same signal). After a
successful run:

- with ``--register-as``: the files the command wrote to the output directory become a
  model in the store (``modelstore.install``: manifest, atomic rename), and the job's
  result names it. An empty output directory registers nothing (said in the output);
- with ``--metrics-file``: the JSON object in that file (an evaluation's metrics)
  becomes the job's result, ``{"metrics": {...}}``.

A failed run leaves its output directory in place for inspection.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from corral.backends.local import files as f
from corral.backends.local import modelstore


def run_command(argv: list[str]) -> int:
    """Run ``argv`` to its end; a SIGTERM to the group reaches it, not us."""
    received: list[int] = []

    def note(signum: int, _frame: Any) -> None:
        received.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, note)
    try:
        proc = subprocess.Popen(argv)
    except OSError as exc:
        print(f"could not start {argv[0]}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    while True:
        try:
            return proc.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue


def register(output_dir: Path, store: Path, name: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        print(f"nothing was written to {output_dir}; no model registered", flush=True)
        return None
    dest = store / modelstore.safe_name(name)
    written = modelstore.install(output_dir, dest, manifest)
    print(f"registered model {written['name']} ({written['files']} files, {written['bytes']} bytes) at {dest}",
          flush=True)
    return modelstore.result_of(written, dest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: jobrun [options] -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="corral-jobrun")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--register-as")
    parser.add_argument("--store", type=Path)
    parser.add_argument("--project")
    parser.add_argument("--kind", default="training")
    parser.add_argument("--base-model")
    parser.add_argument("--dataset")
    parser.add_argument("--metrics-file", type=Path)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        print("jobrun: no command given", file=sys.stderr)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    code = run_command(command)
    if code < 0:  # killed by a signal: die the same way, so the supervisor sees it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    if code != 0:
        return code
    result: dict[str, Any] = {}
    try:
        if args.metrics_file is not None and args.metrics_file.exists():
            metrics = json.loads(args.metrics_file.read_text())
            result["metrics"] = metrics
            print(f"metrics: {json.dumps(metrics)[:500]}", flush=True)
        if args.register_as and args.store is not None:
            registered = register(args.output_dir, args.store, args.register_as, {
                "project": args.project, "kind": args.kind, "source": None, "base_model": args.base_model,
                "dataset": args.dataset, "workload_id": _int_env("CORRAL_WORKLOAD_ID"),
                "component_id": _int_env("CORRAL_COMPONENT_ID"),
            })
            if registered:
                result.update(registered)
    except (OSError, ValueError) as exc:
        print(f"the command succeeded but its output could not be recorded: {exc}", file=sys.stderr, flush=True)
        return 1
    if result:
        f.write_result(result)
    return 0


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


if __name__ == "__main__":
    sys.exit(main())
