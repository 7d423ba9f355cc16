"""`corral workloads ...`: the Workloads table, details, submit, delete and stats (over HTTP)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from corral.cli import config, output
from corral.cli.tables import Col
from corral.cli.output import (
    EXIT_USAGE,
    JsonOption,
    api_errors,
    cells,
    duration,
    fail,
    key_values,
    print_json,
    resource,
    resources_line,
    status_text,
    table,
    when,
)
from corral.client import CorralAPIError, WorkloadPage
from corral.domain.names import WORKLOAD_NAME_RULE
from corral.domain.statuses import FINISHED_STATUSES, WorkloadStatus
from corral.domain.workload_types import WorkloadType

workloads_app = typer.Typer(help="Workloads: list, inspect, submit, delete.", no_args_is_help=True)

ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project name.")]


# --------------------------------------------------------------------------- ls

@workloads_app.command("ls")
@api_errors
def workloads_ls(
    project: ProjectOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Name contains (case-insensitive).")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", "-t", help="Workload type (repeatable), e.g. "
                                                                         "Fine-Tuning or inference.")] = None,
    statuses: Annotated[list[str] | None, typer.Option("--status", "-s", help="Status (repeatable), e.g. Running "
                                                       "or 'Delete Failed'; default: all but Deleted.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name.")] = None,
    created_by: Annotated[str | None, typer.Option("--created-by", help="Creator's email.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="name, type, cluster, gpu, cpu, memory, status, created_by "
                                                     "or created_at; prefix '-' for descending.")] = "-created_at",
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=100)] = 20,
    json_: JsonOption = False,
) -> None:
    """The Workloads table: filter, sort and page through workloads."""
    with config.client() as client:
        result = client.list_workloads(project=project, page=page, page_size=page_size, sort=sort, name=name,
                                       types=types, statuses=statuses, cluster=cluster, created_by=created_by)
    if json_:
        print_json(result)
        return
    from rich.text import Text  # not for --json (CLI start-up time)

    console = output.out()
    if result.items:
        console.print(_workload_table(result, show_project=project is None))
    console.print(Text(_footer(result), style="dim"))


def _workload_table(result: WorkloadPage, show_project: bool) -> Any:
    # In an 80-column terminal: ID, name, status and why first; then where and how big.
    columns = [Col("ID"), Col("Name"), Col("Type", 4)] + ([Col("Project", 5)] if show_project else []) + [
        Col("Cluster", 2), Col("GPU", 3), Col("CPU", 3), Col("Memory", 3), Col("Status"), Col("Created by", 7),
        Col("Created at", 6), Col("Why", 1)]
    rows = table(*columns)
    for w in result.items:
        values: list[Any] = [w.id, w.name, w.type_label] + ([w.project] if show_project else [])
        values += [w.cluster, resource("gpu", w.resources.get("gpu", 0)), resource("cpu", w.resources.get("cpu", 0)),
                   resource("memory", w.resources.get("memory", 0)), status_text(w.status, w.status_label),
                   w.created_by, when(w.created_at), _why(w.status, w.status_reason)]
        rows.add_row(*cells(*values))
    return rows


def _why(status: str, reason: str) -> str:
    """The reason where it explains something (waiting, failing); "-" while all is well."""
    return reason if reason and status not in ("Running", "Complete", "Deleted") else "-"


def _footer(result: WorkloadPage) -> str:
    total = f"{result.total}" if result.total_exact else f"at least {result.total}"
    if not result.items:
        if result.page > 1 and result.total:
            return f"No workloads on page {result.page} (total {total})."
        return "No workloads match."
    footer = f"Showing {result.first_index} to {result.last_index} of {total}"
    if result.last_index < result.total or not result.total_exact:
        footer += f" (next: --page {result.page + 1})"
    return footer


workloads_app.command("list", hidden=True)(workloads_ls)


# --------------------------------------------------------------------------- get

@workloads_app.command("get")
@api_errors
def workloads_get(workload_id: Annotated[int, typer.Argument(help="Workload id.")], json_: JsonOption = False) -> None:
    """Details of a workload: who and when, status and reason, queue, time, components, events."""
    with config.client() as client:
        w = client.get_workload(workload_id)
    if json_:
        print_json(w)
        return
    status = status_text(w.status, w.status_label)
    if w.status_reason:
        status.append(f" ({w.status_reason})", style="")
    rows: list[tuple[str, Any]] = [
        ("Workload", f"{w.id}  {w.name}"),
        ("Type", w.type_label),
        ("Project", w.project),
        ("Cluster", w.cluster),
        ("Status", status),
        ("Status since", when(w.status_changed_at)),
        ("Created", f"{when(w.created_at)} by {w.created_by}"),
        ("Priority", f"{w.priority}, {'preemptible' if w.preemptible else 'not preemptible'}"),
        ("Resources", resources_line(w.resources, skip_zero=True)),
    ]
    if w.time_limit:
        rows.append(("Time limit", w.time_limit))
    if w.queue_position is not None:
        rows.append(("Queue position", f"{w.queue_position.position} of {w.queue_position.of}"))
    rows += [("Waited", duration(w.wait_seconds)), ("Ran", duration(w.run_seconds))]
    for label, value in (("Admitted", w.admitted_at), ("First running", w.first_running_at),
                         ("Finished", w.finished_at), ("Delete requested", w.delete_requested_at)):
        if value is not None:
            rows.append((label, when(value)))
    for key, value in w.endpoints.items():
        rows.append((f"Endpoint {key}", value if isinstance(value, str) else json.dumps(value)))
    if w.open_url:
        rows.append(("Open in a browser", w.open_url))
    console = output.out()
    console.print(key_values(rows))
    if w.components:
        comps = table("ID", "Kind", "Name", "Status", "Reason", "GPU", "CPU", "Memory", "Observed at",
                      title="Components")
        for c in w.components:
            comps.add_row(*cells(c.id, c.kind, c.name, status_text(c.status), c.reason or "-",
                                 resource("gpu", c.resources.get("gpu", 0)), resource("cpu", c.resources.get("cpu", 0)),
                                 resource("memory", c.resources.get("memory", 0)), when(c.observed_at)))
        console.print(comps)
    _print_results(w)
    if w.events:
        events = table("At", "By", "Event", "Message", title="Events")
        for e in w.events:
            events.add_row(*cells(when(e.at), e.actor, e.kind, e.message))
        console.print(events)


def _print_results(w: Any) -> None:
    """What the workload left: the model it registered, its metrics, a refused result."""
    console = output.out()
    for c in w.components:
        result = c.result or {}
        if result.get("model"):
            console.print(key_values([("Model registered", f"{result['model']}  (corral models show {result['model']} "
                                                           f"-p {w.project})")]))
        if result.get("error"):
            console.print(key_values([("Result", result["error"])]))
    if w.metrics:
        metrics = table("Metric", Col("Value", 0), title="Metrics")
        for name, value in w.metrics.items():
            metrics.add_row(*cells(name, f"{value:.6g}" if isinstance(value, float) else value))
        console.print(metrics)


# --------------------------------------------------------------------------- submit

def _read_spec_file(path: str) -> dict[str, Any]:
    import yaml  # here, not at the top: only submissions need it (CLI start-up time)

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", code=EXIT_USAGE)
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        fail(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}", code=EXIT_USAGE)
    if data is None:
        return {}
    if not isinstance(data, dict):
        fail(f"{path} must hold one workload spec (a mapping), not {type(data).__name__}", code=EXIT_USAGE)
    return data


# Fields whose values are always text: `--set env.DEBUG=1` means the string "1".
_TEXT_FIELDS = ("name", "env", "secrets")


def _set_path(spec: dict[str, Any], assignment: str) -> None:
    """``--set a.b=value``: the value is read as YAML (2, true, [a, b]; quote to keep a
    string), except under name, env and secrets, where it is taken as it is."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not part for part in parts):
        fail(f"--set expects key=value (dots for nested keys, e.g. env.HF_HOME=/data), got {assignment!r}",
             code=EXIT_USAGE)
    value: Any = raw
    if parts[0] not in _TEXT_FIELDS and raw.strip():
        import yaml  # here, not at the top: only submissions need it (CLI start-up time)

        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
    node = spec
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


