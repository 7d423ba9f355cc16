"""The model store as users see it, and evaluation results.

Where the list comes from: each cluster's agent reports its store's whole inventory (the
manifests on disk; ``record_inventory``), when it starts and whenever it changes, so a
model removed or replaced on disk is removed or replaced here. A model registered by a
finished download or training is also recorded from the component's result at once
(``record_results``), which is all a backend that cannot list its store provides.

Manifests are written by the project's own workloads: nothing in one is trusted beyond
its project (the store's directory names it, not the manifest) and the producing
workload, kept only when it is a workload of that same project.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, true, update

from corral.db.tables import clusters, components, models, projects, workloads
from corral.domain.results import MODEL_TEXT_FIELDS, merged_metrics
from corral.domain.workloads import WorkloadType
from corral.services import projects as project_service
from corral.services.clock import utcnow
from corral.services.errors import InvalidInput, NotFound
from corral.services.principal import Principal

MAX_PAGE_SIZE = 500
MAX_EVALUATIONS = 200  # the newest evaluations shown for comparison
_FIELDS = ("kind", "source", "revision", "base_model", "dataset", "files", "bytes", "created_at", "workload_id")


def _when(text: Any, now: datetime) -> datetime | None:
    """A manifest's time (ISO 8601), never after now (the agent's clock may run ahead)."""
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return min(at, now)


def _values(entry: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    values = {key: entry.get(key) for key in _FIELDS}
    values["kind"] = (values["kind"] or "model")[: MODEL_TEXT_FIELDS["kind"]]
    values["files"] = values["files"] or 0
    values["bytes"] = values["bytes"] or 0
    values["created_at"] = _when(values["created_at"], now)
    return values


def _same_project_workloads(conn: Connection, project_of: dict[int, int]) -> set[int]:
    """Of the workload ids claimed (id -> claiming project), those that are that project's."""
    if not project_of:
        return set()
    rows = conn.execute(select(workloads.c.id, workloads.c.project_id)
                        .where(workloads.c.id.in_(sorted(project_of)))).all()
    return {r.id for r in rows if project_of.get(r.id) == r.project_id}


Key = tuple[str, str]  # (project, model name): the order an inventory is paged in


def in_range(key: Key, after: Key | None, through: Key | None) -> bool:
    """Whether ``key`` lies in a page's range: after it (exclusive), up to through (inclusive)."""
    return (after is None or key > after) and (through is None or key <= through)


def record_inventory(conn: Connection, cluster_id: int, entries: list[Mapping[str, Any]], *,
                     after: Key | None = None, through: Key | None = None) -> dict[str, int]:
    """Replace what is known of the cluster's model stores, within one page's range, with
    ``entries`` (each with ``project`` and ``name``). An agent sends its inventory in pages
    ordered by (project, name): a page says "between ``after`` (exclusive) and ``through``
    (inclusive) there are exactly these", so every page stands alone (no page is kept
    waiting for the next, on this replica or another) and a model is removed only by the
    page whose range holds it. Without a range: the whole inventory. Entries outside the
    range, and of unknown projects, are refused / ignored. Returns counts of models added,
    changed, removed."""
    outside = [e for e in entries if not in_range((e["project"], e["name"]), after, through)]
    if outside:
        raise InvalidInput(f"model {outside[0]['project']}/{outside[0]['name']} is outside this page's range "
                           f"(after {after}, through {through})", field="models")
    now = utcnow()
    names = {e["project"] for e in entries}
    project_ids = dict(conn.execute(select(projects.c.name, projects.c.id)
                                    .where(projects.c.name.in_(sorted(names)))).all()) if names else {}
    wanted: dict[tuple[int, str], dict[str, Any]] = {}
    for e in entries:
        if e["project"] in project_ids:
            wanted[(project_ids[e["project"]], e["name"])] = _values(e, now)
    claimed = {v["workload_id"]: pid for (pid, _), v in wanted.items() if v["workload_id"]}
    trusted = _same_project_workloads(conn, claimed)
    for value in wanted.values():
        if value["workload_id"] not in trusted:
            value["workload_id"] = None
    query = (select(models.c.id, models.c.project_id, models.c.name, projects.c.name.label("project"),
                    *(models.c[k] for k in _FIELDS))
             .join(projects, projects.c.id == models.c.project_id)
             .where(models.c.cluster_id == cluster_id).order_by(models.c.id).with_for_update(of=models))
    existing = {(r.project_id, r.name): r for r in conn.execute(query)
                if in_range((r.project, r.name), after, through)}
    gone = [r.id for key, r in existing.items() if key not in wanted]
    if gone:
        conn.execute(delete(models).where(models.c.id.in_(gone)))
    added = changed = 0
    for key, value in wanted.items():
        row = existing.get(key)
        if row is None:
            conn.execute(insert(models).values(cluster_id=cluster_id, project_id=key[0], name=key[1],
                                               reported_at=now, **value))
            added += 1
        elif any(getattr(row, k) != value[k] for k in _FIELDS):
            conn.execute(update(models).where(models.c.id == row.id).values(reported_at=now, **value))
            changed += 1
    return {"added": added, "changed": changed, "removed": len(gone)}


