"""Commands that talk to a Corral server over HTTP, through ``corral.client`` only:
login, projects, clusters and quotas. Workloads live in ``corral.cli.workloads``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

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
from corral.client import CorralAPIError, CorralClient, Quota, normalise_server
from corral.domain.resources import RESOURCE_NAMES

projects_app = typer.Typer(help="Projects and their members.", no_args_is_help=True)
clusters_app = typer.Typer(help="Clusters workloads run on.", no_args_is_help=True)
quotas_app = typer.Typer(help="Quotas of projects on clusters.", no_args_is_help=True)


# --------------------------------------------------------------------------- login

@api_errors
def login(
    server: Annotated[str, typer.Option("--server", envvar=config.SERVER_ENV,
                                        help="The server's URL, e.g. http://127.0.0.1:8000.")]
    = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option("--token", help="The API token (visible to other local users "
                                                              "in the process list; prefer --token-file).")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", exists=True, dir_okay=False, readable=True,
                                                    help="A file holding the API token.")] = None,
    json_: JsonOption = False,
) -> None:
    """Check a token with the server and remember both (without a token: asks for it)."""
    if token is not None and token_file is not None:
        fail("give --token or --token-file, not both", code=EXIT_USAGE)
    if token_file is not None:
        token = token_file.read_text().strip()
        if not token:
            fail(f"{token_file} is empty", code=EXIT_USAGE)
    elif token is None:
        token = typer.prompt("API token", hide_input=True)
    token = (token or "").strip()
    if not token:
        fail("no token given", code=EXIT_USAGE)
    try:
        url = normalise_server(server)
    except ValueError as exc:
        fail(f"bad server URL {server!r}: {exc}", code=EXIT_USAGE)
    try:
        client = CorralClient(url, token)
    except ValueError as exc:
        fail(str(exc), code=EXIT_USAGE)
    with client:
        try:
            me = client.me()
        except CorralAPIError as exc:
            if exc.status_code == 401:
                fail(f"{url} refused the token: {exc.message}")
            raise
    data = config.load()
    data.update(server=url, token=token)
    path = config.save(data)
    if json_:
        print_json({"server": url, "user": me.model_dump(mode="json"), "config": str(path)})
    else:
        output.out().print(f"Logged in to {url} as {me.email} ({me.role}). Credentials saved to {path}.",
                           markup=False)
    if os.environ.get(config.TOKEN_ENV):
        info(f"Note: {config.TOKEN_ENV} is set and takes precedence over the saved token.")


def logout(json_: JsonOption = False) -> None:
    """Forget the saved token."""
    forgotten = config.forget_token()
    if json_:
        print_json({"logged_out": forgotten is not None, "config": str(config.config_path())})
    elif forgotten is None:
        output.out().print("Not logged in: no saved token.", markup=False)
    else:
        path, server = forgotten
        output.out().print(f"Logged out{' of ' + server if server else ''}; removed the token from {path}.",
                           markup=False)
    if os.environ.get(config.TOKEN_ENV):
        info(f"Note: {config.TOKEN_ENV} is still set in this environment.")


@api_errors
def whoami(json_: JsonOption = False) -> None:
    """Show who the saved (or CORRAL_TOKEN) token belongs to."""
    with config.client() as client:
        me = client.me()
        server = client.base_url
    if json_:
        print_json({"server": server, **me.model_dump(mode="json")})
        return
    output.out().print(f"{me.email} ({me.role}) on {server}", markup=False)


# --------------------------------------------------------------------------- projects

@projects_app.command("ls")
@api_errors
def projects_ls(json_: JsonOption = False) -> None:
    """List the projects you can see (all of them, for an admin)."""
    with config.client() as client:
        projects = client.list_projects()
    if json_:
        print_json(projects)
        return
    result = table("Name", "Description", "Preemption policy", "Created at")
    for p in projects:
        result.add_row(*cells(p.name, p.description, p.preemption_policy, when(p.created_at)))
    output.out().print(result)


projects_app.command("list", hidden=True)(projects_ls)


@projects_app.command("get")
@api_errors
def projects_get(name: Annotated[str, typer.Argument(help="Project name.")], json_: JsonOption = False) -> None:
    """Show a project and its quotas."""
    with config.client() as client:
        project = client.get_project(name)
        quotas = client.list_quotas(name)
    if json_:
        print_json({**project.model_dump(mode="json"), "quotas": [q.model_dump(mode="json") for q in quotas]})
        return
    console = output.out()
    console.print(key_values([
        ("Project", project.name), ("Description", project.description or "-"),
        ("Preemption policy", project.preemption_policy), ("Created at", when(project.created_at)),
    ]))
    if quotas:
        console.print(_quota_table(quotas))


@projects_app.command("create")
@api_errors
def projects_create(
    name: Annotated[str, typer.Argument(help="DNS label, 2-41 characters; cannot be changed later.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    preemption_policy: Annotated[str, typer.Option("--preemption-policy",
                                                   help="never | lower_priority")] = "lower_priority",
    json_: JsonOption = False,
) -> None:
    """Create a project (admins)."""
    with config.client() as client:
        project = client.create_project(name, description=description, preemption_policy=preemption_policy)
    if json_:
        print_json(project)
        return
    output.out().print(f"Created project {project.name}. Give it a quota with: "
                       f"corral quotas set {project.name} CLUSTER --gpu N --cpu N --memory SIZE", markup=False)


@projects_app.command("members")
@api_errors
def projects_members(name: Annotated[str, typer.Argument(help="Project name.")], json_: JsonOption = False) -> None:
    """List a project's members."""
    with config.client() as client:
        members = client.list_members(name)
    if json_:
        print_json(members)
        return
    result = table("Email", "Name", "Added at")
    for m in members:
        result.add_row(*cells(m.email, m.display_name, when(m.added_at)))
    output.out().print(result)


