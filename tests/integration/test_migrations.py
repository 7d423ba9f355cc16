"""One migration chain for both databases: it builds exactly the schema the models describe."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from corral.db.engine import make_engine
from corral.db.migrate import current_revision, downgrade, head_revision, include_object, upgrade
from corral.db.tables import Base
from corral.domain.resources import Resources
from corral.services import clusters, projects, users
from corral.services.principal import Principal
from tests.conftest import fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgres_database("corral_mig") as url:
        yield url


def _diff(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_from_empty_matches_the_models(empty_url):
    engine = make_engine(empty_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    assert _diff(engine) == []
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= names
    engine.dispose()


def test_name_search_objects_exist(empty_url):
    engine = make_engine(empty_url)
    upgrade(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.execute(text("SELECT name FROM sqlite_master WHERE name = 'workload_names'")).first()
        else:
            found = conn.execute(text("SELECT indexname FROM pg_indexes WHERE indexname = 'ix_workloads_name_trgm'"))\
                .first()
    assert found is not None
    engine.dispose()


def test_downgrade_to_nothing_and_up_again(empty_url):
    engine = make_engine(empty_url)
    upgrade(engine)
    downgrade(engine, "base")
    assert not {t.name for t in Base.metadata.sorted_tables} & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_postgres_updates_a_reason_in_place(empty_url):
    """Workloads pages keep room for HOT updates (migration 0008): a reason or status change
    rewrites no index entry (PostgreSQL's own statistics say how each update was done)."""
    if not empty_url.startswith("postgresql"):
        return  # SQLite has no such thing: rows are updated in place
    engine = make_engine(empty_url)
    upgrade(engine)
    with engine.begin() as conn:
        options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'workloads'")).scalar_one()
        assert "fillfactor=70" in options
        admin = users.create_user(conn, email="a@x.org", display_name=None, role="admin", actor="test")
        principal = Principal(admin["id"], admin["email"], "admin")
        projects.create_project(conn, principal, name="p1", preemption_policy="never")
        clusters.create_cluster(conn, principal, name="c1", kind="local", capacity=Resources(gpu=1),
                                unhealthy_after_s=90)
        conn.execute(text(
            "INSERT INTO workloads (project_id, cluster_id, cluster_name, created_by, name, type, priority, "
            "preemptible, gpu, cpu, memory, ephemeral_storage, spec, status, status_reason, status_changed_at, "
            "created_at, run_seconds, endpoints, version) SELECT p.id, c.id, 'c', 'a@x', 'w' || g, 'custom', 0, "
            "true, 0, 0, 0, 0, '{}', 'Pending', 'queued', now(), now(), 0, '{}', 0 "
            "FROM projects p, clusters c, generate_series(1, 200) g"))
    with engine.begin() as conn:
        # A pass changes some of the reasons at a time (500 of 100,000 at most per pass).
        conn.execute(text("UPDATE workloads SET status_reason = 'waiting: position ' || id, version = version + 1 "
                          "WHERE id % 5 = 0"))
    with engine.connect() as conn:
        for _ in range(50):  # the statistics collector reports a moment later
            hot, total = conn.execute(text("SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables "
                                           "WHERE relname = 'workloads'")).one()
            if total:
                break
            conn.rollback()
            time.sleep(0.1)
    assert total == 40 and hot >= 36, (hot, total)
    engine.dispose()


def test_stored_specs_say_cpu_in_cores_after_0012_and_millicores_after_going_back(empty_url):
    """A spec stored before 0012 said millicores (2000), which a resubmitted spec reads as
    2,000 cores: 0012 rewrites it in cores, the unit requests and responses use."""
    engine = make_engine(empty_url)
    upgrade(engine, "0011")
    specs = {"whole": {"type": "custom", "name": "w", "resources": {"gpu": 1, "cpu": 2000, "memory": 2147483648}},
             "half": {"type": "custom", "name": "h", "resources": {"cpu": 500}},
             "tiny": {"type": "custom", "name": "t", "resources": {"cpu": 1}},
             "found": {"discovered": True, "command": "sleep 1"}}
    with engine.begin() as conn:
        admin = users.create_user(conn, email="a@x.org", display_name=None, role="admin", actor="test")
        principal = Principal(admin["id"], admin["email"], "admin")
        projects.create_project(conn, principal, name="p1", preemption_policy="never")
        clusters.create_cluster(conn, principal, name="c1", kind="local", capacity=Resources(gpu=1),
                                unhealthy_after_s=90)
        for name, spec in specs.items():
            conn.execute(text(
                "INSERT INTO workloads (project_id, cluster_id, cluster_name, created_by, name, type, priority, "
                "preemptible, gpu, cpu, memory, ephemeral_storage, spec, status, status_reason, status_changed_at, "
                "created_at, run_seconds, endpoints, version, units, spread) SELECT p.id, c.id, 'c1', 'a@x', :name, "
                "'custom', 0, true, 0, 0, 0, 0, :spec, 'Pending', 'queued', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                "0, '{}', 0, 1, false FROM projects p, clusters c"), {"name": name, "spec": json.dumps(spec)})

    def stored() -> dict[str, dict]:
        with engine.connect() as conn:
            return {n: s if isinstance(s, dict) else json.loads(s)
                    for n, s in conn.execute(text("SELECT name, spec FROM workloads")).all()}

    upgrade(engine)
    after = stored()
    assert [after[n]["resources"]["cpu"] for n in ("whole", "half", "tiny")] == [2, 0.5, 0.001]
    assert isinstance(after["whole"]["resources"]["cpu"], int)
    assert after["whole"]["resources"]["memory"] == 2147483648 and after["whole"]["resources"]["gpu"] == 1
    assert after["found"] == specs["found"]
    downgrade(engine, "0011")
    before = stored()
    assert {n: s.get("resources") for n, s in before.items()} == {n: s.get("resources") for n, s in specs.items()}
    engine.dispose()
