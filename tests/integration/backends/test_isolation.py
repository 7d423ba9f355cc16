"""Tenant isolation on the local backend, tested by attacking (shared/spec/security.md).

A workload of project "beta" searches everything it can reach for project "alpha"'s
secret and for Corral's own state: other processes' environments, the backend's state
directory (launches and placements hold secrets), Corral's data files, alpha's files. The
attack passes only where the kernel lets it: in shared mode (no OS user per project)
the very same search finds the secret, which shows the search works.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
import time
from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.identity import NOT_ISOLATED, Identities, user_name_for
from corral.backends.local import LocalBackend
from corral.domain.statuses import ComponentStatus as S
from tests.conftest import work_root_for

from .conftest import Watcher, kill_leftovers

SECRET = "alpha-secret-0d9c4e"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-project users need root (CI runs as root)")

# Reads every file it may under the given roots and every /proc/<pid>/environ; prints
# what held the secret, and how many reads were refused.
SEARCH = r"""
import os, sys
secret, roots = sys.argv[1].encode(), sys.argv[2:]
found, refused = [], 0
def look(path):
    global refused
    try:
        with open(path, "rb") as fh:
            if secret in fh.read(1 << 20):
                found.append(path)
    except PermissionError:
        refused += 1
    except OSError:
        pass
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        look(f"/proc/{pid}/environ")
        look(f"/proc/{pid}/cmdline")
for root in roots:
    for top, dirs, files in os.walk(root, onerror=lambda e: None):
        for name in files:
            look(os.path.join(top, name))
    try:
        os.listdir(root)
    except PermissionError:
        refused += 1
print("uid", os.getuid(), "found", sorted(found), "refused", refused, flush=True)
"""


def _job(cid: int, project: str, command: tuple[str, ...], env: dict[str, str] | None = None) -> Launch:
    return Launch(cid, cid, project, "custom", f"{project}-w{cid}-job", command=command, env=env or {})


def _attack(backend: LocalBackend, watcher: Watcher, data_dir: Path) -> str:
    """alpha runs with its secret; beta searches for it; beta's report line."""
    backend.start(_job(1, "alpha", ("/bin/sh", "-c", "sleep 60"), env={"ALPHA_TOKEN": SECRET}))
    watcher.wait(1, S.RUNNING)
    roots = [str(backend.state_dir), str(data_dir), str(backend.work.root)]
    backend.start(_job(2, "beta", (sys.executable, "-c", SEARCH, SECRET, *roots)))
    done = watcher.wait(2, S.COMPLETED, timeout=30)
    assert done.exit_code == 0
    report = backend.logs(2).strip().splitlines()[-1]
    backend.stop(1, grace_s=0.5)
    watcher.wait(1, S.DELETED)
    return report


def _corral_files(data_dir: Path) -> None:
    """What Corral keeps beside the cluster's state, as Corral writes it (0600 in 0700)."""
    data_dir.mkdir(mode=0o700, exist_ok=True)
    for name in ("secret.key", "admin-token", "corral.db"):
        path = data_dir / name
        path.write_text(f"{name}: {SECRET}\n")
        path.chmod(0o600)


def test_a_workload_cannot_find_another_projects_secret_or_corrals_state(tmp_path: Path):
    data_dir = tmp_path / "data"
    _corral_files(data_dir)
    state = data_dir / "local-cluster"
    backend = LocalBackend(state, gpus="0", work_root=work_root_for(state))
    try:
        assert backend.identities.isolated and NOT_ISOLATED not in backend.isolation
        report = _attack(backend, Watcher(backend), data_dir)
        beta = pwd.getpwnam(user_name_for("beta"))
        assert report.startswith(f"uid {beta.pw_uid} found [] refused "), report
        assert int(report.rsplit(" ", 1)[1]) > 0  # it tried, and the kernel said no
        # Corral's own files stay Corral's: state 0700, launches (with secrets) 0600.
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        launch = state / "components" / "1" / "launch.json"
        assert SECRET in launch.read_text() and stat.S_IMODE(os.stat(launch).st_mode) == 0o600
        # Each project's directory belongs to its own user, and to nobody else.
        alpha_dir = backend.work.project_dir("alpha")
        assert os.stat(alpha_dir).st_uid == pwd.getpwnam(user_name_for("alpha")).pw_uid
        assert stat.S_IMODE(os.stat(alpha_dir).st_mode) == 0o700
    finally:
        backend.close()
        kill_leftovers(state)


