"""The `corral` command.

    corral serve                          run the server (migrates and bootstraps first)
    corral agent                          run a cluster's agent (standalone)
    corral db upgrade|current             schema migrations (direct, no server)
    corral users create|list              users (direct: bootstraps the first admin)
    corral tokens create|list|revoke      API tokens (direct)
    corral login|logout|whoami            remember a server and token
    corral projects|clusters|quotas|workloads ...   through the REST API
    corral secrets ls|set|rm -p PROJECT   project secrets (values from stdin, a prompt or a file); reencrypt
    corral models ls|show [-p PROJECT]   models in the projects' stores; a model's evaluations side by side

Commands with output take --json. Errors go to stderr, and the exit status is non-zero.

One call pays only for the command it runs: the commands are listed here by name, and a
command's module is imported when it runs (corral.cli.lazy). `corral --help` imports
none of them; `corral workloads ls` never imports the server, SQLAlchemy or uvicorn
(tests/unit/test_cli_imports.py; bench/cli_startup.py measures it). Help is Click's
plain text (no rich panels): faster, and readable in an 80-column terminal.
"""

from __future__ import annotations

import typer

from corral import __version__
from corral.cli.lazy import Lazy, lazy_group

# In the order `corral --help` lists them; each help line equals the command's own.
COMMANDS: dict[str, Lazy] = {
    "serve": Lazy("corral.cli.server", "serve",
                  "Run the Corral server: migrate the database, create what a first start needs, serve."),
    "agent": Lazy("corral.cli.agent", "agent",
                  "Run a cluster's agent: heartbeat, take admitted workloads, run them, report statuses."),
    "login": Lazy("corral.cli.remote", "login",
                  "Check a token with the server and remember both (without a token: asks for it)."),
    "logout": Lazy("corral.cli.remote", "logout", "Forget the saved token."),
    "whoami": Lazy("corral.cli.remote", "whoami", "Show who the saved (or CORRAL_TOKEN) token belongs to."),
    "db": Lazy("corral.cli.admin", "db_app", "Database schema (works on the database directly, no server needed)."),
    "users": Lazy("corral.cli.admin", "users_app",
                  "Users (works on the database directly, to bootstrap the first admin)."),
    "tokens": Lazy("corral.cli.admin", "tokens_app", "API tokens of any user (works on the database directly)."),
    "projects": Lazy("corral.cli.remote", "projects_app", "Projects and their members."),
    "clusters": Lazy("corral.cli.clusters", "clusters_app", "Clusters workloads run on."),
    "quotas": Lazy("corral.cli.clusters", "quotas_app", "Quotas of projects on clusters."),
    "workloads": Lazy("corral.cli.workloads", "workloads_app", "Workloads: list, inspect, submit, delete."),
    "secrets": Lazy("corral.cli.secrets", "secrets_app",
                    "Project secrets: values workloads get as environment variables (write-only)."),
    "models": Lazy("corral.cli.models", "models_app", "Models in your projects' stores, and their evaluations."),
}

app = typer.Typer(
    name="corral",
    cls=lazy_group(COMMANDS),
    help="Corral: a self-hosted control plane for AI workloads.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
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


if __name__ == "__main__":
    app()