def record_results(conn: Connection, results: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
    """Record the models named by finished components' results (workload id, result)."""
    made = [(wid, r) for wid, r in results if r.get("model") and not r.get("error")]
    if not made:
        return
    now = utcnow()
    owners = {r.id: r for r in conn.execute(select(workloads.c.id, workloads.c.project_id, workloads.c.cluster_id)
                                            .where(workloads.c.id.in_(sorted({w for w, _ in made}))))}
    for workload_id, result in made:
        owner = owners[workload_id]
        value = {**_values(result, now), "workload_id": workload_id}
        key = (models.c.cluster_id == owner.cluster_id, models.c.project_id == owner.project_id,
               models.c.name == result["model"])
        if conn.execute(update(models).where(*key).values(reported_at=now, **value)).rowcount == 0:
            conn.execute(insert(models).values(cluster_id=owner.cluster_id, project_id=owner.project_id,
                                               name=result["model"], reported_at=now, **value))


# --------------------------------------------------------------------------- reading

_COLUMNS = (models.c.id, models.c.name, projects.c.name.label("project"), clusters.c.name.label("cluster"),
            *(models.c[k] for k in _FIELDS), models.c.reported_at, workloads.c.name.label("workload_name"))


def _query() -> Any:
    return (select(*_COLUMNS).join(projects, projects.c.id == models.c.project_id)
            .join(clusters, clusters.c.id == models.c.cluster_id)
            .outerjoin(workloads, workloads.c.id == models.c.workload_id))


def _item(r: Any) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "project": r.project, "cluster": r.cluster, "kind": r.kind,
            "source": r.source, "revision": r.revision, "base_model": r.base_model, "dataset": r.dataset,
            "files": r.files, "bytes": r.bytes,
            "workload": {"id": r.workload_id, "name": r.workload_name} if r.workload_id else None,
            "created_at": r.created_at, "reported_at": r.reported_at}


def list_models(conn: Connection, principal: Principal, *, project: str | None = None, cluster: str | None = None,
                name: str | None = None, page: int = 1, page_size: int = 50) -> dict[str, Any]:
    """The models the caller may see (their projects'; an admin's: all), by project, name, cluster."""
    conditions = []
    if project is not None:
        conditions.append(models.c.project_id == project_service.resolve(conn, principal, project)["id"])
    else:
        conditions += project_service.visible_to(conn, principal, models.c.project_id)
    if cluster is not None:
        conditions.append(clusters.c.name == cluster)
    if name is not None:
        conditions.append(models.c.name == name)
    where = and_(true(), *conditions)
    total = conn.execute(select(func.count()).select_from(models).join(clusters, clusters.c.id == models.c.cluster_id)
                         .where(where)).scalar_one()
    rows = conn.execute(_query().where(where).order_by(projects.c.name, models.c.name, clusters.c.name)
                        .limit(page_size).offset((page - 1) * page_size)).all()
    return {"items": [_item(r) for r in rows], "page": page, "page_size": page_size, "total": total}


def get_model(conn: Connection, principal: Principal, model_id: int) -> dict[str, Any]:
    """One model and the evaluations of it (same project, cluster and name), newest first."""
    query = _query().where(models.c.id == model_id, *project_service.visible_to(conn, principal, models.c.project_id))
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"model {model_id} not found")
    return {**_item(row), **list_evaluations(conn, principal, project=row.project, cluster=row.cluster,
                                             model=row.name)}


def list_evaluations(conn: Connection, principal: Principal, *, project: str, model: str | None = None,
                     cluster: str | None = None, limit: int = MAX_EVALUATIONS) -> dict[str, Any]:
    """A project's evaluations (of ``model`` if given), newest first, each with its metrics,
    and ``metric_names``: every metric any of them reported (a column each, to compare)."""
    project_id = project_service.resolve(conn, principal, project)["id"]
    model_of = workloads.c.spec["model"].as_string()
    query = (select(workloads.c.id, workloads.c.name, workloads.c.cluster_name, workloads.c.status,
                    workloads.c.created_at, workloads.c.finished_at, workloads.c.spec)
             .where(workloads.c.project_id == project_id,
                    workloads.c.type == WorkloadType.EVALUATION.value)
             .order_by(workloads.c.created_at.desc(), workloads.c.id.desc()).limit(limit))
    if model is not None:
        query = query.where(model_of == model)
    if cluster is not None:
        query = query.where(workloads.c.cluster_name == cluster)
    rows = conn.execute(query).all()
    results: dict[int, list[Mapping[str, Any]]] = {}
    if rows:
        for c in conn.execute(select(components.c.workload_id, components.c.result)
                              .where(components.c.workload_id.in_([r.id for r in rows]),
                                     components.c.result.is_not(None)).order_by(components.c.id)):
            results.setdefault(c.workload_id, []).append(c.result)
    items, names = [], {}
    for r in rows:
        metrics, error = merged_metrics(results.get(r.id, []))
        names.update(dict.fromkeys(metrics or {}))
        spec = r.spec or {}
        items.append({"id": r.id, "name": r.name, "cluster": r.cluster_name, "status": r.status,
                      "model": spec.get("model"), "dataset": spec.get("dataset"), "tasks": spec.get("tasks"),
                      "created_at": r.created_at, "finished_at": r.finished_at, "metrics": metrics,
                      "error": error})
    return {"evaluations": items, "metric_names": sorted(names)}

