"""One migration chain for both databases: it builds exactly the schema the models describe."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from corral.db.engine import make_engine, normalise_url
from corral.db.migrate import current_revision, downgrade, head_revision, include_object, upgrade
from corral.db.tables import Base
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("CORRAL_TEST_POSTGRES_URL is required")
        pytest.skip("PostgreSQL tests need CORRAL_TEST_POSTGRES_URL")
    name = f"corral_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(normalise_url(POSTGRES_URL)).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
