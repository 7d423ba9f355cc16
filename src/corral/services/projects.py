"""Projects and membership. Members see their projects; others get 404."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from corral.db.tables import components, project_members, projects, users, workload_counts, workloads
from corral.domain.names import check_dns_label
from corral.domain.statuses import FINISHED_STATUSES
from corral.services import events
from corral.services.clock import utcnow
from corral.services.errors import Conflict, InvalidInput, NotFound
from corral.services.principal import Principal

PREEMPTION_POLICIES = ("never", "lower_priority")
_COLUMNS = (projects.c.id, projects.c.name, projects.c.description, projects.c.preemption_policy, projects.c.created_at)


def _project_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "preemption_policy": row.preemption_policy,
        "created_at": row.created_at,
    }


def _is_member(principal: Principal, project_id_col: Any = projects.c.id) -> Any:
    return exists().where(project_members.c.project_id == project_id_col,
                          project_members.c.user_id == principal.user_id)


def resolve(conn: Connection, principal: Principal, name: str) -> dict[str, Any]:
    """The project by name if the caller may see it; NotFound otherwise."""
    row = conn.execute(select(*_COLUMNS).where(*named_and_visible(principal, name))).first()
    if row is None:
        raise not_found(name)
    return _project_dict(row)


def named_and_visible(principal: Principal, name: str) -> list[Any]:
    """The conditions that find project ``name`` if the caller may see it (a query that
    reads more than the project: ``query.where(*named_and_visible(...))``)."""
    return [projects.c.name == name, *([] if principal.is_admin else [_is_member(principal)])]


def not_found(name: str) -> NotFound:
    return NotFound(f"project {name!r} not found", field="project")


def visible_project_ids(conn: Connection, principal: Principal) -> list[int] | None:
    """Ids of the caller's projects; None for an admin, who sees all."""
    if principal.is_admin:
        return None
    return list(conn.execute(
        select(project_members.c.project_id).where(project_members.c.user_id == principal.user_id)
    ).scalars())


def visible_to(conn: Connection, principal: Principal, project_id_column: Any) -> list[Any]:
    """The condition that keeps a query to the caller's projects (none for an admin):
    ``query.where(*visible_to(conn, principal, table.c.project_id))``."""
    ids = visible_project_ids(conn, principal)
    return [] if ids is None else [project_id_column.in_(ids)]


def list_projects(conn: Connection, principal: Principal) -> list[dict[str, Any]]:
    query = select(*_COLUMNS).order_by(projects.c.name)
    if not principal.is_admin:
        query = query.where(_is_member(principal))
    return [_project_dict(r) for r in conn.execute(query)]


def _check_policy(policy: str | None) -> None:
    if policy is not None and policy not in PREEMPTION_POLICIES:
        raise InvalidInput(f"preemption_policy must be one of {', '.join(PREEMPTION_POLICIES)}",
                           field="preemption_policy")


def create_project(
    conn: Connection, principal: Principal, *, name: str, description: str = "",
    preemption_policy: str = "lower_priority",
) -> dict[str, Any]:
    principal.require_admin()
    try:
        check_dns_label(name)
    except ValueError as exc:
        raise InvalidInput(f"project name {exc}", field="name") from None
    _check_policy(preemption_policy)
    try:
        with conn.begin_nested():
            project_id = conn.execute(
                insert(projects).values(name=name, description=description, preemption_policy=preemption_policy,
                                        created_at=utcnow()).returning(projects.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a project named {name!r} already exists", field="name", code="already_exists") from None
    events.record(conn, actor=principal.email, subject_type="project", subject_id=project_id,
                  project_id=project_id, kind="project_created", message=f"project {name} created")
    return resolve(conn, principal, name)


def update_project(
    conn: Connection, principal: Principal, name: str, *, description: str | None = None,
    preemption_policy: str | None = None,
) -> dict[str, Any]:
    project = resolve(conn, principal, name)
    principal.require_admin()
    _check_policy(preemption_policy)
    values = {k: v for k, v in {"description": description, "preemption_policy": preemption_policy}.items()
              if v is not None}
    if values:
        conn.execute(update(projects).where(projects.c.id == project["id"]).values(**values))
        events.record(conn, actor=principal.email, subject_type="project", subject_id=project["id"],
                      project_id=project["id"], kind="project_updated",
                      message="project updated: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return resolve(conn, principal, name)


def delete_project(conn: Connection, principal: Principal, name: str) -> None:
    project = resolve(conn, principal, name)
    principal.require_admin()
    # Finished workloads are history and go with the project; live ones must be deleted first.
    live = conn.execute(
        select(func.coalesce(func.sum(workload_counts.c.count), 0)).where(
            workload_counts.c.project_id == project["id"],
            workload_counts.c.status.not_in([s.value for s in FINISHED_STATUSES]),
        )
    ).scalar_one()
    if live:
        raise Conflict(f"project {name!r} still has {live} workloads that are not finished; delete them first",
                       code="project_not_empty")
    conn.execute(delete(components).where(components.c.workload_id.in_(
        select(workloads.c.id).where(workloads.c.project_id == project["id"]))))
    conn.execute(delete(workloads).where(workloads.c.project_id == project["id"]))
    conn.execute(delete(projects).where(projects.c.id == project["id"]))
    events.record(conn, actor=principal.email, subject_type="project", subject_id=project["id"],
                  kind="project_deleted", message=f"project {name} deleted")


def list_members(conn: Connection, principal: Principal, name: str) -> list[dict[str, Any]]:
    project = resolve(conn, principal, name)
    rows = conn.execute(
        select(users.c.id, users.c.email, users.c.display_name, project_members.c.added_at)
        .join(users, users.c.id == project_members.c.user_id)
        .where(project_members.c.project_id == project["id"])
        .order_by(users.c.email)
    )
    return [r._asdict() for r in rows]


def add_member(conn: Connection, principal: Principal, name: str, email: str) -> dict[str, Any]:
    project = resolve(conn, principal, name)
    principal.require_admin()
    user = conn.execute(select(users.c.id, users.c.email).where(users.c.email == email.strip().lower())).first()
    if user is None:
        raise NotFound(f"user {email} not found", field="email")
    already = conn.execute(select(project_members.c.user_id).where(
        project_members.c.project_id == project["id"], project_members.c.user_id == user.id)).first()
    if already is None:
        conn.execute(insert(project_members).values(project_id=project["id"], user_id=user.id, added_at=utcnow()))
        events.record(conn, actor=principal.email, subject_type="project", subject_id=project["id"],
                      project_id=project["id"], kind="member_added", message=f"{user.email} added to {name}")
    return {"project": name, "email": user.email}


def remove_member(conn: Connection, principal: Principal, name: str, email: str) -> None:
    project = resolve(conn, principal, name)
    principal.require_admin()
    user = conn.execute(select(users.c.id).where(users.c.email == email.strip().lower())).first()
    removed = 0
    if user is not None:
        removed = conn.execute(delete(project_members).where(
            project_members.c.project_id == project["id"], project_members.c.user_id == user.id)).rowcount
    if not removed:
        raise NotFound(f"{email} is not a member of {name}", field="email")
    events.record(conn, actor=principal.email, subject_type="project", subject_id=project["id"],
                  project_id=project["id"], kind="member_removed", message=f"{email} removed from {name}")
