"""The SQLite database (with its -wal and -shm files) and the data directory are Corral's
alone: created 0600 / 0700 whatever the umask, and tightened if an older version left
them readable by others."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from corral.db.engine import make_engine, write_tx
from corral.db.migrate import upgrade
from corral.services.bootstrap import bootstrap


@pytest.fixture(autouse=True)
def _permissive_umask() -> Iterator[None]:
    """The usual umask (022): what a default would create readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_its_wal_and_shm_and_its_directory_are_owner_only(tmp_path: Path):
    path = tmp_path / "fresh" / "corral.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with write_tx(engine) as conn:
            conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        with engine.connect() as conn:  # open: the -wal and -shm files exist now
            conn.execute(text("SELECT count(*) FROM probe")).scalar_one()
            companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
            assert all(p.exists() for p in companions)
            assert {p.name: _mode(p) for p in [path, *companions]} == {
                "corral.db": 0o600, "corral.db-wal": 0o600, "corral.db-shm": 0o600}
        assert _mode(path.parent) == 0o700
    finally:
        engine.dispose()


def test_a_database_an_older_version_left_readable_is_tightened(tmp_path: Path):
    path = tmp_path / "corral.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    for file in tmp_path.glob("corral.db*"):
        file.chmod(0o644)
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert {f.name: _mode(f) for f in tmp_path.glob("corral.db*")} == {
            f.name: 0o600 for f in tmp_path.glob("corral.db*")}
    finally:
        engine.dispose()


def test_the_data_directory_is_made_owner_only_at_start(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    engine = make_engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    try:
        upgrade(engine)
        result = bootstrap(engine, data_dir=data_dir, cluster_name="local", project_name="default",
                           unhealthy_after_s=90)
    finally:
        engine.dispose()
    assert _mode(data_dir) == 0o700
    assert result.token_file is not None and _mode(result.token_file) == 0o600
    fresh = tmp_path / "new" / "data"
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(engine)
        bootstrap(engine, data_dir=fresh, cluster_name="local", project_name="default", unhealthy_after_s=90)
    finally:
        engine.dispose()
    assert _mode(fresh) == 0o700
