"""First start of the embedded mode: an admin, a default project, the local cluster."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select

from corral.db.engine import write_tx
from corral.db.tables import clusters, users
from corral.domain.resources import Resources
from corral.services import clusters as cluster_service, projects as project_service, quotas as quota_service
from corral.services import passwords, users as user_service
from corral.services.principal import SYSTEM, Principal

ADMIN_EMAIL = "admin@localhost"


def private_data_dir(data_dir: Path) -> None:
    """Corral's data directory (database, keys, tokens) is its own alone: 0700, made so
    if an older version created it readable by others."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data_dir.stat().st_mode & 0o077 and data_dir.stat().st_uid == os.geteuid():
        os.chmod(data_dir, 0o700)


def host_capacity(data_dir: Path, gpus: int = 0) -> Resources:
    """This machine's capacity, for the built-in local cluster."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    private_data_dir(data_dir)
    return Resources(gpu=gpus, cpu=(os.cpu_count() or 1) * 1000, memory=memory,
                     ephemeral_storage=shutil.disk_usage(data_dir).free)


@dataclass(frozen=True)
class BootstrapResult:
    token_file: Path | None  # written when an admin was created now
    password_file: Path | None = None  # the admin's web UI password, written with the token file


def bootstrap(engine: Engine, *, data_dir: Path, cluster_name: str, project_name: str,
              unhealthy_after_s: float, gpus: int = 0) -> BootstrapResult:
    """Idempotent: creates only what is missing, so every start may call it."""
    private_data_dir(data_dir)
    with write_tx(engine) as conn:
        token_file = password_file = None
        if conn.execute(select(func.count()).select_from(users)).scalar_one() == 0:
            admin = user_service.create_user(conn, email=ADMIN_EMAIL, display_name="Administrator", role="admin",
                                             actor=SYSTEM)
            secret, _ = user_service.create_token(conn, user_id=admin["id"], name="initial admin token",
                                                  expires_at=None, actor=SYSTEM)
            token_file = data_dir / "admin-token"
            token_file.parent.mkdir(parents=True, exist_ok=True)
            # Written owner-only and never printed: the token is a secret.
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret + "\n")
            # The password for signing in to the web UI, kept the same way.
            password = passwords.generate_password()
            passwords.set_password(conn, email=ADMIN_EMAIL, password=password, actor=SYSTEM)
            password_file = data_dir / "admin-password"
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
        admin_row = conn.execute(select(users.c.id, users.c.email, users.c.role)
                                 .where(users.c.role == "admin").order_by(users.c.id).limit(1)).first()
        if admin_row is None:
            return BootstrapResult(token_file, password_file)
        principal = Principal(admin_row.id, admin_row.email, "admin")
        if conn.execute(select(clusters.c.id).where(clusters.c.name == cluster_name)).first() is None:
            capacity = host_capacity(data_dir, gpus)
            cluster_service.create_cluster(conn, principal, name=cluster_name, kind="local",
                                           description="this machine (built in)", capacity=capacity,
                                           unhealthy_after_s=unhealthy_after_s)
            if not any(p["name"] == project_name for p in project_service.list_projects(conn, principal)):
                project_service.create_project(conn, principal, name=project_name,
                                               description="created on first start")
                project_service.add_member(conn, principal, project_name, admin_row.email)
                quota_service.set_quota(conn, principal, project_name, cluster_name, guaranteed=capacity,
                                        limit=None)
    return BootstrapResult(token_file, password_file)
