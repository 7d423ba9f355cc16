"""Commands that talk to a Corral server over HTTP, through ``corral.client`` only:
login and projects. Clusters and quotas live in ``corral.cli.clusters``, workloads in
``corral.cli.workloads``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

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
    table,
    when,
)
from corral.cli.clusters import quota_table
from corral.client import CorralAPIError, CorralClient, normalise_server

projects_app = typer.Typer(help="Projects and their members.", no_args_is_help=True)


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
        client = CorralClient(url, token, light=True)
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
        console.print(quota_table(quotas))


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