@projects_app.command("add-member")
@api_errors
def projects_add_member(
    name: Annotated[str, typer.Argument(help="Project name.")],
    email: Annotated[str, typer.Argument(help="The user's email.")],
    json_: JsonOption = False,
) -> None:
    """Add a user to a project (admins)."""
    with config.client() as client:
        membership = client.add_member(name, email)
    if json_:
        print_json(membership)
        return
    output.out().print(f"{membership.email} is a member of {membership.project}.", markup=False)


@projects_app.command("remove-member")
@api_errors
def projects_remove_member(
    name: Annotated[str, typer.Argument(help="Project name.")],
    email: Annotated[str, typer.Argument(help="The user's email.")],
    json_: JsonOption = False,
) -> None:
    """Remove a user from a project (admins)."""
    with config.client() as client:
        client.remove_member(name, email)
    if json_:
        print_json({"project": name, "email": email, "removed": True})
        return
    output.out().print(f"Removed {email} from {name}.", markup=False)


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
    result = table("Name", "Kind", "Status", "GPU", "CPU", "Memory", "Nodes", "Last heartbeat")
    for c in clusters:
        result.add_row(*cells(c.name, c.kind, status_text(c.status), resource("gpu", c.capacity.get("gpu", 0)),
                              resource("cpu", c.capacity.get("cpu", 0)),
                              resource("memory", c.capacity.get("memory", 0)), len(c.nodes),
                              when(c.last_heartbeat_at) if c.last_heartbeat_at else "never"))
    output.out().print(result)


clusters_app.command("list", hidden=True)(clusters_ls)


@clusters_app.command("get")
@api_errors
def clusters_get(name: Annotated[str, typer.Argument(help="Cluster name.")], json_: JsonOption = False) -> None:
    """Show a cluster: health, capacity and nodes."""
    with config.client() as client:
        cluster = client.get_cluster(name)
    if json_:
        print_json(cluster)
        return
    console = output.out()
    console.print(key_values([
        ("Cluster", cluster.name), ("Kind", cluster.kind), ("Description", cluster.description or "-"),
        ("Status", status_text(cluster.status)), ("Capacity", resources_line(cluster.capacity)),
        ("Last heartbeat", when(cluster.last_heartbeat_at) if cluster.last_heartbeat_at else "never"),
        ("Created at", when(cluster.created_at)),
    ]))
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
    gpu: Annotated[int | None, typer.Option("--gpu", min=0, help="Expected GPUs until the agent reports.")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", help="Expected CPU cores (2, 0.5, 500m).")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Expected memory (512Gi).")] = None,
    ephemeral_storage: Annotated[str | None, typer.Option("--ephemeral-storage")] = None,
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


# --------------------------------------------------------------------------- quotas

def _quota_table(quotas: list[Quota]) -> Any:
    result = table("Cluster", "Resource", "Guaranteed", "Limit", "Used", "Borrowed", "Available", "Queued",
                   title="Quotas")
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
def quotas_ls(project: Annotated[str, typer.Argument(help="Project name.")], json_: JsonOption = False) -> None:
    """A project's quotas: guaranteed, limit, used, borrowed and available on each cluster."""
    with config.client() as client:
        quotas = client.list_quotas(project)
    if json_:
        print_json(quotas)
        return
    if not quotas:
        output.out().print(f"Project {project} has no quota on any cluster.", markup=False)
        return
    output.out().print(_quota_table(quotas))


quotas_app.command("list", hidden=True)(quotas_ls)


_UNBOUNDED = ("unbounded", "none", "null", "-")


def _api_amount(name: str, value: int | None) -> int | str | None:
    """A stored amount as the API reads it: cpu in millicores as "500m" (a bare number is cores)."""
    return f"{value}m" if name == "cpu" and value is not None else value


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
    with config.client() as client:
        try:
            current: Quota | None = client.get_quota(project, cluster)
        except CorralAPIError as exc:
            if exc.status_code != 404:
                raise
            current = None  # a new quota (or no such project or cluster: the PUT says which)
        guaranteed: dict[str, Any] = {}
        limit: dict[str, Any] | str = "unbounded" if unbounded else {}
        for name in RESOURCE_NAMES:
            if given_guarantee[name] is not None:
                guaranteed[name] = given_guarantee[name].strip()
            elif current is not None:
                guaranteed[name] = _api_amount(name, current.guaranteed.get(name, 0))
            if isinstance(limit, str):
                continue
            if name in given_limits:
                text = given_limits[name].strip()
                limit[name] = None if text.lower() in _UNBOUNDED else text
            elif current is not None and not hard and current.limit.get(name) != current.guaranteed.get(name):
                limit[name] = _api_amount(name, current.limit.get(name))
            # else left out: the server makes it equal to the (new) guarantee
        quota = client.set_quota(project, cluster, guaranteed, limit)
    if json_:
        print_json(quota)
        return
    output.out().print(_quota_table([quota]))
