"""One migration chain for both databases: it builds exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from corral.db.engine import make_engine
from corral.db.migrate import current_revision, downgrade, head_revision, include_object, upgrade
from corral.db.tables import Base
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