def test_in_shared_mode_the_same_attack_succeeds_and_corral_says_so(tmp_path: Path):
    data_dir = tmp_path / "data"
    _corral_files(data_dir)
    state = data_dir / "local-cluster"
    shared = Identities.from_settings("shared")
    backend = LocalBackend(state, gpus="0", identities=shared, work_root=tmp_path / "work")
    try:
        assert backend.isolation.startswith(NOT_ISOLATED)
        report = _attack(backend, Watcher(backend), data_dir)
        assert report.startswith("uid 0 found [") and "launch.json" in report and "secret.key" in report, report
        assert "/environ" in report  # alpha's process environment, read by beta
    finally:
        backend.close()
        kill_leftovers(state)


def test_a_report_linked_to_corrals_key_is_not_read(backend: LocalBackend, watcher: Watcher, tmp_path: Path):
    """The agent runs as root and reads progress files that workloads write: a link (or a
    hard link, or a FIFO) planted there must not make it read (or hang on) anything else."""
    key = tmp_path / "secret.key"
    key.write_text('{"message": "' + SECRET + '"}')
    key.chmod(0o600)
    script = ('ln -s "$KEY" "$CORRAL_PROGRESS_FILE"; mkfifo "${CORRAL_RESULT_FILE}"; '
              'touch "$CORRAL_EVENT_FILE"; sleep 2')
    backend.start(_job(1, "beta", ("/bin/sh", "-c", script), env={"KEY": str(key)}))
    running = watcher.wait(1, S.RUNNING)
    time.sleep(1.0)
    watcher.poll()
    done = watcher.wait(1, S.COMPLETED, timeout=10)
    for obs in watcher.history[1]:
        assert SECRET not in obs.reason and not obs.progress and not obs.result
    assert running.reason.startswith("running") and done.exit_code == 0


def test_output_log_is_cut_to_its_newest_half_with_a_marker(state_dir: Path):
    backend = LocalBackend(state_dir, gpus="0", work_root=work_root_for(state_dir), log_max_bytes=64 << 10)
    try:
        watcher = Watcher(backend)
        script = "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; " \
                 "i=$((i+1)); done; echo last-line; sleep 7"
        backend.start(_job(1, "proj", ("/bin/sh", "-c", script)))
        watcher.wait(1, S.COMPLETED, timeout=30)
        log = backend.logs(1, tail_lines=100_000)
        assert len(log.encode()) <= 64 << 10
        assert log.startswith("[corral: output.log reached 65536 bytes; the oldest ")
        assert log.rstrip().endswith("last-line") and "line-0-" not in log
    finally:
        backend.close()


def test_corrals_code_is_not_writable_from_a_workload(backend: LocalBackend, watcher: Watcher):
    """A workload that tries to plant code in Corral's package (what the next supervisor or
    server would import) is refused; supervisors write no bytecode there either."""
    import corral

    package = Path(corral.__file__).resolve().parent
    # New files only (never touch Corral's own: the test must not damage the tree if it fails).
    script = (f'for target in "{package}/evil.py" "{package}/backends/local/__pycache__/evil.pyc"; do '
              '(echo x > "$target") 2>/dev/null && echo "WROTE $target"; done; '
              f'[ -w "{package}/settings.py" ] && echo "settings.py writable"; echo checked')
    backend.start(_job(1, "beta", ("/bin/sh", "-c", script + "; sleep 1")))
    watcher.wait(1, S.RUNNING)
    supervisor = backend.inspect(1)["status"]["supervisor_pid"]
    environ = Path(f"/proc/{supervisor}/environ").read_bytes().split(b"\0")
    assert b"PYTHONDONTWRITEBYTECODE=1" in environ
    watcher.wait(1, S.COMPLETED, timeout=15)
    assert backend.logs(1) == "checked\n"
    assert not (package / "evil.py").exists()
    assert not (package / "backends" / "local" / "__pycache__" / "evil.pyc").exists()


