"""`corral serve`: migrate, bootstrap, keep the built-in cluster alive, serve the API."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from corral.cli import output

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from corral.domain.resources import Resources
    from corral.settings import Settings


ADMIN_EMAIL = "admin@localhost"  # the administrator a first start creates (services.bootstrap)


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default: CORRAL_HOST or "
                                                            "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535,
                                             help="Port (default: CORRAL_PORT or 8000).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes.")] = 1,
) -> None:
    """Run the Corral server: migrate the database, create what a first start needs, serve."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from corral.db.engine import make_engine
    from corral.db.migrate import upgrade
    from corral.services.bootstrap import bootstrap
    from corral.settings import Settings
    from corral.stack_dump import dump_stacks_on_sigusr1

    dump_stacks_on_sigusr1()
    settings = Settings()
    settings = settings.model_copy(update={"host": host or settings.host,
                                           "port": settings.port if port is None else port})
    engine = make_engine(settings.resolved_database_url(), pool_size=settings.http_threads + 4)
    created_token_file = None
    gpus = _local_gpus()
    try:
        upgrade(engine)
        if settings.bootstrap:
            result = bootstrap(engine, data_dir=settings.data_dir, cluster_name=settings.local_cluster_name,
                               project_name=settings.default_project_name,
                               unhealthy_after_s=settings.cluster_unhealthy_after_s, gpus=gpus)
            created_token_file = result.token_file
        admin_email = _first_admin(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        output.fail(f"cannot prepare the database {_database_label(settings)}: {str(exc).splitlines()[0]}")
    _print_login_hint(settings, created_token_file, admin_email)

    # Everything started here ends with serve: on SIGTERM/SIGINT uvicorn stops (open
    # streams end, requests in flight get CORRAL_SHUTDOWN_GRACE_S), then this cleanup runs.
    # If serve dies without it (kill -9), the scheduler sees its stdin pipe close and exits.
    # The built-in cluster's workloads are detached on purpose: they keep running.
    scheduler = _start_scheduler(settings)
    local_agent = None
    try:
        local_agent = _start_local_agent(engine, settings, gpus)
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            # Each worker builds its own app (and engine) from the same CORRAL_* settings,
            # --host/--port included (workload origins are w<id>.<apps domain>:<port>).
            # CORRAL_SERVE_PID: a worker still starting when serve is killed must not take
            # its new parent (init) for serve.
            os.environ.update(CORRAL_HOST=settings.host, CORRAL_PORT=str(settings.port),
                              CORRAL_SERVE_PID=str(os.getpid()))
            config = uvicorn.Config("corral.cli.server:worker_app", factory=True, host=settings.host,
                                    port=settings.port, workers=workers, log_level=settings.log_level,
                                    timeout_graceful_shutdown=settings.shutdown_grace_s)
            sock = config.bind_socket()
            agent = local_agent

            class Workers(Multiprocess):
                # As for one worker (below): the agent stops asking before the workers go.
                def handle_int(self) -> None:
                    if agent is not None:
                        agent.agent.stop()
                    super().handle_int()

                def handle_term(self) -> None:
                    if agent is not None:
                        agent.agent.stop()
                    super().handle_term()

            try:
                Workers(config, sockets=[sock]).run()
            finally:
                sock.close()  # before the agent stops: its calls are refused, not left waiting
        else:
            from corral.api.app import create_app

            app = create_app(settings, engine)
            agent = local_agent

            def on_stop() -> None:
                app.state.shutting_down.set()
                if agent is not None:
                    # Its held poll is answered as the server stops: it must not ask again
                    # (and log a failure) while the port closes. Workloads keep running.
                    agent.agent.stop()

            server = _uvicorn_server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                                    log_level=settings.log_level,
                                                    timeout_graceful_shutdown=settings.shutdown_grace_s),
                                     on_stop=on_stop)
            server.run()
            if not server.started:
                raise SystemExit(3)  # as uvicorn.run: startup failed (the port is taken, ...)
    finally:
        if scheduler is not None:
            scheduler.terminate()  # it ends its pass while the agent stops
        if local_agent is not None:
            local_agent.stop()
        if scheduler is not None:
            _wait_or_kill(scheduler, timeout=10)
        engine.dispose()


