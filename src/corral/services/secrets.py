"""Project secrets: named values a project's workloads get as environment variables.

Members of the project (and admins) set, list and delete them; the value is write-only:
stored encrypted with the server's key (``corral.services.keys``), never returned by the
API, never written to an event or a log. A workload spec maps environment variable names
to secret names (``secrets: {HF_TOKEN: hf-token}``); the agent dispatch resolves them with
``resolve_for_workload``.

The encrypted payload also names the project and the secret, so a ciphertext copied to
another row (another project's, say) does not decrypt there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from corral.db.tables import project_secrets
from corral.services import events, keys as key_service, projects as project_service
from corral.services.clock import utcnow
from corral.services.errors import InvalidInput, NotFound, ServiceError
from corral.services.keys import KeyMismatch, SecretKeys
from corral.services.principal import Principal

NAME_MAX = 64
VALUE_MAX_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_COLUMNS = (project_secrets.c.name, project_secrets.c.created_by, project_secrets.c.created_at,
            project_secrets.c.updated_at)


class SecretError(ServiceError, LookupError):
    """A workload's secrets cannot be resolved (the agent dispatch catches this, as a LookupError)."""


class MissingSecret(SecretError):
    status_code = 422
    code = "missing_secret"

    def __init__(self, env: str, secret: str, project: str | None = None) -> None:
        self.reason = f"{f'project {project}' if project else 'the project'} has no secret named {secret!r}"
        super().__init__(f"secrets.{env}: {self.reason}", field=f"secrets.{env}")
        self.env = env
        self.secret = secret


class SecretUnreadable(SecretError):
    status_code = 500
    code = "secret_unreadable"


def check_name(name: str) -> str:
    if not (1 <= len(name) <= NAME_MAX) or not _NAME.match(name):
        raise InvalidInput(f"secret name must be 1 to {NAME_MAX} letters, digits, '-' and '_', not starting "
                           "with '-'", field="name")
    return name


def check_value(value: str) -> None:
    """Refusals never quote the value."""
    if not isinstance(value, str) or value == "":
        raise InvalidInput("value must not be empty", field="value")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON)
        raise InvalidInput("value must be valid Unicode text", field="value") from None
    if size > VALUE_MAX_BYTES:
        raise InvalidInput(f"value must be at most {VALUE_MAX_BYTES // 1024} KiB", field="value")
    if "\x00" in value:
        raise InvalidInput("value must not contain NUL characters (it becomes an environment variable)",
                           field="value")


def _seal(keys: SecretKeys, project_id: int, name: str, value: str) -> str:
    payload = json.dumps({"p": project_id, "n": name, "v": value}, separators=(",", ":"))
    return keys.encrypt(payload.encode("utf-8"))


