"""Commands that work on the database directly, without a server: migrations, and the
users and tokens needed to bootstrap the first administrator.

They read the same CORRAL_* settings as the server (CORRAL_DATA_DIR, CORRAL_DATABASE_URL).
Heavy imports (SQLAlchemy, the services) happen inside the commands, so that the HTTP
commands of the CLI start quickly.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from corral.cli import output
from corral.cli.output import JsonOption, cells, fail, info, print_json, table, when

if TYPE_CHECKING:
    from sqlalchemy import Engine

F = TypeVar("F", bound=Callable[..., Any])

db_app = typer.Typer(help="Database schema (works on the database directly, no server needed).",
                     no_args_is_help=True)
users_app = typer.Typer(help="Users (works on the database directly, to bootstrap the first admin).",
                        no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens of any user (works on the database directly).", no_args_is_help=True)

CLI_ACTOR = "system:cli"


def db_errors(fn: F) -> F:
    """Service and database errors become a red message and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        from corral.services.errors import ServiceError

        try:
            return fn(*args, **kwargs)
        except ServiceError as exc:
            fail(exc.message, field=exc.field)
        except SQLAlchemyError as exc:
            fail(f"database error: {str(exc).splitlines()[0]}")

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _engine(require_schema: bool = True) -> Iterator[Engine]:
    from corral.db.engine import make_engine
    from corral.db.migrate import current_revision
    from corral.settings import Settings

    settings = Settings()
    engine = make_engine(settings.resolved_database_url(), pool_size=1)
    try:
        if require_schema and current_revision(engine) is None:
            fail("the database has no schema yet: run `corral db upgrade` (or start `corral serve` once)")
        yield engine
    finally:
        engine.dispose()


def _database_label() -> str:
    from sqlalchemy.engine import make_url

    from corral.settings import Settings

    return make_url(Settings().resolved_database_url()).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- db

@db_app.command("upgrade")
@db_errors
def db_upgrade(json_: JsonOption = False) -> None:
    """Migrate the database schema to the newest version."""
    from corral.db.migrate import current_revision, head_revision, upgrade

    with _engine(require_schema=False) as engine:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
        head = head_revision(engine)
    if json_:
        print_json({"database": _database_label(), "from": before, "to": after, "head": head})
        return
    if before == after:
        output.out().print(f"Database {_database_label()} is up to date (revision {after}).", markup=False)
    else:
        output.out().print(f"Upgraded {_database_label()} from {before or 'empty'} to {after}.", markup=False)


@db_app.command("current")
@db_errors
def db_current(json_: JsonOption = False) -> None:
    """Show the schema revision of the database, and the newest one known."""
    from corral.db.migrate import current_revision, head_revision

    with _engine(require_schema=False) as engine:
        current = current_revision(engine)
        head = head_revision(engine)
    if json_:
        print_json({"database": _database_label(), "current": current, "head": head, "up_to_date": current == head})
        return
    state = "up to date" if current == head else "needs `corral db upgrade`"
    output.out().print(f"{_database_label()}: revision {current or 'none (empty)'}; newest {head} ({state})",
                       markup=False)


# --------------------------------------------------------------------------- users

@users_app.command("create")
@db_errors
def users_create(
    email: Annotated[str, typer.Argument(help="The user's email; it is their login name.")],
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: the email's local part).")]
    = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a platform administrator.")] = False,
    json_: JsonOption = False,
) -> None:
    """Create a user (then `corral tokens create EMAIL` gives them a token)."""
    from corral.db.engine import write_tx
    from corral.services import users as user_service

    with _engine() as engine, write_tx(engine) as conn:
        user = user_service.create_user(conn, email=email, display_name=name, role="admin" if admin else "member",
                                        actor=CLI_ACTOR)
    if json_:
        print_json(_jsonable(user))
        return
    output.out().print(f"Created user {user['email']} ({user['role']}, id {user['id']}). "
                       f"Give them a token with: corral tokens create {user['email']}", markup=False)


@users_app.command("list")
@db_errors
def users_list(json_: JsonOption = False) -> None:
    """List every user."""
    from corral.db.engine import read_tx
    from corral.services import users as user_service

    with _engine() as engine, read_tx(engine) as conn:
        rows = user_service.list_users(conn)
    if json_:
        print_json([_jsonable(u) for u in rows])
        return
    result = table("ID", "Email", "Name", "Role", "Disabled", "Created at")
    for u in rows:
        result.add_row(*cells(u["id"], u["email"], u["display_name"], u["role"], "yes" if u["disabled"] else "no",
                              when(u["created_at"])))
    output.out().print(result)


