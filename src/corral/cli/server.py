"""`corral serve`: migrate, bootstrap, keep the built-in cluster alive, serve the API."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.panel import Panel
from rich.text import Text

from corral.cli import output

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from corral.domain.resources import Resources
    from corral.settings import Settings

log = logging.getLogger("corral.serve")

HEARTBEAT_INTERVAL_S = 15.0


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default: CORRAL_HOST or "
                                                            "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535,
                                             help="Port (default: CORRAL_PORT or 8000).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes.")] = 1,
) -> None:
    """Run the Corral server: migrate the database, create what a first start needs, serve."""
    import uvicorn

    from corral.db.engine import make_engine
    from corral.db.migrate import upgrade
    from corral.services.bootstrap import bootstrap, host_capacity
    from corral.settings import Settings

    settings = Settings()
    settings = settings.model_copy(update={"host": host or settings.host,
                                           "port": settings.port if port is None else port})
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    created_token_file = None
    if settings.bootstrap:
        result = bootstrap(engine, data_dir=settings.data_dir, cluster_name=settings.local_cluster_name,
                           project_name=settings.default_project_name,
                           unhealthy_after_s=settings.cluster_unhealthy_after_s)
        created_token_file = result.token_file
    _print_login_hint(settings, created_token_file)

    stop = threading.Event()
    heartbeat = LocalHeartbeat(engine, settings, host_capacity(settings.data_dir), stop)
    heartbeat.beat()  # at once, so the built-in cluster is healthy before the first request
    heartbeat.start()
    try:
        if workers > 1:
            # Each worker builds its own app (and engine) from the same CORRAL_* settings.
            uvicorn.run("corral.api.app:create_app", factory=True, host=settings.host, port=settings.port,
                        workers=workers, log_level=settings.log_level)
        else:
            from corral.api.app import create_app

            uvicorn.run(create_app(settings, engine), host=settings.host, port=settings.port,
                        log_level=settings.log_level)
    finally:
        stop.set()
        heartbeat.join(timeout=5)
        engine.dispose()


def _client_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _print_login_hint(settings: Settings, created_token_file: Path | None) -> None:
    """How to log in; the token itself is never printed, only where it is."""
    url = _client_url(settings)
    token_file = settings.data_dir / "admin-token"
    text = Text()
    if created_token_file is not None:
        text.append("First start: created the administrator admin@localhost.\n"
                    f"Its API token is in {created_token_file} (readable by you only).\n\n")
    text.append(f"Corral is starting on {url}\n", style="bold")
    if token_file.is_file():
        text.append("Log in with:\n")
        text.append(f"  corral login --server {url} --token-file {token_file}\n", style="bold green")
    else:
        text.append("Log in with a token: create one on this machine with\n")
        text.append("  TOKEN=$(corral tokens create admin@localhost)\n", style="bold green")
        text.append(f"  corral login --server {url} --token \"$TOKEN\"\n", style="bold green")
    text.append(f"Database: {_database_label(settings)}", style="dim")
    output.out().print(Panel(text, title="corral", title_align="left", expand=False))


def _database_label(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url()).render_as_string(hide_password=True)


class LocalHeartbeat(threading.Thread):
    """The agent of the built-in local cluster: this process, reporting every 15 s."""

    def __init__(self, engine: Engine, settings: Settings, capacity: Resources, stop: threading.Event) -> None:
        super().__init__(name="local-cluster-heartbeat", daemon=True)
        self._engine = engine
        self._settings = settings
        self._capacity: Resources | None = capacity  # reported once, then unchanged
        self._stop_event = stop
        # Often enough that a healthy server never looks silent, even with a short threshold.
        self.interval = max(1.0, min(HEARTBEAT_INTERVAL_S, settings.cluster_unhealthy_after_s / 3))

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def beat(self) -> bool:
        from sqlalchemy import select

        from corral.db.engine import write_tx
        from corral.db.tables import clusters
        from corral.services.clusters import record_heartbeat

        name = self._settings.local_cluster_name
        try:
            with write_tx(self._engine) as conn:
                cluster_id = conn.execute(
                    select(clusters.c.id).where(clusters.c.name == name, clusters.c.kind == "local")
                ).scalar_one_or_none()
                if cluster_id is None:
                    return False
                nodes = None
                if self._capacity is not None:
                    nodes = [{"name": socket.gethostname(), "capacity": self._capacity.as_dict(),
                              "gpu_vendor": None, "gpu_model": None}]
                record_heartbeat(conn, cluster_id, capacity=self._capacity, nodes=nodes,
                                 unhealthy_after_s=self._settings.cluster_unhealthy_after_s)
            self._capacity = None
            return True
        except Exception:  # noqa: BLE001 - a missed beat must not stop the server
            log.warning("heartbeat of the local cluster %r failed", name, exc_info=True)
            return False