def test_a_port_taken_by_another_user_never_makes_a_service_ready(backend: LocalBackend, watcher: Watcher):
    """Another user's process listening first on the service's port would get the proxy's
    traffic and the service token: the service stays Pending until its own server listens."""
    import socket

    from corral.backends.base import Readiness

    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        server = ("/bin/sh", "-c", f"while [ ! -f release ]; do sleep 0.05; done; "
                                   f"exec {sys.executable} -m http.server --bind 127.0.0.1 {port}")
        backend.start(Launch(1, 1, "alpha", "custom", "alpha-w1-server", kind="server", command=server,
                             fixed_port=port, readiness=Readiness(None), working_dir=str(_project_dir(backend))))
        watcher.wait(1, lambda o: "waiting for" in o.reason, timeout=10)
        time.sleep(1.0)
        watcher.poll()
        assert watcher.latest(1).status is S.PENDING, watcher.latest(1)  # someone answers, but not its server
    finally:
        squatter.close()
    (_project_dir(backend) / "release").touch()
    running = watcher.wait(1, S.RUNNING, timeout=15)
    assert running.endpoint_url == f"http://127.0.0.1:{port}/"


def _project_dir(backend: LocalBackend) -> Path:
    return backend.work.prepare_project("alpha", backend.identities.for_project("alpha"))


def test_two_instances_on_one_host_never_share_a_cgroup(tmp_path: Path):
    """Component ids start at 1 in every instance; a shared cgroup would let one instance's
    stop kill the other's processes and overwrite their limits."""
    backends = [LocalBackend(tmp_path / name / "state", gpus="0", work_root=work_root_for(tmp_path / name))
                for name in ("a", "b")]
    try:
        for b in backends:
            b.start(Launch(1, 1, "proj", "custom", "proj-w1-job", command=("/bin/sh", "-c", "sleep 5"),
                           memory_bytes=256 << 20, cpu_millicores=500))
        paths = []
        for b in backends:
            Watcher(b).wait(1, S.RUNNING)
            paths.append(b.inspect(1)["status"]["limits"]["cgroup"])
        assert None not in paths and paths[0] != paths[1], paths
    finally:
        for b in backends:
            b.stop(1, grace_s=0.5)
            Watcher(b).wait(1, S.DELETED)
            b.close()


def test_a_link_to_another_projects_store_reveals_nothing(tmp_path: Path):
    """The agent (root) resolves model names inside the project's own directory: a link
    planted there to another project's store must not tell which models exist."""
    from corral.backends.local import modelstore

    root = tmp_path / "work"
    theirs = modelstore.store_dir(root, "alpha") / "secret-model"
    theirs.mkdir(parents=True)
    (theirs / modelstore.MANIFEST).write_text('{"name": "secret-model"}')
    assert modelstore.resolve(root, "alpha", "secret-model") == str(theirs)
    (root / "beta").mkdir()
    (root / "beta" / "models").symlink_to(modelstore.store_dir(root, "alpha"))
    assert modelstore.resolve(root, "beta", "secret-model") is None


def test_vs_code_workspaces_are_refused_where_they_could_not_be_guarded(tmp_path: Path):
    from corral.backends.recipes import VSCODE_UNSAFE, ComponentRef, RecipeError, build_launches

    with pytest.raises(RecipeError) as refused:
        build_launches(workload_id=3, project="beta", workload_type="workspace",
                       spec={"type": "workspace", "name": "ide", "project": "beta", "flavor": "vscode"},
                       components=[ComponentRef(1, "server"), ComponentRef(2, "endpoint")], work_root=tmp_path)
    assert str(refused.value) == VSCODE_UNSAFE
