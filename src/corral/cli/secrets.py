"""`corral secrets ls|set|rm -p PROJECT [NAME]`: a project's secrets (over HTTP), and
`corral secrets reencrypt` (on the server machine, on the database directly) after a key rotation.

A value is never taken from the command line (other users see it in the process list, the
shell keeps it in its history): `set` reads it from ``--from-file``, from standard input
when that is not a terminal, or else from a hidden prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from corral.cli import config, output
from corral.cli.output import EXIT_USAGE, JsonOption, api_errors, cells, fail, info, print_json, table, when

secrets_app = typer.Typer(
    help="Project secrets: values workloads get as environment variables (write-only).",
    no_args_is_help=True,
)

ProjectOption = Annotated[str, typer.Option("--project", "-p", help="Project name.")]
NameArgument = Annotated[str, typer.Argument(help="Secret name: letters, digits, '-' and '_' (up to 64).")]
VALUE_MAX_BYTES = 64 * 1024


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_value(from_file: Path | None) -> str:
    if from_file is not None:
        data = from_file.read_bytes()  # exactly as stored: a trailing newline is part of the value
        source = str(from_file)
    elif not _stdin_is_terminal():
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        # `echo "$TOKEN" | corral secrets set ...`: the newline echo adds is not part of the value.
        data = data.removesuffix(b"\n").removesuffix(b"\r")
        source = "standard input"
    else:
        return typer.prompt("Value", hide_input=True, confirmation_prompt=True)
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"the value from {source} is not UTF-8 text", code=EXIT_USAGE)
    if len(data) > VALUE_MAX_BYTES:
        fail(f"the value from {source} is larger than {VALUE_MAX_BYTES // 1024} KiB", code=EXIT_USAGE)
    return value


@secrets_app.command("ls")
@api_errors
def secrets_ls(project: ProjectOption, json_: JsonOption = False) -> None:
    """List a project's secrets (names and dates; values are never shown)."""
    with config.client() as client:
        secrets = client.list_secrets(project)
    if json_:
        print_json(secrets)
        return
    if not secrets:
        output.out().print(f"Project {project} has no secrets.", markup=False)
        return
    result = table("Name", "Created by", "Created at", "Updated at")
    for s in secrets:
        result.add_row(*cells(s.name, s.created_by, when(s.created_at), when(s.updated_at)))
    output.out().print(result)


secrets_app.command("list", hidden=True)(secrets_ls)


@secrets_app.command("set")
@api_errors
def secrets_set(
    project: ProjectOption,
    name: NameArgument,
    from_file: Annotated[Path | None, typer.Option("--from-file", exists=True, dir_okay=False, readable=True,
                                                   help="Read the value from this file (byte for byte).")] = None,
    json_: JsonOption = False,
) -> None:
    """Create a secret or replace its value.

    The value comes from --from-file, standard input (one trailing newline dropped) or a hidden prompt.
    """
    value = _read_value(from_file)
    if value == "":
        fail("the value is empty", code=EXIT_USAGE)
    with config.client() as client:
        secret = client.set_secret(project, name, value)
    if json_:
        print_json(secret)
        return
    verb = "Created" if secret.created_at == secret.updated_at else "Updated"
    info(f"{verb} secret {secret.name} in project {secret.project}. Use it in a workload spec with "
         f"secrets: {{ENV_NAME: {secret.name}}}.")


@secrets_app.command("rm")
@api_errors
def secrets_rm(project: ProjectOption, name: NameArgument, json_: JsonOption = False) -> None:
    """Delete a secret. Workloads that reference it can no longer be submitted or started."""
    with config.client() as client:
        client.delete_secret(project, name)
    if json_:
        print_json({"project": project, "name": name, "deleted": True})
        return
    output.out().print(f"Deleted secret {name} from project {project}.", markup=False)


secrets_app.command("delete", hidden=True)(secrets_rm)


@secrets_app.command("reencrypt")
def secrets_reencrypt(json_: JsonOption = False) -> None:
    """Re-encrypt every project's secrets with the newest key (on the server machine, no server needed).

    After putting a new key first in CORRAL_SECRET_KEY (comma-separated, newest first), run this with the
    same settings as the server; then the old keys can be removed.
    """
    from corral.cli.admin import _engine, db_errors
    from corral.db.engine import write_tx
    from corral.services import keys as key_service, secrets as secret_service
    from corral.settings import Settings

    @db_errors
    def run() -> int:
        keys = key_service.for_settings(Settings())
        with _engine() as engine, write_tx(engine) as conn:
            return secret_service.reencrypt_all(conn, keys)

    count = run()
    if json_:
        print_json({"reencrypted": count})
        return
    output.out().print(f"Re-encrypted {count} secret{'s' if count != 1 else ''} with the newest key.",
                       markup=False)