@workloads_app.command("submit")
@api_errors
def workloads_submit(
    file: Annotated[str | None, typer.Option("--file", "-f", help="A workload spec in YAML or JSON ('-': stdin). "
                                                                  "Options below override its fields.")] = None,
    type_: Annotated[str | None, typer.Option("--type", "-t", help="Workload type: " + ", ".join(
        f"{t.label} ({t.value})" for t in WorkloadType))] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help=f"Workload name: {WORKLOAD_NAME_RULE}.")] = None,
    project: ProjectOption = None,
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Default: the first cluster with room "
                                                                        "in the project's quota.")] = None,
    gpu: Annotated[int | None, typer.Option("--gpu", min=0, metavar="N", help="GPUs per replica.")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", metavar="CPU",
                                            help="CPU per replica: cores or millicores (500m).")] = None,
    memory: Annotated[str | None, typer.Option("--memory", metavar="SIZE", help="Memory per replica (16Gi).")] = None,
    image: Annotated[str | None, typer.Option("--image")] = None,
    command: Annotated[str | None, typer.Option("--command", help="The command to run.")] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="low | medium | high")] = None,
    time_limit: Annotated[str | None, typer.Option("--time-limit", metavar="DURATION",
                                                   help="Stop it (Failed) after it ran this long: 2h, 90m, "
                                                        "1h30m, 3600s.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Any other field: key=value, dotted for "
                                                                 "nested (repeatable): --set dataset=s3://b/d "
                                                                 "--set env.DEBUG=1.")] = None,
    json_: JsonOption = False,
) -> None:
    """Submit a workload, from a spec file, options, or both."""
    spec: dict[str, Any] = _read_spec_file(file) if file else {}
    for key, value in (("type", type_), ("name", name), ("project", project), ("cluster", cluster),
                       ("image", image), ("command", command), ("priority", priority), ("time_limit", time_limit)):
        if value is not None:
            spec[key] = value
    requested = {k: v for k, v in (("gpu", gpu), ("cpu", cpu), ("memory", memory)) if v is not None}
    if requested:
        resources = spec.get("resources")
        spec["resources"] = {**(resources if isinstance(resources, dict) else {}), **requested}
    for assignment in sets or []:
        _set_path(spec, assignment)
    if not spec.get("type"):
        fail("give the workload type with --type or `type:` in the file; one of: "
             + ", ".join(t.value for t in WorkloadType), field="type", code=EXIT_USAGE)
    try:
        spec["type"] = WorkloadType.parse(str(spec["type"])).value
    except ValueError as exc:
        fail(str(exc), field="type", code=EXIT_USAGE)
    with config.client() as client:
        created = client.submit_workload(spec)
        if json_:
            print_json(created)
            return
        warning = _cluster_warning(client, created.cluster) if created.status in ("Added", "Pending") else None
    from rich.text import Text  # not for --json (CLI start-up time)

    line = Text(f"Submitted workload {created.id} ({created.name!r}, {created.type_label}) to cluster "
                f"{created.cluster} in project {created.project}: ")
    line.append_text(status_text(created.status, created.status_label))
    if created.status_reason:
        line.append(f" ({created.status_reason})")
    output.out().print(line)
    if warning:
        output.err().print(Text(f"Note: {warning}.", style="yellow"))


