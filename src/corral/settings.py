"""All settings in one object, read once from CORRAL_* environment variables.

The defaults are the embedded mode: a SQLite file in the data directory and the
built-in local cluster, with nothing to configure.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "corral"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORRAL_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: a SQLite file in data_dir. postgresql://... for PostgreSQL"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    # A cluster whose agent has been silent this long is unhealthy.
    cluster_unhealthy_after_s: float = 90.0
    local_cluster_name: str = "local"
    default_project_name: str = "default"
    bootstrap: bool = Field(True, description="on first start create an admin, a project and the local cluster")
    log_level: str = "info"
    # Admission: `corral serve` runs the loop in a process of its own; it looks for
    # changes this often.
    run_scheduler: bool = True
    # `corral serve` runs the built-in local cluster's agent: workloads run as processes here.
    run_local_agent: bool = True
    scheduler_poll_s: float = Field(0.02, gt=0)
    # A queue head waiting longer than this blocks its project's later workloads (anti-starvation).
    starvation_after_s: float = Field(300.0, ge=0)
    # Requests served at once per server process (sync routes run in a thread pool); the
    # database pool holds as many connections plus a few, so none is opened per request.
    http_threads: int = Field(16, ge=1, le=256)
    # GET /metrics answers administrators' API tokens, and this scrape-only token if set
    # (Prometheus: authorization: {credentials: ...}). Never printed or logged.
    metrics_token: str | None = Field(None, repr=False)
    # Request bodies past this are refused (413) before they are read. The largest legitimate
    # ones are about 1-3 MB: a 1,000,000-character batch script, an agent's batch of 10,000
    # status updates; web forms are capped at 2 MiB of their own.
    max_body_bytes: int = Field(4 << 20, ge=64 << 10)
    # Log follow streams (async, no thread each): at most this many open per user and
    # server process (429 beyond); each re-checks its viewer's credentials this often.
    max_log_followers_per_user: int = Field(8, ge=1)
    log_follow_recheck_s: float = Field(3.0, gt=0)
    # On SIGTERM/SIGINT `corral serve` ends open streams and waits at most this long for
    # requests in flight, then stops the scheduler and the built-in agent.
    shutdown_grace_s: float = Field(10.0, ge=0)
    # Project secrets are encrypted with this Fernet key; several comma-separated keys
    # (newest first) rotate: the first encrypts, any decrypts. Unset: <data_dir>/secret.key,
    # created on first use. Never printed or logged.
    secret_key: SecretStr | None = Field(None, description="Fernet key(s), newest first, comma-separated")
    # A workload's web content is served on an origin of its own, never Corral's:
    # <apps_scheme>://w<id>.<apps_domain>[:<apps_port>] (README: "Workload origins").
    # The default needs no DNS: browsers resolve *.localhost to this machine.
    apps_domain: str = Field("localhost", description="wildcard domain of workload origins: w<id>.<apps_domain>")
    apps_scheme: Literal["http", "https"] = "http"
    apps_port: int | None = Field(None, ge=1, le=65535, description="public port of workload origins; default: port")
    # Corral's own origin as browsers reach it (behind a TLS proxy, say); default: this server's address.
    public_url: str | None = Field(None, description="e.g. https://corral.example.com")
    # Also serve workloads at /proxy/<id>/ on Corral's origin: UNSAFE (see README), sandboxed by CSP.
    path_proxy_unsafe: bool = False

    # Who workloads run as (corral.backends.identity): auto (per-project OS users when
    # Corral runs as root, else its own user), per-project, or shared.
    workload_users: str = Field("auto", description="auto | per-project | shared")
    # PROJECT=USER,...: projects whose workloads run as an existing user instead of corral-<project>.
    workload_user_map: str | None = None
    # Created users are <prefix><project>: two Corrals on one host need different prefixes,
    # or their projects of the same name share a user.
    workload_user_prefix: str = Field("corral-", pattern=r"^[a-z_][a-z0-9_-]{0,15}$")
    # The built-in cluster's work area (models, runs, workspaces; see backends/local/workarea.py);
    # default /var/lib/corral/workloads with per-project users, else <data_dir>/local-cluster/work.
    workload_root: Path | None = None
    # A component's output.log is cut to its newest half past this.
    local_log_max_bytes: int = Field(64 << 20, ge=64 << 10)

    # Use over time (services/usage.py): component samples kept this many days, and at most
    # this many per component; quota use and allocation sampled at most every
    # history_interval_s (on a cluster's heartbeat) and kept history_retention_days.
    # The agents sample components every CORRAL_USAGE_INTERVAL_S (agent/usage.py).
    usage_retention_days: float = Field(7.0, gt=0, le=3650)
    usage_max_samples_per_component: int = Field(61_000, ge=10)  # 7 days at 10 s
    history_interval_s: float = Field(60.0, ge=1)
    history_retention_days: float = Field(30.0, gt=0, le=3650)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'corral.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
