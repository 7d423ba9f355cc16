"""`corral workloads export`: the Workloads table as CSV (every matching row, all pages)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from corral.cli import config
from corral.cli.output import api_errors


@api_errors
def workloads_export(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name; default: every project "
                                                                          "you can see.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name contains (case-insensitive).")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", "-t", help="Workload type (repeatable).")] = None,
    statuses: Annotated[list[str] | None, typer.Option("--status", "-s", help="Status (repeatable); default: all "
                                                       "but Deleted.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name.")] = None,
    created_by: Annotated[str | None, typer.Option("--created-by", help="Creator's email.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="As `ls` takes it; prefix '-' for descending.")] = "-created_at",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: standard "
                                                                  "output).", dir_okay=False)] = None,
) -> None:
    """Every workload the filters match, as CSV (the Workloads page's Export CSV): id, name,
    type, project, cluster, gpu, cpu_cores, memory_bytes, status, status_reason,
    created_by, created_at."""
    with config.client() as client:
        pieces = client.export_workloads_csv(project=project, sort=sort, name=name, types=types, statuses=statuses,
                                             cluster=cluster, created_by=created_by)
        if out is None:
            for piece in pieces:
                sys.stdout.write(piece)
            sys.stdout.flush()
            return
        # Written aside and renamed once whole: an error midway leaves no half a file.
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
        try:
            with partial.open("w", encoding="utf-8", newline="") as f:
                for piece in pieces:
                    f.write(piece)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    print(f"wrote {out}", file=sys.stderr)