def _uvicorn_server(config, on_stop):  # type: ignore[no-untyped-def]
    """uvicorn's Server (one that ticks once a second: ``quiet_uvicorn``), except that it
    tells the app when it is asked to stop (open log follow streams end at once instead of
    holding the shutdown), and returns after its shutdown instead of re-raising the
    signal, which would end serve before its cleanup."""
    import contextlib
    import signal

    from corral.quiet_uvicorn import QuietServer

    class Server(QuietServer):
        def handle_exit(self, sig, frame):  # type: ignore[no-untyped-def]
            on_stop()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server(config)


def worker_app():  # type: ignore[no-untyped-def]
    """The app of one worker process of `corral serve --workers N` (uvicorn's factory): it
    ends its streams when the worker is told to stop, and the worker stops when serve is
    gone, even after kill -9 (uvicorn's workers would otherwise keep serving)."""
    import os
    import signal
    import threading
    import time

    from corral.api.app import create_app

    app = create_app()
    # uvicorn has installed its handlers by now (the factory runs inside them): chain ours.
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if callable(previous):
            def chained(signum, frame, previous=previous):  # type: ignore[no-untyped-def]
                app.state.shutting_down.set()
                previous(signum, frame)

            signal.signal(sig, chained)
    # serve's pid, not os.getppid() now: serve may have died while this worker started.
    parent = int(os.environ.get("CORRAL_SERVE_PID") or os.getppid())

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop, as if serve had asked

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    return app


def _client_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def corral_command() -> str:
    """How to run this very `corral` from a shell: plain `corral` when that is what PATH
    finds, else its full path (a virtual environment not activated), else `python -m`."""
    script = Path(sys.argv[0]) if Path(sys.argv[0]).name == "corral" else Path(sys.executable).parent / "corral"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m corral.cli.main"
    found = shutil.which("corral")
    if found is not None and os.path.samefile(found, script):
        return "corral"
    return shlex.quote(str(script.absolute()))


def _print_login_hint(settings: Settings, created_token_file: Path | None, admin_email: str | None) -> None:
    """How to log in; the token itself is never printed, only where it is."""
    url = _client_url(settings)
    token_file = settings.data_dir / "admin-token"
    corral = corral_command()
    text = Text()
    if created_token_file is not None:
        text.append("First start: created the administrator admin@localhost.\n"
                    f"Its API token is in {created_token_file} (readable by you only).\n\n")
    text.append(f"Corral is starting on {url}\n", style="bold")
    if token_file.is_file():
        text.append("Log in with:\n")
        text.append(f"  {corral} login --server {url} --token-file {token_file}\n", style="bold green")
    elif admin_email is not None:
        text.append("Log in with a token: create one on this machine with\n")
        text.append(f"  TOKEN=$({corral} tokens create {admin_email})\n", style="bold green")
        text.append(f"  {corral} login --server {url} --token \"$TOKEN\"\n", style="bold green")
    else:
        text.append("There is no administrator yet: create one on this machine with\n")
        text.append(f"  {corral} users create EMAIL --admin && TOKEN=$({corral} tokens create EMAIL)\n",
                    style="bold green")
        text.append(f"  {corral} login --server {url} --token \"$TOKEN\"\n", style="bold green")
    password_file = settings.data_dir / "admin-password"
    if password_file.is_file():
        # Where the password is, never the password itself.
        text.append(f"Web UI: {url}/ (sign in as {ADMIN_EMAIL} with the password in {password_file})\n")
    else:
        text.append(f"Web UI: {url}/ (set a password with: {corral} users set-password EMAIL)\n")
    text.append(f"Database: {_database_label(settings)}", style="dim")
    # Never wrapped: the command must stay copyable, also from a log file.
    output.out().print(text, soft_wrap=True)