def _open(keys: SecretKeys, project_id: int, name: str, ciphertext: str) -> str:
    try:
        payload = json.loads(keys.decrypt(ciphertext))
    except KeyMismatch as exc:
        raise SecretUnreadable(f"secret {name!r}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("p") != project_id or payload.get("n") != name \
            or not isinstance(payload.get("v"), str):
        raise SecretUnreadable(f"secret {name!r}: the stored value belongs to another secret; set it again")
    return payload["v"]


def _out(project: str, row: Any) -> dict[str, Any]:
    return {"project": project, "name": row.name, "created_by": row.created_by, "created_at": row.created_at,
            "updated_at": row.updated_at}


def list_secrets(conn: Connection, principal: Principal, project_name: str) -> list[dict[str, Any]]:
    """Names and dates, never values."""
    project = project_service.resolve(conn, principal, project_name)
    rows = conn.execute(select(*_COLUMNS).where(project_secrets.c.project_id == project["id"])
                        .order_by(project_secrets.c.name))
    return [_out(project["name"], r) for r in rows]


def set_secret(conn: Connection, principal: Principal, project_name: str, name: str, value: str, *,
               keys: SecretKeys) -> dict[str, Any]:
    """Create the secret, or replace its value. Members of the project and admins."""
    project = project_service.resolve(conn, principal, project_name)
    check_name(name)
    check_value(value)
    ciphertext = _seal(keys, project["id"], name, value)
    now = utcnow()
    where = (project_secrets.c.project_id == project["id"], project_secrets.c.name == name)
    created = False
    if not conn.execute(update(project_secrets).where(*where).values(ciphertext=ciphertext, updated_at=now)).rowcount:
        try:
            with conn.begin_nested():
                conn.execute(insert(project_secrets).values(
                    project_id=project["id"], name=name, ciphertext=ciphertext, created_by=principal.email,
                    created_at=now, updated_at=now))
            created = True
        except IntegrityError:  # set at the same moment by someone else: replace theirs
            conn.execute(update(project_secrets).where(*where).values(ciphertext=ciphertext, updated_at=now))
    events.record(conn, actor=principal.email, subject_type="project", subject_id=project["id"],
                  project_id=project["id"], kind="secret_set",
                  message=f"secret {name} {'created' if created else 'updated'} in project {project['name']}")
    row = conn.execute(select(*_COLUMNS).where(*where)).one()
    return _out(project["name"], row)


def delete_secret(conn: Connection, principal: Principal, project_name: str, name: str) -> None:
    project = project_service.resolve(conn, principal, project_name)
    deleted = conn.execute(delete(project_secrets).where(
        project_secrets.c.project_id == project["id"], project_secrets.c.name == name)).rowcount
    if not deleted:
        raise NotFound(f"project {project['name']} has no secret named {name!r}", field="name")
    events.record(conn, actor=principal.email, subject_type="project", subject_id=project["id"],
                  project_id=project["id"], kind="secret_deleted",
                  message=f"secret {name} deleted from project {project['name']}")


def check_references(conn: Connection, project_id: int, mapping: Mapping[str, str],
                     project_name: str | None = None) -> None:
    """At submission: every secret a spec maps to an environment variable exists in its project.

    Raises MissingSecret (422, field ``secrets.<ENV>``) for the first missing one; ``details``
    lists them all.
    """
    if not mapping:
        return
    found = set(conn.execute(select(project_secrets.c.name).where(
        project_secrets.c.project_id == project_id,
        project_secrets.c.name.in_(sorted(set(mapping.values()))))).scalars())
    missing = [(env, secret) for env, secret in sorted(mapping.items()) if secret not in found]
    if missing:
        error = MissingSecret(*missing[0], project=project_name)
        error.details = [{"field": f"secrets.{env}", "message": MissingSecret(env, secret, project_name).reason}
                         for env, secret in missing]  # type: ignore[attr-defined]
        raise error


def resolve_for_workload(conn: Connection, project_id: int, mapping: Mapping[str, str],
                         keys: SecretKeys | None = None) -> dict[str, str]:
    """The decrypted values for a workload's ``secrets`` (env var -> secret name): {env var: value}.

    ``keys``: the server's keys, ``corral.services.keys.for_settings(settings)``; by default
    those of ``get_settings()`` (the server's environment). Raises MissingSecret naming the
    first secret that no longer exists, SecretUnreadable if one cannot be decrypted. The
    result holds secret values: never log it.
    """
    if not mapping:
        return {}
    if keys is None:
        from corral.settings import get_settings

        keys = key_service.for_settings(get_settings())
    rows = conn.execute(select(project_secrets.c.name, project_secrets.c.ciphertext).where(
        project_secrets.c.project_id == project_id,
        project_secrets.c.name.in_(sorted(set(mapping.values()))))).all()
    stored = {row.name: row.ciphertext for row in rows}
    for env, secret in sorted(mapping.items()):
        if secret not in stored:
            raise MissingSecret(env, secret)
    values = {name: _open(keys, project_id, name, ciphertext) for name, ciphertext in stored.items()}
    return {env: values[secret] for env, secret in mapping.items()}


def reencrypt_all(conn: Connection, keys: SecretKeys) -> int:
    """Re-encrypt every secret with the newest key (the first of CORRAL_SECRET_KEY), so that
    older keys can be dropped. All or nothing: an unreadable secret aborts, naming it."""
    rows = conn.execute(select(project_secrets.c.id, project_secrets.c.project_id, project_secrets.c.name,
                               project_secrets.c.ciphertext).order_by(project_secrets.c.id)).all()
    for row in rows:
        _open(keys, row.project_id, row.name, row.ciphertext)  # readable, and where it belongs
        conn.execute(update(project_secrets).where(project_secrets.c.id == row.id)
                     .values(ciphertext=keys.rotate(row.ciphertext)))
    return len(rows)
