"""`corral clusters ...` and `corral quotas ...`: where workloads run, how healthy each
cluster is, and what each project may use there (over HTTP, through ``corral.client``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.cli import config, output
from corral.cli.output import (
    EXIT_USAGE,
    JsonOption,
    api_errors,
    cells,
    fail,
    info,
    key_values,
    print_json,
    resource,
    resources_line,
    status_text,
    table,
    when,
)
from corral.cli.tables import Col
from corral.client import Cluster, Quota
from corral.domain.resources import RESOURCE_NAMES

clusters_app = typer.Typer(help="Clusters workloads run on.", no_args_is_help=True)
quotas_app = typer.Typer(help="Quotas of projects on clusters.", no_args_is_help=True)


# --------------------------------------------------------------------------- health

def _ago(at: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


if TYPE_CHECKING:  # rich is imported where people's output is made: not for --json
    from rich.text import Text


def health(cluster: Cluster) -> Text:
    """A cluster's health as people read it: healthy, unhealthy (since when), or never heard from."""
    if cluster.status == "verifying" and cluster.last_heartbeat_at is None:
        return status_text("verifying", "never heard from")
    if cluster.status == "unhealthy" and cluster.last_heartbeat_at is not None:
        return status_text("unhealthy", f"unhealthy (last heard {_ago(cluster.last_heartbeat_at)})")
    return status_text(cluster.status)


def health_warning(cluster: Cluster) -> str | None:
    """What a workload placed on ``cluster`` should know, if the cluster is not healthy."""
    if cluster.status == "healthy":
        return None
    if cluster.last_heartbeat_at is None:
        return (f"cluster {cluster.name} has never been heard from (no agent has reported for it): workloads "
                "placed there wait until its agent runs (`corral agent`)")
    return (f"cluster {cluster.name} is {cluster.status}: its agent was last heard {_ago(cluster.last_heartbeat_at)}"
            "; workloads placed there wait until it reports again")


# --------------------------------------------------------------------------- clusters

@clusters_app.command("ls")
@api_errors
def clusters_ls(json_: JsonOption = False) -> None:
    """List clusters (members see those their projects have a quota on)."""
    with config.client() as client:
        clusters = client.list_clusters()
    if json_:
        print_json(clusters)
        return
    from rich.text import Text

    result = table("Name", Col("Kind", 3), Col("Health"), Col("GPU", 1), Col("CPU", 1), Col("Memory", 1),
                   Col("Nodes", 4), Col("Last heartbeat", 2))
    for c in clusters:
        result.add_row(*cells(c.name, c.kind, health(c), resource("gpu", c.capacity.get("gpu", 0)),
                              resource("cpu", c.capacity.get("cpu", 0)),
                              resource("memory", c.capacity.get("memory", 0)), len(c.nodes),
                              when(c.last_heartbeat_at) if c.last_heartbeat_at else "never"))
    console = output.out()
    console.print(result)
    if any(c.status != "healthy" for c in clusters):
        console.print(Text("Workloads placed on a cluster that is not healthy wait until its agent reports.",
                           style="dim"))


clusters_app.command("list", hidden=True)(clusters_ls)


@clusters_app.command("get")
@api_errors
def clusters_get(name: Annotated[str, typer.Argument(help="Cluster name.")], json_: JsonOption = False) -> None:
    """Show a cluster: health, capacity and nodes."""
    from rich.text import Text

    with config.client() as client:
        cluster = client.get_cluster(name)
    if json_:
        print_json(cluster)
        return
    console = output.out()
    console.print(key_values([
        ("Cluster", cluster.name), ("Kind", cluster.kind), ("Description", cluster.description or "-"),
        ("Health", health(cluster)), ("Capacity", resources_line(cluster.capacity)),
        ("Last heartbeat", when(cluster.last_heartbeat_at) if cluster.last_heartbeat_at else "never"),
        ("Created at", when(cluster.created_at)),
    ]))
    warning = health_warning(cluster)
    if warning:
        console.print(Text(warning[0].upper() + warning[1:] + ".", style="yellow"))
    if cluster.nodes:
        nodes = table("Node", "GPU", "CPU", "Memory", "GPU model", title="Nodes")
        for node in cluster.nodes:
            if not isinstance(node, dict):
                continue
            capacity = node.get("capacity") or {}
            nodes.add_row(*cells(node.get("name"), resource("gpu", capacity.get("gpu", 0)),
                                 resource("cpu", capacity.get("cpu", 0)), resource("memory", capacity.get("memory", 0)),
                                 " ".join(filter(None, (node.get("gpu_vendor"), node.get("gpu_model")))) or "-"))
        console.print(nodes)


