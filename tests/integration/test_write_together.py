"""dialect.write_together: several tables' writes in one statement on PostgreSQL (one per
table on SQLite), with the same rows written as the one-by-one statements would."""

from __future__ import annotations

from sqlalchemy import event, insert, select

from corral.db.dialect import AddTo, Rows, write_together
from corral.db.engine import write_tx
from corral.db.tables import clusters, components, events, projects, users, workload_counts, workloads
from corral.services.clock import utcnow

COUNT_KEYS = ("project_id", "cluster_id", "type", "status")


def _project_cluster_workload(conn) -> tuple[int, int, int]:
    now = utcnow()
    user = conn.execute(insert(users).values(email="a@example.com", display_name="A", role="member", created_at=now)
                        .returning(users.c.id)).scalar_one()
    project = conn.execute(insert(projects).values(name="p", created_at=now).returning(projects.c.id)).scalar_one()
    cluster = conn.execute(insert(clusters).values(name="c", kind="local", created_at=now)
                           .returning(clusters.c.id)).scalar_one()
    workload = conn.execute(insert(workloads).values(
        project_id=project, cluster_id=cluster, cluster_name="c", created_by="a@example.com", created_by_id=user,
        name="w", type="custom", priority=0, preemptible=False, spec={}, status="Pending",
        status_changed_at=now, created_at=now, cluster_named=True, units=1, spread=False,
    ).returning(workloads.c.id)).scalar_one()
    return project, cluster, workload


def test_rows_and_additions_of_several_tables_are_written_as_one_by_one(engine):
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
    now = utcnow()
    with write_tx(engine) as conn:
        project, cluster, workload = _project_cluster_workload(conn)
        conn.execute(insert(workload_counts).values(project_id=project, cluster_id=cluster, type="custom",
                                                    status="Pending", count=5))
        statements.clear()
        write_together(
            conn,
            Rows(components, [  # ``result`` (JSON) given for one row, left to its default (NULL) for none
                {"workload_id": workload, "kind": kind, "name": f"wl-{workload}-{kind}", "status": "Pending",
                 "reason": "waiting", "observed_at": now, "placed": False, "gpu": 0, "cpu": 1, "memory": 2,
                 "ephemeral_storage": 0, "result": {"metrics": [1, {"loss": None}]} if kind == "main" else None}
                for kind in ("main", "sidecar")]),
            Rows(events, [{"at": now, "actor": "a@example.com", "subject_type": "workload", "subject_id": workload,
                           "project_id": project, "kind": "submitted", "message": "it's \"quoted\"; ok"}]),
            # Two additions to an existing row (merged: one statement may touch a row once)
            # and one new row.
            AddTo(workload_counts, COUNT_KEYS, ("count",), [
                {"project_id": project, "cluster_id": cluster, "type": "custom", "status": "Pending", "count": 2},
                {"project_id": project, "cluster_id": cluster, "type": "custom", "status": "Pending", "count": -1},
                {"project_id": project, "cluster_id": cluster, "type": "custom", "status": "Running", "count": 1},
            ]),
        )
        written = len(statements)
    assert written == (1 if engine.dialect.name == "postgresql" else 3)
    with engine.connect() as conn:
        comps = conn.execute(select(components.c.kind, components.c.result, components.c.observed_at, components.c.memory)
                             .order_by(components.c.id)).all()
        evs = conn.execute(select(events.c.kind, events.c.message, events.c.at)).all()
        counts = dict(conn.execute(select(workload_counts.c.status, workload_counts.c.count)).all())
    assert comps == [("main", {"metrics": [1, {"loss": None}]}, now, 2), ("sidecar", None, now, 2)]
    assert evs == [("submitted", "it's \"quoted\"; ok", now)]
    assert counts == {"Pending": 6, "Running": 1}


def test_nothing_to_write_writes_nothing(engine):
    statements: list[str] = []
    with write_tx(engine) as conn:
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
        write_together(conn, Rows(events, []), AddTo(workload_counts, COUNT_KEYS, ("count",), []))
    assert statements == []
