"""Every writer locks kept counts, then usage (services/status.py): a status report that
moves workloads of several projects writes their counts together before any usage, so it
cannot deadlock with a writer of both projects' counts and usage (a submission batch)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text

from corral.db.engine import write_tx
from corral.db.tables import clusters, components, project_usage, projects, users, workload_counts, workloads
from corral.domain.statuses import ComponentStatus
from corral.services.clock import utcnow
from corral.services.status import ComponentUpdate, Tallies, apply_component_updates, count_delta, usage_delta
from tests.integration.races import race, wait_in_slowed_trigger


def _workload(conn, project: int, cluster: int, user: int, status: str, admitted: bool) -> tuple[int, int]:
    """A one-component workload, with the counts and usage rows it is kept in."""
    now = utcnow() - timedelta(minutes=1)
    workload = conn.execute(insert(workloads).values(
        project_id=project, cluster_id=cluster, cluster_name="c", created_by="a@example.com", created_by_id=user,
        name=f"w{project}", type="custom", priority=0, preemptible=False, spec={}, status=status, cpu=1000,
        status_changed_at=now, created_at=now, cluster_named=True, units=1, spread=False,
        admitted_at=now if admitted else None, first_running_at=now if status == "Running" else None,
        running_since=now if status == "Running" else None,
    ).returning(workloads.c.id)).scalar_one()
    component = conn.execute(insert(components).values(
        workload_id=workload, kind="main", name=f"c{workload}", status=status, observed_at=now, placed=admitted,
    ).returning(components.c.id)).scalar_one()
    conn.execute(insert(workload_counts).values(project_id=project, cluster_id=cluster, type="custom", status=status,
                                                count=1))
    conn.execute(insert(project_usage).values(project_id=project, cluster_id=cluster, gpu=0,
                                              cpu=1000 if admitted else 0,
                                              memory=0, ephemeral_storage=0, queued=0 if admitted else 1))
    return workload, component


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_report_finishing_two_projects_workloads_does_not_deadlock_with_a_submission_to_both(engine):
    """The report's first project's usage row is held (a slowed trigger) while a submission
    to both projects takes their Pending counts and waits for that usage row. Had the report
    written the first workload's counts and usage before the second's counts (as it once
    did, workload by workload), it would now wait for the submission's Pending count of the
    second project: a deadlock, one of them rolled back after a second."""
    now = utcnow()
    with write_tx(engine) as conn:
        user = conn.execute(insert(users).values(email="a@example.com", display_name="A", role="member",
                                                 created_at=now).returning(users.c.id)).scalar_one()
        first, second = (conn.execute(insert(projects).values(name=n, created_at=now).returning(projects.c.id))
                         .scalar_one() for n in ("first", "second"))
        cluster = conn.execute(insert(clusters).values(name="c", kind="local", created_at=now)
                               .returning(clusters.c.id)).scalar_one()
        running, running_component = _workload(conn, first, cluster, user, "Running", admitted=True)
        pending, pending_component = _workload(conn, second, cluster, user, "Pending", admitted=False)
        conn.execute(insert(workload_counts).values(project_id=first, cluster_id=cluster, type="custom",
                                                    status="Pending", count=0))
        conn.execute(text("CREATE FUNCTION slow_usage() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(3); "
                          "RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text(f"CREATE TRIGGER slow_usage BEFORE UPDATE ON project_usage FOR EACH ROW "
                          f"WHEN (NEW.project_id = {first} "
                          "AND pg_backend_pid()::text = current_setting('corral.slow', true)) "
                          "EXECUTE FUNCTION slow_usage()"))

    def report() -> None:
        with write_tx(engine) as conn:
            conn.execute(text("SELECT set_config('corral.slow', pg_backend_pid()::text, true)"))
            at = utcnow()
            applied = apply_component_updates(conn, [
                ComponentUpdate(running_component, ComponentStatus.COMPLETED, "exit 0", at),
                ComponentUpdate(pending_component, ComponentStatus.FAILED, "image not found", at)], "agent")
            assert applied == {"applied": 2, "ignored": 0}

    def submission() -> None:
        wait_in_slowed_trigger(engine)
        with write_tx(engine) as conn:
            Tallies(counts=[count_delta(p, cluster, "custom", "Pending", 1) for p in (first, second)],
                    usage=[usage_delta(p, cluster, queued=1) for p in (first, second)]).write(conn)

    outcomes = race(engine, ("slow_usage", "project_usage"), report=report, submission=submission)
    assert outcomes == {"report": None, "submission": None}, outcomes
    with write_tx(engine) as conn:
        statuses = dict(conn.execute(select(workloads.c.id, workloads.c.status)
                                     .where(workloads.c.id.in_([running, pending]))).all())
        counts = {(r.project_id, r.status): r.count for r in conn.execute(select(workload_counts))}
        usage = {r.project_id: (r.cpu, r.queued) for r in conn.execute(select(project_usage))}
    assert statuses == {running: "Complete", pending: "Failed"}
    assert counts == {(first, "Running"): 0, (first, "Complete"): 1, (first, "Pending"): 1,
                      (second, "Pending"): 1, (second, "Failed"): 1}
    assert usage == {first: (0, 1), second: (0, 1)}  # the first's cpu released; each has the one submitted queued