users_app.command("ls", hidden=True)(users_list)


@users_app.command("set-password")
@db_errors
def users_set_password(
    email: Annotated[str, typer.Argument(help="Whose password.")],
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", exists=True, dir_okay=False, readable=True,
        help="Read the password from this file (its first line) instead of prompting.")] = None,
) -> None:
    """Set a user's password for signing in to the web UI (prompts twice; never echoed)."""
    from corral.db.engine import write_tx
    from corral.services import passwords

    if password_file is not None:
        lines = password_file.read_text().splitlines()
        password = lines[0] if lines else ""
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    passwords.check_password(password)
    with _engine() as engine, write_tx(engine) as conn:
        user = passwords.set_password(conn, email=email, password=password, actor=CLI_ACTOR)
    output.out().print(f"Password of {user['email']} set; they can sign in to the web UI.", markup=False)


# --------------------------------------------------------------------------- tokens

@tokens_app.command("create")
@db_errors
def tokens_create(
    email: Annotated[str, typer.Argument(help="Whose token.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "cli",
    expires_in_days: Annotated[int | None, typer.Option("--expires-in-days", min=1, max=3650,
                                                        help="Expire after this many days (default: never).")]
    = None,
    json_: JsonOption = False,
) -> None:
    """Create an API token for a user and print it, once, on stdout."""
    from corral.db.engine import write_tx
    from corral.services import users as user_service
    from corral.services.clock import utcnow

    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    with _engine() as engine, write_tx(engine) as conn:
        user = user_service.get_user_by_email(conn, email)
        secret, token = user_service.create_token(conn, user_id=user["id"], name=name, expires_at=expires_at,
                                                  actor=CLI_ACTOR)
    if json_:
        print_json({**_jsonable(token), "user": user["email"], "token": secret})
        return
    expiry = f"expires {when(token['expires_at'])}" if token["expires_at"] else "never expires"
    info(f"Token {token['name']!r} (id {token['id']}) for {user['email']}; {expiry}. "
         "It is shown only this once:")
    # The secret alone on stdout, so that `TOKEN=$(corral tokens create EMAIL)` works.
    typer.echo(secret)


@tokens_app.command("list")
@db_errors
def tokens_list(email: Annotated[str, typer.Argument(help="Whose tokens.")], json_: JsonOption = False) -> None:
    """List a user's tokens (their prefixes, never the secrets)."""
    from corral.db.engine import read_tx
    from corral.services import users as user_service

    with _engine() as engine, read_tx(engine) as conn:
        user = user_service.get_user_by_email(conn, email)
        rows = user_service.list_tokens(conn, user["id"])
    if json_:
        print_json([_jsonable(t) for t in rows])
        return
    result = table("ID", "Name", "Prefix", "Created at", "Expires at", "Revoked")
    for t in rows:
        result.add_row(*cells(t["id"], t["name"], t["prefix"] + "...", when(t["created_at"]),
                              when(t["expires_at"]) if t["expires_at"] else "never", "yes" if t["revoked"] else "no"))
    output.out().print(result)


tokens_app.command("ls", hidden=True)(tokens_list)


@tokens_app.command("revoke")
@db_errors
def tokens_revoke(
    email: Annotated[str, typer.Argument(help="Whose token.")],
    token_id: Annotated[int, typer.Argument(help="The token's id (see `corral tokens list EMAIL`).")],
    json_: JsonOption = False,
) -> None:
    """Revoke a user's token: it stops working at once."""
    from corral.db.engine import write_tx
    from corral.services import users as user_service

    with _engine() as engine, write_tx(engine) as conn:
        user = user_service.get_user_by_email(conn, email)
        token = user_service.revoke_token(conn, user_id=user["id"], token_id=token_id, actor=CLI_ACTOR)
    if json_:
        print_json({**_jsonable(token), "user": user["email"]})
        return
    output.out().print(f"Revoked token {token['name']!r} (id {token['id']}, {token['prefix']}...) "
                       f"of {user['email']}.", markup=False)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