def _cluster_warning(client: Any, cluster: str) -> str | None:
    """Why a workload on ``cluster`` may wait for good: the cluster is not healthy."""
    from corral.cli.clusters import health_warning

    try:
        return health_warning(client.get_cluster(cluster))
    except CorralAPIError:
        return None  # a cluster this user cannot see: the workload's reason speaks for it


# --------------------------------------------------------------------------- delete

# One workload or many (ids or filters): in a module of its own, this one being long.
from corral.cli.workloads_delete import workloads_delete  # noqa: E402

workloads_app.command("delete")(workloads_delete)
workloads_app.command("rm", hidden=True)(workloads_delete)

from corral.cli.workloads_export import workloads_export  # noqa: E402

workloads_app.command("export")(workloads_export)


# --------------------------------------------------------------------------- stats

@workloads_app.command("stats")
@api_errors
def workloads_stats(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    json_: JsonOption = False,
) -> None:
    """How many workloads a project has, per status and per type."""
    with config.client() as client:
        stats = client.workload_stats(project)
    if json_:
        print_json(stats)
        return
    console = output.out()
    by_status = table("Status", "Count")
    for status in WorkloadStatus:
        count = stats.by_status.get(status.value, 0)
        if count:
            by_status.add_row(*cells(status_text(status.value, status.label), count))
    by_type = table("Type", "Count")
    for kind in WorkloadType:
        count = stats.by_type.get(kind.value, 0)
        if count:
            by_type.add_row(*cells(kind.label, count))
    if not stats.total:
        console.print(f"Project {stats.project} has no workloads.", markup=False)
        return
    console.print(f"Workloads of project {stats.project}: {stats.total}", markup=False)
    console.print(by_status)
    console.print(by_type)


