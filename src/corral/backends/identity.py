"""Who a workload runs as, and so what it can read: the one place every backend asks.

    identities = Identities.from_settings(mode="auto", user_map="vision=alice")
    run_as = identities.for_project("vision")     # RunAs(user="alice", uid=..., ...) or None
    identities.isolated                           # False: every workload runs as Corral itself
    identities.notice                             # what the operator and the cluster page are told

The rule (``shared/spec/security.md``): each project's workloads run as an unprivileged
OS user of their own, so that the kernel, not Corral, keeps one team's processes away
from another team's files, environments (``/proc/<pid>/environ``) and from Corral's own
state. A project's user is the one the operator maps it to (``user_map``), else
``<prefix><project>``, created on first use (a system account, no password, no login
shell, in the GPU device groups ``video`` and ``render`` where they exist). Slurm submits
as the same user (``sbatch --uid`` needs root; otherwise the agent's own user and an
account per project); Kubernetes maps a project to a namespace and service account
instead of a Unix user.

Modes:

- ``auto`` (default): per-project users when Corral runs as root (it can switch users),
  else shared;
- ``per-project``: per-project users, and an error where Corral cannot switch users;
- ``shared``: every workload runs as Corral's own user. Nothing then separates one
  project's workloads from another's, or from Corral: :attr:`Identities.notice` says so,
  at start and on the cluster page.

Standard library only (the agent imports it; no database, no web).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass

MODES = ("auto", "per-project", "shared")
DEFAULT_PREFIX = "corral-"
MAX_USER_NAME = 32  # useradd's limit on Linux
GPU_GROUPS = ("video", "render")  # /dev/dri and /dev/kfd belong to these
NOT_ISOLATED = "workloads are not isolated from each other"
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")


class IdentityError(Exception):
    """A project's user cannot be found or created; the message says what to do."""


@dataclass(frozen=True, slots=True)
class RunAs:
    """An OS identity a workload runs as."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def as_dict(self) -> dict[str, object]:
        return {"user": self.user, "uid": self.uid, "gid": self.gid, "groups": list(self.groups), "home": self.home}


def parse_user_map(text: str | None) -> dict[str, str]:
    """``"vision=alice, nlp=bob"`` -> ``{"vision": "alice", "nlp": "bob"}``."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        project, sep, user = item.partition("=")
        project, user = project.strip(), user.strip()
        if not sep or not project or not user:
            raise IdentityError(f"user map entry {item.strip()!r} is not PROJECT=USER")
        mapping[project] = user
    return mapping


