"""dialect.write_together: several tables' writes in one statement on PostgreSQL (one per
table on SQLite), with the same rows written as the one-by-one statements would."""

from __future__ import annotations


import pytest
from sqlalchemy import delete, event, insert, select, text
from sqlalchemy.exc import DataError

from corral.db.dialect import AddTo, Rows, draw_ids, write_together
from corral.db.engine import write_tx
from corral.db.tables import clusters, components, events, projects, users, workload_counts, workloads
from corral.services.clock import utcnow
from tests.integration.races import race, wait_in_slowed_trigger

COUNT_KEYS = ("project_id", "cluster_id", "type", "status")


def _user_project_cluster(conn) -> tuple[int, int, int]:
    now = utcnow()
    user = conn.execute(insert(users).values(email="a@example.com", display_name="A", role="member", created_at=now)
                        .returning(users.c.id)).scalar_one()
    project = conn.execute(insert(projects).values(name="p", created_at=now).returning(projects.c.id)).scalar_one()
    cluster = conn.execute(insert(clusters).values(name="c", kind="local", created_at=now)
                           .returning(clusters.c.id)).scalar_one()
    return user, project, cluster


def _project_cluster_workload(conn) -> tuple[int, int, int]:
    now = utcnow()
    user, project, cluster = _user_project_cluster(conn)
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
            Rows(components, [  # ``result`` (JSON): a document for one row, None (JSON null) for the other
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
    # PostgreSQL: the new rows in one statement, the additions after them in another.
    assert written == (2 if engine.dialect.name == "postgresql" else 3)
    with engine.connect() as conn:
        comps = conn.execute(select(components.c.kind, components.c.result, components.c.observed_at, components.c.memory)
                             .order_by(components.c.id)).all()
        evs = conn.execute(select(events.c.kind, events.c.message, events.c.at)).all()
        counts = dict(conn.execute(select(workload_counts.c.status, workload_counts.c.count)).all())
    assert comps == [("main", {"metrics": [1, {"loss": None}]}, now, 2), ("sidecar", None, now, 2)]
    with engine.connect() as conn:  # JSON null, not SQL NULL, as an INSERT of one row writes it
        assert conn.execute(text("SELECT result IS NULL FROM components ORDER BY id")).scalars().all() == [False, False]
    assert evs == [("submitted", "it's \"quoted\"; ok", now)]
    assert counts == {"Pending": 6, "Running": 1}


def test_nothing_to_write_writes_nothing(engine):
    statements: list[str] = []
    with write_tx(engine) as conn:
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
        write_together(conn, Rows(events, []), AddTo(workload_counts, COUNT_KEYS, ("count",), []))
    assert statements == []


def test_defaults_of_columns_left_out_are_applied_in_every_table(engine):
    """Both tables leave out ``gpu`` and ``cpu`` (Python-side default 0) and workloads its
    ``endpoints`` (default: a new dict), ``run_seconds`` and ``version``."""
    now = utcnow()
    with write_tx(engine) as conn:
        project, cluster, workload = _project_cluster_workload(conn)
        user = conn.execute(select(users.c.id)).scalar_one()
        write_together(
            conn,
            Rows(workloads, [{
                "project_id": project, "cluster_id": cluster, "cluster_name": "c", "created_by": "a@example.com",
                "created_by_id": user, "name": f"w{i}", "type": "custom", "priority": 0, "preemptible": False,
                "memory": 1, "ephemeral_storage": 0, "spec": {}, "status": "Pending", "status_changed_at": now,
                "created_at": now, "cluster_named": True, "units": 1, "spread": False} for i in range(2)]),
            Rows(components, [{"workload_id": workload, "kind": "main", "name": "left-out", "status": "Pending",
                               "reason": "", "observed_at": now, "placed": False, "memory": 1,
                               "ephemeral_storage": 0}]),
        )
    with engine.connect() as conn:
        stored = conn.execute(select(workloads.c.gpu, workloads.c.cpu, workloads.c.endpoints, workloads.c.run_seconds,
                                     workloads.c.version).where(workloads.c.name.in_(["w0", "w1"]))).all()
        component = conn.execute(select(components.c.gpu, components.c.cpu)).one()
    assert stored == [(0, 0, {}, 0.0, 0)] * 2
    assert tuple(component) == (0, 0)


def test_a_value_too_long_for_its_column_is_refused_not_cut(engine):
    now = utcnow()
    long_name = "x" * 300  # components.name is VARCHAR(253)
    with write_tx(engine) as conn:
        project, _, workload = _project_cluster_workload(conn)
    try:
        with write_tx(engine) as conn:
            write_together(
                conn,
                Rows(components, [{"workload_id": workload, "kind": "main", "name": long_name, "status": "Pending",
                                   "reason": "", "observed_at": now, "placed": False, "gpu": 0, "cpu": 0,
                                   "memory": 0, "ephemeral_storage": 0}]),
                Rows(events, [{"at": now, "actor": "a@example.com", "subject_type": "workload",
                               "subject_id": workload, "project_id": project, "kind": "k", "message": ""}]),
            )
    except DataError:
        assert engine.dialect.name == "postgresql"
    else:  # SQLite does not enforce VARCHAR lengths: there it is stored whole
        assert engine.dialect.name == "sqlite"
        with engine.connect() as conn:
            assert conn.execute(select(components.c.name)).scalar_one() == long_name


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_json_cannot_carry_is_refused_not_written_as_null(engine, number):
    """The rows travel as JSON, which writes NaN and infinities as null: a float column's
    value that JSON cannot carry is refused before anything is sent."""
    now = utcnow()
    with write_tx(engine) as conn:
        project, cluster, workload = _project_cluster_workload(conn)
        user = conn.execute(select(users.c.id)).scalar_one()
    with pytest.raises(ValueError, match="no such number"), write_tx(engine) as conn:
        write_together(
            conn,
            Rows(workloads, [{
                "project_id": project, "cluster_id": cluster, "cluster_name": "c", "created_by": "a@example.com",
                "created_by_id": user, "name": "odd", "type": "custom", "priority": 0, "preemptible": False,
                "memory": 1, "ephemeral_storage": 0, "spec": {}, "status": "Pending", "status_changed_at": now,
                "created_at": now, "cluster_named": True, "units": 1, "spread": False, "run_seconds": number}]),
            Rows(events, [{"at": now, "actor": "a@example.com", "subject_type": "workload",
                           "subject_id": workload, "project_id": project, "kind": "k", "message": ""}]),
        )
    with engine.connect() as conn:
        assert conn.execute(select(workloads.c.name).where(workloads.c.name == "odd")).all() == []
        assert conn.execute(select(events.c.id).where(events.c.kind == "k")).all() == []


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_project_deleted_while_its_submission_is_written_does_not_deadlock(engine):
    """The count rows a submission adds to are locked only after its new rows' foreign-key
    checks (on the project and cluster rows, at the end of their statement). Were they
    locked first, deleting the project meanwhile (it locks the project row, then cascades
    to the count rows) would deadlock with the submission. The events' trigger holds the
    submission's insert statement open while the project is deleted."""
    now = utcnow()
    with write_tx(engine) as conn:  # a project with no workload yet: it may be deleted
        user, project, cluster = _user_project_cluster(conn)
        conn.execute(insert(workload_counts).values(project_id=project, cluster_id=cluster, type="custom",
                                                    status="Pending", count=0))
        conn.execute(text("CREATE FUNCTION slow_event() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(3); "
                          "RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER slow_event BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION slow_event()"))

    def submission() -> None:
        with write_tx(engine) as conn:
            ids, rows = draw_ids(conn, workloads, [{
                "project_id": project, "cluster_id": cluster, "cluster_name": "c", "created_by": "a@example.com",
                "created_by_id": user, "name": "racing", "type": "custom", "priority": 0, "preemptible": False,
                "gpu": 0, "cpu": 1, "memory": 1, "ephemeral_storage": 0, "spec": {}, "status": "Pending",
                "status_reason": "", "status_changed_at": now, "created_at": now, "run_seconds": 0.0,
                "endpoints": {}, "version": 0, "cluster_named": True, "units": 1, "spread": False}])
            write_together(
                conn, rows,
                Rows(events, [{"at": now, "actor": "a@example.com", "subject_type": "workload",
                               "subject_id": ids[0], "project_id": project, "kind": "submitted", "message": ""}]),
                AddTo(workload_counts, COUNT_KEYS, ("count",), [
                    {"project_id": project, "cluster_id": cluster, "type": "custom", "status": "Pending",
                     "count": 1}]))

    def deletion() -> None:
        wait_in_slowed_trigger(engine)  # the submission's statement is in the events' trigger
        with write_tx(engine) as conn:
            conn.execute(delete(projects).where(projects.c.id == project))

    outcomes = race(engine, ("slow_event", "events"), submission=submission, deletion=deletion)
    assert set(outcomes) == {"submission", "deletion"}
    deadlocks = [k for k, v in outcomes.items() if v is not None and "deadlock" in str(v).lower()]
    assert not deadlocks, outcomes
    # One of them wins: the project is gone (the submission then fails its foreign-key
    # check), or the submission stands (the deletion then finds a workload of the project).
    assert (outcomes["deletion"] is None) != (outcomes["submission"] is None), outcomes
