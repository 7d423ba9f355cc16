"""Where local workloads keep their own files, and who owns each part.

Corral's state directory (``LocalBackend(state_dir)``: launches with their secrets,
placements, supervisors' status, output logs) is Corral's alone (0700). What a workload
itself reads and writes lives under the *work area*, a separate root::

    <root>/                    Corral's, 0711: workload users pass through, nobody lists it
        workarea.lock          flock held by the one backend using this work area
        .events/               Corral's, 1733 (sticky): a workload creates <component id>
                               here after it reported progress; nobody can list it or
                               remove another's entry
        .components/<id>/      the component's user, 0700, inside a directory only Corral
                               can change (so it cannot be swapped for a link): the batch
                               script (command.sh), progress.json and result.json
        <project>/             the project's user, 0700: the workloads' HOME, with
                               models/ (the project's model store), runs/<workload id>/ and
                               workspaces/<workload id>/

Everything of a project is readable by that project's workloads only: models are shared
within a project, never across projects. Corral (root) never creates or follows anything
inside a directory a workload owns: the project directory is created in ``<root>`` and
then handed over; its subdirectories are made by the workload's own process after it
switched users (see the supervisor); reports are read with ``O_NOFOLLOW``, must be regular
files owned by the component's user, and are size-capped.

In shared mode (Corral cannot switch users, see ``corral.backends.identity``) the same
layout is used with everything owned by Corral's user, 0700.

Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from corral.backends.identity import RunAs
from corral.backends.local import files as f

EVENTS = ".events"
COMPONENTS = ".components"
LOCK = "workarea.lock"
SCRIPT = "command.sh"
MAX_REPORT_BYTES = 1 << 20  # progress and results are small; anything bigger is not read


# Where per-project users' files live by default: outside any home directory (a 0700 /root
# would keep them out), one work area per host.
DEFAULT_ISOLATED_ROOT = Path("/var/lib/corral/workloads")


def default_root(state_dir: str | os.PathLike[str], isolated: bool) -> Path:
    return DEFAULT_ISOLATED_ROOT if isolated else Path(state_dir) / "work"


class WorkAreaError(OSError):
    """The work area cannot be used (in use, unreachable by workload users, ...)."""


class WorkArea:
    def __init__(self, root: str | os.PathLike[str], *, isolated: bool) -> None:
        self.root = Path(root).resolve()
        self.isolated = isolated
        self.events_dir = self.root / EVENTS
        self.components_dir = self.root / COMPONENTS
        self.root.mkdir(parents=True, exist_ok=True)
        if isolated:
            _own(self.root, 0, 0, 0o711)
        else:
            os.chmod(self.root, 0o700)
        if isolated:
            blocked = unreachable(self.root)
            if blocked:
                raise WorkAreaError(f"the work area {self.root} cannot be reached by workload users: {blocked}; "
                                    "choose another CORRAL_WORKLOAD_ROOT (default /var/lib/corral/workloads)")
        self._lock_fd = self._take_lock()
        for directory, mode in ((self.events_dir, 0o1733 if isolated else 0o700),
                                (self.components_dir, 0o711 if isolated else 0o700)):
            directory.mkdir(exist_ok=True)
            if isolated:
                _own(directory, 0, 0, mode)
            else:
                os.chmod(directory, mode)

    def _take_lock(self) -> int:
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkAreaError(f"the work area {self.root} is in use by pid {holder}; give each Corral "
                                "instance its own CORRAL_WORKLOAD_ROOT") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def close(self) -> None:
        os.close(self._lock_fd)

    # --- a project's directory ----------------------------------------------------------

    def project_dir(self, project: str) -> Path:
        return self.root / project

    def prepare_project(self, project: str, run_as: RunAs | None) -> Path:
        """The project's directory, owned by its user (created on first use)."""
        path = self.project_dir(project)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        if run_as is not None:
            _own(path, run_as.uid, run_as.gid, 0o700)
        return path

    # --- a component's directory ----------------------------------------------------------

    def component_dir(self, component_id: int) -> Path:
        return self.components_dir / str(component_id)

    def event_file(self, component_id: int) -> Path:
        return self.events_dir / str(component_id)

    def prepare_component(self, component_id: int, run_as: RunAs | None, script: str | None) -> Path:
        """A fresh directory for the component's reports (and its script), handed to its
        user once filled: until then only Corral can enter it."""
        path = self.component_dir(component_id)
        shutil.rmtree(path, ignore_errors=True)  # a retry after a crash: start clean
        path.mkdir(mode=0o700)
        if script is not None:
            target = path / SCRIPT
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
            with os.fdopen(fd, "w") as fh:
                fh.write(script)
            if run_as is not None:
                os.chown(target, run_as.uid, run_as.gid)
        if run_as is not None:
            _own(path, run_as.uid, run_as.gid, 0o700)
        return path

    def read_report(self, component_id: int, name: str, uid: int | None = None) -> Any | None:
        """A JSON report the component wrote (progress.json, result.json), or None; only a
        regular file of the component's user (``uid``), see ``files.read_json_untrusted``."""
        return f.read_json_untrusted(self.component_dir(component_id) / name, uid=uid, max_bytes=MAX_REPORT_BYTES)

    def remove_component(self, component_id: int) -> None:
        # rmtree is fd-based on Linux: links planted inside are removed, never followed.
        shutil.rmtree(self.component_dir(component_id), ignore_errors=True)
        try:
            os.unlink(self.event_file(component_id))
        except OSError:
            pass

    def drain_events(self) -> set[int]:
        """Component ids whose workloads reported something since the last call."""
        ids = set()
        try:
            names = os.listdir(self.events_dir)
        except FileNotFoundError:
            return ids
        for name in names:
            try:
                os.unlink(self.events_dir / name)
            except OSError:
                pass
            if name.isdigit():
                ids.add(int(name))
        return ids


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    """Give a directory (never a link: lstat first) its owner and mode."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise WorkAreaError(f"{path} is not a directory")
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def unreachable(path: str | os.PathLike[str]) -> str | None:
    """Why an unprivileged user cannot reach ``path`` (a directory on the way that others
    may not pass through), or None when every directory leading to it can be passed."""
    current = Path(path).resolve()
    for directory in [*reversed(current.parents), current]:
        try:
            mode = os.stat(directory).st_mode
        except OSError as exc:
            return f"{directory}: {exc.strerror}"
        if not mode & stat.S_IXOTH:
            return f"{directory} is mode {stat.S_IMODE(mode):04o}"
    return None