@clusters_app.command("create")
@api_errors
def clusters_create(
    name: Annotated[str, typer.Argument(help="DNS label, 2-41 characters.")],
    kind: Annotated[str, typer.Option("--kind", help="local | kubernetes | slurm")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    gpu: Annotated[int | None, typer.Option("--gpu", min=0, metavar="N",
                                            help="Expected GPUs until the agent reports.")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", metavar="CPU", help="Expected CPU cores (2, 0.5, 500m).")] = None,
    memory: Annotated[str | None, typer.Option("--memory", metavar="SIZE", help="Expected memory (512Gi).")] = None,
    ephemeral_storage: Annotated[str | None, typer.Option("--ephemeral-storage", metavar="SIZE",
                                                          help="Expected ephemeral storage (10Ti).")] = None,
    json_: JsonOption = False,
) -> None:
    """Register a cluster (admins). Prints its agent's token once, on stdout."""
    capacity = {k: v for k, v in {"gpu": gpu, "cpu": cpu, "memory": memory,
                                  "ephemeral_storage": ephemeral_storage}.items() if v is not None}
    with config.client() as client:
        cluster = client.create_cluster(name, kind, description=description, capacity=capacity or None)
    if json_:
        print_json(cluster)
        return
    info(f"Registered cluster {cluster.name} ({cluster.kind}), status {cluster.status} until its agent reports. "
         "Its agent token is shown only this once:")
    typer.echo(cluster.agent_token)


@clusters_app.command("delete")
@api_errors
def clusters_delete(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonOption = False,
) -> None:
    """Remove a registered cluster (admins): its quotas go with it; refused while it has workloads."""
    with config.client() as client:
        if not yes:
            cluster = client.get_cluster(name)
            typer.confirm(f"Remove cluster {cluster.name} ({cluster.kind}, {health(cluster).plain})?", abort=True,
                          err=True)
        client.delete_cluster(name)
    if json_:
        print_json({"cluster": name, "deleted": True})
        return
    output.out().print(f"Removed cluster {name}.", markup=False)


clusters_app.command("rm", hidden=True)(clusters_delete)


# --------------------------------------------------------------------------- quotas

def quota_table(quotas: list[Quota]) -> Any:
    from rich.text import Text

    result = table("Cluster", "Resource", Col("Guaranteed", 1), Col("Limit", 1), Col("Used", 1), Col("Borrowed", 4),
                   Col("Available", 2), Col("Queued", 3), title="Quotas")
    for q in quotas:
        for i, name in enumerate(RESOURCE_NAMES):
            over = name in q.over_limit
            used = Text(resource(name, q.used.get(name, 0)), style="red" if over else "")
            result.add_row(*cells(q.cluster if i == 0 else "", output.RESOURCE_LABELS[name],
                                  resource(name, q.guaranteed.get(name, 0)), resource(name, q.limit.get(name)),
                                  used, resource(name, q.borrowed.get(name, 0)),
                                  resource(name, q.available.get(name)), q.queued if i == 0 else ""),
                           end_section=i == len(RESOURCE_NAMES) - 1)
    return result


@quotas_app.command("ls")
@api_errors
def quotas_ls(
    project: Annotated[str | None, typer.Argument(help="Project name (or give it with -p).", show_default=False)]
    = None,
    project_option: Annotated[str | None, typer.Option("--project", "-p", help="Project name.")] = None,
    json_: JsonOption = False,
) -> None:
    """A project's quotas: guaranteed, limit, used, borrowed and available on each cluster."""
    if project and project_option and project != project_option:
        fail(f"two projects given ({project!r} and -p {project_option!r}): give one", code=EXIT_USAGE)
    project = project or project_option
    if not project:
        fail("give the project: `corral quotas ls PROJECT` or `corral quotas ls -p PROJECT`", code=EXIT_USAGE)
    with config.client() as client:
        quotas = client.list_quotas(project)
    if json_:
        print_json(quotas)
        return
    if not quotas:
        output.out().print(f"Project {project} has no quota on any cluster.", markup=False)
        return
    output.out().print(quota_table(quotas))


quotas_app.command("list", hidden=True)(quotas_ls)


_UNBOUNDED = ("unbounded", "none", "null", "-")


@quotas_app.command("set")
@api_errors
def quotas_set(
    project: Annotated[str, typer.Argument(help="Project name.")],
    cluster: Annotated[str, typer.Argument(help="Cluster name.")],
    gpu: Annotated[str | None, typer.Option("--gpu", metavar="N", help="Guaranteed GPUs (a whole number).")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", metavar="CPU",
                                            help="Guaranteed CPU: cores (8, 0.5) or millicores (500m).")] = None,
    memory: Annotated[str | None, typer.Option("--memory", metavar="SIZE",
                                               help="Guaranteed memory: bytes, or 64Gi, 500M.")] = None,
    ephemeral_storage: Annotated[str | None, typer.Option("--ephemeral-storage", metavar="SIZE",
                                                          help="Guaranteed ephemeral storage: bytes, or 100Gi.")]
    = None,
    limit_gpu: Annotated[str | None, typer.Option("--limit-gpu", metavar="N",
                                                  help="GPU limit, or 'unbounded'.")] = None,
    limit_cpu: Annotated[str | None, typer.Option("--limit-cpu", metavar="CPU",
                                                  help="CPU limit (2, 500m), or 'unbounded'.")] = None,
    limit_memory: Annotated[str | None, typer.Option("--limit-memory", metavar="SIZE",
                                                     help="Memory limit (16Gi), or 'unbounded'.")] = None,
    limit_ephemeral_storage: Annotated[str | None, typer.Option("--limit-ephemeral-storage", metavar="SIZE",
                                                                help="Ephemeral storage limit, or 'unbounded'.")]
    = None,
    unbounded: Annotated[bool, typer.Option("--unbounded", help="No limit: borrow any idle capacity.")] = False,
    hard: Annotated[bool, typer.Option("--hard", help="Each limit not given equals its guarantee.")] = False,
    json_: JsonOption = False,
) -> None:
    """Set a project's quota on a cluster (admins).

    Amounts are what you would write: CPU as cores (2, 0.5) or millicores (500m), memory and
    storage as bytes or 16Gi, 500M; the server reads them. An option left out keeps its current
    value (a new quota: guarantee 0, and each limit equal to its guarantee). A limit equal to its
    guarantee follows it when the guarantee changes; 'unbounded' lifts a dimension's limit;
    --unbounded lifts them all, --hard makes each limit not given equal its guarantee.
    """
    given_guarantee = {"gpu": gpu, "cpu": cpu, "memory": memory, "ephemeral_storage": ephemeral_storage}
    given_limits = {k: v for k, v in {"gpu": limit_gpu, "cpu": limit_cpu, "memory": limit_memory,
                                      "ephemeral_storage": limit_ephemeral_storage}.items() if v is not None}
    if unbounded and (given_limits or hard):
        fail("give --unbounded, --hard or --limit-* options, not several", code=EXIT_USAGE)
    guaranteed = {name: value.strip() for name, value in given_guarantee.items() if value is not None}
    limit: dict[str, Any] | str | None = "unbounded" if unbounded else {
        name: None if text.strip().lower() in _UNBOUNDED else text.strip() for name, text in given_limits.items()}
    with config.client() as client:
        # Only what was given is sent: the server keeps the rest in the same transaction as
        # the write (no read-then-write here that a concurrent change could slip between).
        quota = client.update_quota(project, cluster, guaranteed, limit or None, hard=hard)
    if json_:
        print_json(quota)
        return
    output.out().print(quota_table([quota]))
