"""The `corral` command.

    corral serve                          run the server (migrates and bootstraps first)
    corral agent                          run a cluster's agent (standalone)
    corral db upgrade|current             schema migrations (direct, no server)
    corral users create|list              users (direct: bootstraps the first admin)
    corral tokens create|list|revoke      API tokens (direct)
    corral login|logout|whoami            remember a server and token
    corral projects|clusters|quotas|workloads ...   through the REST API
    corral secrets ls|set|rm -p PROJECT   project secrets (values from stdin, a prompt or a file); reencrypt

Commands with output take --json. Errors go to stderr, and the exit status is non-zero.
"""

from __future__ import annotations

import typer

from corral import __version__
from corral.cli import admin, agent, remote, server, workloads
from corral.cli import secrets as secrets_cli

app = typer.Typer(
    name="corral",
    help="Corral: a self-hosted control plane for AI workloads.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks must never show local variables: they may hold a token.
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"corral {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Corral: a self-hosted control plane for AI workloads."""


app.command("serve")(server.serve)
app.command("agent")(agent.agent)
app.command("login")(remote.login)
app.command("logout")(remote.logout)
app.command("whoami")(remote.whoami)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.tokens_app, name="tokens")
app.add_typer(remote.projects_app, name="projects")
app.add_typer(remote.clusters_app, name="clusters")
app.add_typer(remote.quotas_app, name="quotas")
app.add_typer(workloads.workloads_app, name="workloads")
app.add_typer(secrets_cli.secrets_app, name="secrets")

if __name__ == "__main__":
    app()