def user_name_for(project: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The OS user a project gets when the operator mapped it to none: ``corral-<project>``,
    shortened with a hash of the full name when that is over 32 characters (project names
    are DNS labels up to 41 characters, so two long names never share a user)."""
    name = f"{prefix}{project}"
    if len(name) <= MAX_USER_NAME:
        return name
    digest = hashlib.sha256(project.encode()).hexdigest()[:8]
    return f"{prefix}{project[: MAX_USER_NAME - len(prefix) - 9]}-{digest}"


class Identities:
    """Resolves (and where allowed creates) the OS user of each project. Thread-safe."""

    def __init__(self, *, isolated: bool, prefix: str = DEFAULT_PREFIX, user_map: Mapping[str, str] | None = None,
                 create_users: bool = True, home_root: str | None = None) -> None:
        self.isolated = isolated
        self.prefix = prefix
        self.user_map = dict(user_map or {})
        self.create_users = create_users
        self.home_root = home_root  # where created users' homes are said to be (passwd entry only)
        self._cache: dict[str, RunAs] = {}
        self._lock = threading.Lock()
        me = pwd.getpwuid(os.geteuid()).pw_name if _has_passwd_entry(os.geteuid()) else str(os.geteuid())
        self.corral_user = me

    @classmethod
    def from_settings(cls, mode: str = "auto", user_map: str | None = None, prefix: str = DEFAULT_PREFIX,
                      home_root: str | None = None) -> Identities:
        if mode not in MODES:
            raise IdentityError(f"workload users mode {mode!r}: expected one of {', '.join(MODES)}")
        can_switch = os.geteuid() == 0
        if mode == "per-project" and not can_switch:
            raise IdentityError("per-project workload users need Corral to run as root (it switches to each "
                                "project's user); run as root, or set CORRAL_WORKLOAD_USERS=shared")
        isolated = can_switch and mode != "shared"
        return cls(isolated=isolated, prefix=prefix, user_map=parse_user_map(user_map), home_root=home_root)

    @property
    def notice(self) -> str:
        """One line for the operator and the cluster page: how workloads are kept apart."""
        if self.isolated:
            return "each project's workloads run as an OS user of their own"
        return (f"{NOT_ISOLATED}: every workload runs as {self.corral_user}, Corral's own user, and can read "
                f"what Corral can (its database and keys included); run Corral as root to isolate projects")

    def user_name(self, project: str) -> str:
        return self.user_map.get(project) or user_name_for(project, self.prefix)

    def for_project(self, project: str) -> RunAs | None:
        """The identity ``project``'s workloads run as; None in shared mode (Corral's own)."""
        if not self.isolated:
            return None
        with self._lock:
            cached = self._cache.get(project)
            if cached is not None:
                return cached
            name = self.user_name(project)
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                if project in self.user_map or not self.create_users:
                    raise IdentityError(f"project {project} runs as OS user {name!r}, which does not exist") from None
                entry = self._create(name, project)
            if entry.pw_uid == 0:
                raise IdentityError(f"project {project} is mapped to {name!r}, which is root: refused")
            groups = sorted({entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)})
            run_as = RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, tuple(groups), entry.pw_dir)
            self._cache[project] = run_as
            return run_as

    def _create(self, name: str, project: str) -> pwd.struct_passwd:
        if not _USER_NAME.match(name):
            raise IdentityError(f"cannot create OS user {name!r} for project {project}: not a valid user name")
        home = os.path.join(self.home_root, project) if self.home_root else "/nonexistent"
        command = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home,
                   "--shell", "/usr/sbin/nologin", "--comment", f"Corral project {project}"]
        extra = [g for g in GPU_GROUPS if _group_exists(g)]
        if extra:
            command += ["--groups", ",".join(extra)]
        try:
            result = subprocess.run([*command, name], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise IdentityError(f"cannot create OS user {name!r} for project {project}: {exc}") from exc
        if result.returncode not in (0, 9):  # 9: it appeared meanwhile (another agent)
            raise IdentityError(f"cannot create OS user {name!r} for project {project}: "
                                f"{(result.stderr or result.stdout).strip() or f'useradd exited {result.returncode}'}")
        return pwd.getpwnam(name)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


# -- Kubernetes: a project is a namespace and a service account, not an OS user ---------

KUBE_NAMESPACE_PREFIX = "corral-"
KUBE_SERVICE_ACCOUNT = "corral-workload"
MAX_NAMESPACE = 63  # a DNS label


@dataclass(frozen=True, slots=True)
class KubeIdentity:
    """Who a project's workloads run as on Kubernetes: pods in the project's own namespace,
    under a service account that is granted nothing (no RoleBinding names it, and its
    token is not mounted), so a workload reaches neither the API nor another project's
    Secrets. Secrets a workload needs are Kubernetes Secrets in that namespace only."""

    namespace: str
    service_account: str = KUBE_SERVICE_ACCOUNT


def kube_identity(project: str, prefix: str = KUBE_NAMESPACE_PREFIX) -> KubeIdentity:
    """``vision`` -> namespace ``corral-vision``; a name past 63 characters is shortened
    with a hash of the project's name (as ``user_name_for``), so two projects never share one."""
    name = f"{prefix}{project}"
    if len(name) > MAX_NAMESPACE:
        digest = hashlib.sha256(project.encode()).hexdigest()[:8]
        name = f"{prefix}{project[: MAX_NAMESPACE - len(prefix) - 9]}-{digest}"
    return KubeIdentity(namespace=name)