def _first_admin(engine: Engine) -> str | None:
    from sqlalchemy import select

    from corral.db.engine import read_tx
    from corral.db.tables import users

    with read_tx(engine) as conn:
        return conn.execute(select(users.c.email).where(users.c.role == "admin", users.c.disabled_at.is_(None))
                            .order_by(users.c.id).limit(1)).scalar_one_or_none()


def _database_label(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url()).render_as_string(hide_password=True)


def _first_heartbeat(conn: Connection, settings: Settings, capacity: Resources) -> None:
    """The built-in cluster's first heartbeat, written directly, so that it is healthy
    before the first request (its agent's own heartbeats follow once the server answers)."""
    from sqlalchemy import select

    from corral.db.tables import clusters
    from corral.services.clusters import record_heartbeat

    row = conn.execute(select(clusters.c.id, clusters.c.capacity_ephemeral_storage)
                       .where(clusters.c.name == settings.local_cluster_name, clusters.c.kind == "local")).one()
    # Free disk space changes all the time; keeping the registered figure keeps the
    # guarantees made at bootstrap within the capacity.
    capacity = dataclasses.replace(capacity, ephemeral_storage=row.capacity_ephemeral_storage)
    nodes = [{"name": socket.gethostname(), "capacity": capacity.as_dict(), "gpu_vendor": None, "gpu_model": None}]
    record_heartbeat(conn, row.id, capacity=capacity, nodes=nodes,
                     unhealthy_after_s=settings.cluster_unhealthy_after_s)


def _local_gpus() -> int:
    """GPUs of this machine for the built-in cluster (CORRAL_LOCAL_GPUS overrides detection)."""
    import os

    from corral.backends.local.gpus import detect, parse_gpu_setting

    setting = os.environ.get("CORRAL_LOCAL_GPUS")
    return len(parse_gpu_setting(setting) if setting else detect())


def _start_local_agent(engine: Engine, settings: Settings, gpus: int):  # type: ignore[no-untyped-def]
    """The built-in cluster's agent, in a thread (see corral.cli.agent.LocalAgent)."""
    if not settings.run_local_agent:
        return None
    from corral.cli.agent import LocalAgent
    from corral.db.engine import write_tx
    from corral.services.bootstrap import host_capacity
    from corral.services.clusters import local_agent_token

    with write_tx(engine) as conn:
        token = local_agent_token(conn, settings.local_cluster_name)
        if token is None:
            return None
        _first_heartbeat(conn, settings, host_capacity(settings.data_dir, gpus))
    from corral.backends.identity import NOT_ISOLATED, IdentityError
    from corral.cli.agent import Workloads

    workloads = Workloads(settings.workload_users, settings.workload_user_map, settings.workload_root,
                          settings.local_log_max_bytes, settings.workload_user_prefix)
    try:
        agent = LocalAgent(_client_url(settings), token, settings.data_dir, workloads)
    except (IdentityError, OSError) as exc:
        output.fail(f"cannot start the built-in cluster {settings.local_cluster_name!r}: {exc}")
    # Said plainly at every start: whether one project's workloads can read another's.
    isolation = agent.agent.backend.isolation
    output.out().print(Text(f"Cluster {settings.local_cluster_name}: {isolation}",
                            style="bold yellow" if NOT_ISOLATED in isolation else "dim"), soft_wrap=True)
    agent.start()
    return agent


def _start_scheduler(settings: Settings):  # type: ignore[no-untyped-def]
    """The admission loop, in a process of its own (see corral.scheduler.loop). A plain
    subprocess: its stdin is a pipe only serve holds, so it ends when serve ends, however."""
    if not settings.run_scheduler:
        return None
    import os
    import subprocess
    import sys

    env = {**os.environ, "CORRAL_DATABASE_URL": settings.resolved_database_url()}
    return subprocess.Popen([sys.executable, "-m", "corral.scheduler"], stdin=subprocess.PIPE, env=env)


def _wait_or_kill(process, timeout: float) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
