"""Fixtures shared by every test: each database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from CORRAL_TEST_POSTGRES_URL (a server where the user may create
databases). Without it the PostgreSQL half is skipped, unless CORRAL_REQUIRE_POSTGRES=1
(set by `make test` and CI), where a missing PostgreSQL is an error instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from corral.db.engine import make_engine, normalise_url
from corral.db.migrate import upgrade
from corral.db.tables import Base

POSTGRES_URL = os.environ.get("CORRAL_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("CORRAL_REQUIRE_POSTGRES") == "1"


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session", autouse=True)
def _cli_warm_processes() -> Iterator[None]:
    """The `corral` calls of the tests leave their warm process (corral.cli.entry) in a
    runtime directory of the run's own, stopped at the end: none outlives the run, and none
    of a developer's own serves a test."""
    runtime = tempfile.mkdtemp(prefix="corral-rt-", dir="/tmp")
    os.chmod(runtime, 0o700)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("XDG_RUNTIME_DIR", runtime)
            yield
    finally:
        import subprocess

        subprocess.run(["pkill", "-TERM", "-f", f"corral.cli.warm {runtime}/"], check=False)
        shutil.rmtree(runtime, ignore_errors=True)


# The one skip CI allows: no Kubernetes API server can run on these machines (and no
# stand-in counts as one). The Kubernetes backend's live tests and its conformance entry
# skip with exactly this reason; set KUBECONFIG to a kind, k3s or real cluster to run them.
LIVE_KUBERNETES_SKIP = "needs a live Kubernetes cluster: set KUBECONFIG (kind, k3s or a real cluster)"
_ALLOWED_SKIPS = (LIVE_KUBERNETES_SKIP, f"kubernetes backend: {LIVE_KUBERNETES_SKIP}")


def _skip_reason(report) -> str:  # type: ignore[no-untyped-def]
    longrepr = getattr(report, "longrepr", None)
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return text.removeprefix("Skipped: ")


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    """With CORRAL_FAIL_ON_SKIP=1 (make test, CI) a skipped test fails the run: a skip hides a gap.
    Only skips for want of a live Kubernetes cluster (``LIVE_KUBERNETES_SKIP``) are allowed,
    counted and said."""
    if os.environ.get("CORRAL_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reports = reporter.stats.get("skipped", []) if reporter else []
    allowed = [r for r in reports if _skip_reason(r).startswith(_ALLOWED_SKIPS)]
    if allowed:
        reporter.write_line(f"allowed {len(allowed)} skipped tests (CORRAL_FAIL_ON_SKIP=1): {LIVE_KUBERNETES_SKIP}",
                            yellow=True)
    skipped = len(reports) - len(allowed)
    if skipped and exitstatus == 0:
        reporter.write_line(f"FAILED: {skipped} tests were skipped (CORRAL_FAIL_ON_SKIP=1)", red=True)
        session.exitstatus = 1


def work_root_for(state_dir: Path) -> Path:
    """The work area of a local cluster whose state is in ``state_dir``: the same for the
    same state directory (a backend that re-adopts finds its components' reports), and
    reachable by per-project workload users, which pytest's 0700 tmp directories are not."""
    base = Path(tempfile.gettempdir()) / "corral-test-work"
    base.mkdir(mode=0o711, exist_ok=True)
    os.chmod(base, 0o711)
    return base / hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "corral.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration; skipped (or failed, when
    PostgreSQL is required) if there is no usable server."""
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("CORRAL_REQUIRE_POSTGRES=1 but CORRAL_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL tests need CORRAL_TEST_POSTGRES_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required but unusable: {exc}")
        pytest.skip(f"PostgreSQL unusable: {exc}")
    try:
        yield make_url(normalise_url(POSTGRES_URL)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    with fresh_postgres_database("corral_test") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a copy of a template on SQLite, a truncated one on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "corral.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("_postgres_database")
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, pool_size=5)
    yield engine
    engine.dispose()