# --------------------------------------------------------------------------- logs

@workloads_app.command("logs")
@api_errors
def workloads_logs(
    workload_id: Annotated[int, typer.Argument(help="Workload id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing output until it ends "
                                         "(Ctrl-C to stop).")] = False,
    tail: Annotated[int, typer.Option("--tail", "-n", min=0, max=100_000, help="Last lines to start with.")] = 100,
    component: Annotated[int | None, typer.Option("--component", help="Component id (default: the main one).")]
    = None,
) -> None:
    """Print a workload's output (from its cluster's agent), as `tail` would. With --follow, a
    workload that has not started yet is waited for."""
    with config.client() as client:
        try:
            if follow:
                _follow_once_started(client, workload_id, tail, component)
                return
            for piece in client.workload_logs(workload_id, tail=tail, follow=follow, component=component):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


LOGS_WAIT_POLL_S = 1.0
# Never changes again by itself: a workload in one of these that has no output never will.
_ENDED = {s.value for s in FINISHED_STATUSES} | {WorkloadStatus.DELETE_FAILED.value}


def _not_started(exc: CorralAPIError) -> bool:
    """The API's answer for a workload with no output yet: not placed on its cluster (409),
    or placed but its agent has recorded nothing yet (404)."""
    return exc.code == "not_started" or (exc.status_code == 404 and exc.message.startswith("no output recorded"))


def _follow_once_started(client: Any, workload_id: int, tail: int, component: int | None) -> None:
    """Follow the output; while the workload has not started, say so on stderr (once per
    status and reason) and poll; a workload that ends without starting ends the command
    with its status and reason (exit 0: that is no error of the command)."""
    said = None
    while True:
        try:
            for piece in client.workload_logs(workload_id, tail=tail, follow=True, component=component):
                sys.stdout.write(piece)
                sys.stdout.flush()
            return
        except CorralAPIError as exc:
            if not _not_started(exc):
                raise
        detail = client.get_workload(workload_id)
        status = WorkloadStatus.parse(detail.status)
        reason = f": {detail.status_reason}" if detail.status_reason else ""
        if detail.status in _ENDED:
            how = "ended with no output recorded" if detail.first_running_at else "ended without starting"
            output.err().print(f"workload {workload_id} {how} ({status.label}{reason})",
                               markup=False, highlight=False, soft_wrap=True)
            return
        if (detail.status, detail.status_reason) != said:
            said = (detail.status, detail.status_reason)
            output.err().print(f"waiting for workload {workload_id} to start ({status.label}{reason})",
                               markup=False, highlight=False, soft_wrap=True)
        time.sleep(LOGS_WAIT_POLL_S)
