"""The `corral` command's warm process (corral.cli.entry, corral.cli.warm), against the real
server: a warm call behaves exactly as a call run in place (output, errors, exit status,
stdin, working directory, Ctrl-C), a changed installation is never served from the old
code, and no other user can make a call run as its owner.

Each test has a runtime directory of its own (XDG_RUNTIME_DIR), so its own warm process.
Whether a call ran warm is seen from the calling process: run with
PYTHONPROFILEIMPORTTIME=1, the interpreter reports every module it imports on stderr, and a
warm call's own process never imports Typer (its child, forked from the warm process,
imports nothing: it starts with all of it loaded).
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from corral.cli.entry import HANDSHAKE_S
from tests.e2e.conftest import CORRAL_BIN, LiveServer, clean_env, make_database, start_server, stop_server

IMPORT_LINE = "import time:"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _postgres_databases: Any) -> Iterator[LiveServer]:
    """One server on SQLite: what is tested here happens before any request reaches it."""
    root = tmp_path_factory.mktemp("server-warm")
    started = start_server(make_database("sqlite", root / "data", _postgres_databases), root / "server.log")
    yield started
    stop_server(started)


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A runtime directory of the test's own (short: a socket's path is at most 108 bytes);
    the warm process started in it is stopped afterwards."""
    path = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))
    path.chmod(0o700)
    yield path
    # Every warm process started in it, its socket there or taken away (a stuck one's).
    subprocess.run(["pkill", "-TERM", "-f", f"corral.cli.warm {path}/"], check=False)
    shutil.rmtree(path, ignore_errors=True)


def env_for(server: LiveServer, runtime: Path, **extra: str) -> dict[str, str]:
    return clean_env({"CORRAL_SERVER": server.url, "CORRAL_TOKEN": server.admin_token,
                      "CORRAL_CONFIG": str(runtime / "none.json"), "XDG_RUNTIME_DIR": str(runtime),
                      "COLUMNS": "100", "PYTHONPROFILEIMPORTTIME": "1", **extra})


def corral(env: dict[str, str], *args: str, input: str | None = None, cwd: Path | None = None
           ) -> tuple[subprocess.CompletedProcess[str], bool]:
    """(the finished call with import lines taken out of stderr, whether it ran warm)."""
    result = subprocess.run([str(CORRAL_BIN), *args], env=env, input=input, capture_output=True, text=True,
                            timeout=60, cwd=cwd)
    imports = [line for line in result.stderr.splitlines() if line.startswith(IMPORT_LINE)]
    result.stderr = "".join(line + "\n" for line in result.stderr.splitlines() if not line.startswith(IMPORT_LINE))
    return result, not any(line.rstrip().endswith(" typer") for line in imports)


def wait_warm(runtime: Path, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        socks = list((runtime / "corral").glob("*.sock"))
        if socks:
            return socks[0]
        time.sleep(0.1)
    pytest.fail(f"no warm process started in {runtime}")


def warm_pid(sock: Path) -> int:
    found = subprocess.run(["pgrep", "-o", "-f", f"corral.cli.warm {sock}"], capture_output=True, text=True).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def same(a: subprocess.CompletedProcess[str], b: subprocess.CompletedProcess[str]) -> None:
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


def test_a_warm_call_does_what_a_call_in_place_does(server: LiveServer, runtime: Path, tmp_path: Path):
    env = env_for(server, runtime)
    first, warm = corral(env, "whoami")
    assert first.returncode == 0 and not warm, first.stderr  # nothing to hand it to yet: runs in place
    wait_warm(runtime)
    cold_env = {**env, "CORRAL_CLI_WARM": "0"}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": "custom", "name": "from-a-file", "project": "default",
                                "command": "sleep 600"}))
    cases: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("whoami",), {}),
        (("workloads", "ls", "--json"), {}),
        (("workloads", "ls"), {}),
        (("workloads", "get", "999999"), {}),  # refused: an error on stderr, a non-zero status
        (("workloads", "no-such-command"), {}),  # a usage error (status 2)
        (("workloads", "submit", "-f", "spec.json", "--json"), {"cwd": tmp_path}),  # a path from the caller's cwd
        (("workloads", "submit", "-f", "-", "--json"), {"input": spec.read_text()}),  # the caller's stdin
        (("projects", "ls"), {}),
    ]
    for args, kwargs in cases:
        cold, ran_warm = corral(cold_env, *args, **kwargs)
        assert not ran_warm
        hot, ran_warm = corral(env, *args, **kwargs)
        assert ran_warm, (args, hot.stderr)
        if "submit" in args:  # two submissions: alike but for their ids and times
            assert hot.returncode == cold.returncode == 0, hot.stderr
            a, b = json.loads(cold.stdout), json.loads(hot.stdout)
            for created in (a, b):  # they would hold the quota the other tests' workloads need
                assert corral(env, "workloads", "delete", str(created["id"]), "--yes")[0].returncode == 0
            assert {k: v for k, v in a.items() if k not in ("id", "created_at")} == \
                   {k: v for k, v in b.items() if k not in ("id", "created_at")}
        else:
            same(cold, hot)


@pytest.fixture
def ticking(server: LiveServer, runtime: Path) -> Iterator[tuple[dict[str, str], int, Path]]:
    """A workload that prints a line every 0.2 s, and a warm process: (env, workload id, socket)."""
    env = env_for(server, runtime)
    created, _ = corral(env, "workloads", "submit", "--type", "custom", "--name", "ticks", "--project", "default",
                        "--json", "--command", "sh -c 'while true; do echo tick; sleep 0.2; done'")
    assert created.returncode == 0, created.stderr
    workload = json.loads(created.stdout)["id"]
    yield env, workload, wait_warm(runtime)
    corral(env, "workloads", "delete", str(workload), "--yes")


def follow(env: dict[str, str], workload: int, **popen: Any) -> subprocess.Popen[str]:
    """`corral workloads logs ID --follow`, once its first line came (it streams: no buffer holds it)."""
    follower = subprocess.Popen([str(CORRAL_BIN), "workloads", "logs", str(workload), "--follow"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                **popen)
    assert ticks(follower), "no output within 30 s"
    return follower


def ticks(follower: subprocess.Popen[str], timeout: float = 30) -> bool:
    ready, _, _ = select.select([follower.stdout], [], [], timeout)
    return bool(ready) and "tick" in follower.stdout.readline()  # type: ignore[union-attr]


def test_ctrl_c_reaches_the_command(ticking):
    env, workload, sock = ticking
    follower = follow(env, workload)
    try:
        children = _children(warm_pid(sock))
        assert len(children) == 1  # the call's child of the warm process
        follower.send_signal(signal.SIGINT)
        # The command stops (Ctrl-C ends `logs --follow` quietly, status 0, as in place);
        # without the signal passed on, the caller would wait for it forever.
        assert follower.wait(timeout=20) == 0
        _gone(children[0])
    finally:
        follower.kill()
        follower.wait()


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "in-place"])
def test_a_call_ended_by_sigterm_ends_by_sigterm(ticking, warm):
    env, workload, _ = ticking
    follower = follow(env if warm else {**env, "CORRAL_CLI_WARM": "0"}, workload)
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(timeout=20) == -signal.SIGTERM  # a shell says 143, either way
    assert "without an exit status" not in follower.stderr.read()  # type: ignore[union-attr]


def test_a_signal_the_caller_ignores_is_not_passed_on(ticking):
    """`nohup corral ... &`: SIGHUP is ignored by the call, wherever it runs."""
    env, workload, _ = ticking
    follower = follow(env, workload, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        follower.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert follower.poll() is None and ticks(follower)
    finally:
        follower.kill()
        follower.wait()


def test_ctrl_z_stops_the_child_with_the_caller(ticking):
    env, workload, sock = ticking
    follower = follow(env, workload)
    try:
        child = _children(warm_pid(sock))[0]
        follower.send_signal(signal.SIGTSTP)
        _state(follower.pid, "T")
        _state(child, "T")  # stopped too: it does not go on reading or writing behind the shell's back
        out = follower.stdout.fileno()  # type: ignore[union-attr]
        while select.select([out], [], [], 0.5)[0]:  # what it wrote before it stopped
            os.read(out, 65536)
        assert not select.select([out], [], [], 1.0)[0]  # nothing while stopped
        follower.send_signal(signal.SIGCONT)
        _state(child, "RS")
        assert select.select([out], [], [], 10)[0] and b"tick" in os.read(out, 65536)  # and it goes on
    finally:
        follower.kill()
        follower.wait()


def _state(pid: int, states: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in states:
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} is {state}, not {states}")


def test_calls_that_need_more_than_the_standard_streams_run_in_place(server: LiveServer, runtime: Path,
                                                                    tmp_path: Path):
    """A path to one of the caller's own descriptors (bash's <(...)) names nothing in the
    warm process; the caller's time zone must show in the times it prints."""
    env = env_for(server, runtime)
    corral(env, "whoami")
    wait_warm(runtime)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": "custom", "name": "from-fd", "project": "default", "command": "true"}))
    with spec.open() as source:
        done = subprocess.run([str(CORRAL_BIN), "workloads", "submit", "-f", f"/dev/fd/{source.fileno()}", "--json"],
                              env=env, capture_output=True, text=True, timeout=60, pass_fds=[source.fileno()])
    assert done.returncode == 0, done.stderr
    workload = str(json.loads(done.stdout)["id"])
    zoned = {**env, "TZ": "America/New_York"}
    hot, ran_warm = corral(zoned, "workloads", "get", workload)
    assert ran_warm
    cold, _ = corral({**zoned, "CORRAL_CLI_WARM": "0"}, "workloads", "get", workload)

    def created(output: str) -> str:  # the one line that cannot change between the calls
        return " ".join(next(line for line in output.splitlines() if line.startswith("Created")).split())

    assert created(hot.stdout) == created(cold.stdout)
    assert corral(env, "workloads", "delete", workload, "--yes")[0].returncode == 0


def test_a_changed_installation_is_not_served_by_the_old_process(server: LiveServer, runtime: Path):
    env = env_for(server, runtime)
    corral(env, "whoami")
    sock = wait_warm(runtime)
    pid = warm_pid(sock)
    assert corral(env, "whoami")[1]
    import corral.cli.output as loaded_by_it

    module = Path(loaded_by_it.__file__)
    module.touch()  # as an upgrade would have written it (same content: harmless to leave)
    result, ran_warm = corral(env, "whoami")
    assert result.returncode == 0 and not ran_warm, result.stderr
    _gone(pid)
    sock = wait_warm(runtime)  # the call in place left a fresh one behind
    assert warm_pid(sock) != pid
    assert corral(env, "whoami")[1]


def test_a_stuck_warm_process_is_passed_by_and_never_runs_the_call_too(server: LiveServer, runtime: Path):
    """A warm process that does not take the call in time (stopped here) is passed by: the
    call runs in place, and once the warm process goes on, it does not run it a second time."""
    env = env_for(server, runtime)
    corral(env, "whoami")
    pid = warm_pid(wait_warm(runtime))
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        created, ran_warm = corral(env, "workloads", "submit", "--type", "custom", "--name", "once",
                                   "--project", "default", "--command", "true", "--json")
        assert created.returncode == 0 and not ran_warm, created.stderr
        assert time.monotonic() - started < HANDSHAKE_S + 20
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(2)  # the warm process, going on, finds the abandoned call
    listed, _ = corral(env, "workloads", "ls", "--name", "once", "--json")
    assert [w["name"] for w in json.loads(listed.stdout)["items"]] == ["once"]
    assert corral(env, "workloads", "delete", str(json.loads(created.stdout)["id"]), "--yes")[0].returncode == 0


NOT_OURS = "is not a directory of yours that only you can enter (calls run in place, slower)"


def test_a_directory_others_can_enter_is_never_used(server: LiveServer, runtime: Path):
    (runtime / "corral").mkdir(mode=0o777)
    (runtime / "corral").chmod(0o777)
    env = env_for(server, runtime)
    for _ in range(2):
        result, ran_warm = corral(env, "whoami")
        assert result.returncode == 0 and not ran_warm, result.stderr
        assert f"corral: no warm process: {runtime / 'corral'} {NOT_OURS}" in result.stderr
    # With no stderr to say it on, the call still runs.
    closed = subprocess.run(["sh", "-c", f"exec {CORRAL_BIN} whoami 2>&-"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert closed.returncode == 0 and "admin" in closed.stdout, closed
    time.sleep(1)
    assert list((runtime / "corral").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to give the directory to another user")
def test_a_directory_another_user_made_first_is_never_used(server: LiveServer, runtime: Path):
    """Another user took the directory's name first (as one can in /tmp): calls run in place
    and say so."""
    (runtime / "corral").mkdir(mode=0o700)
    os.chown(runtime / "corral", pwd.getpwnam("nobody").pw_uid, -1)
    result, ran_warm = corral(env_for(server, runtime), "whoami")
    assert result.returncode == 0 and not ran_warm, result.stderr
    assert NOT_OURS in result.stderr
    assert list((runtime / "corral").iterdir()) == []


ATTACK = """
import json, marshal, os, socket, sys
path, home = sys.argv[1], sys.argv[2]
r, w = os.pipe()
request = marshal.dumps({"argv": ["whoami"], "env": {"HOME": home, "XDG_CONFIG_HOME": home + "/.config",
                         "PATH": "/usr/bin:/bin"}, "cwd": "/", "umask": 0o22, "encodings": [None, None, None]})
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path)
except OSError as exc:
    print(json.dumps({"connect": exc.strerror}))
    sys.exit(0)
answer, error = b"", None
try:  # as corral.cli.entry calls: the request, then on TAKEN the streams with GO
    s.sendall(len(request).to_bytes(4, "big") + request)
    s.settimeout(20)
    answer = s.recv(5)
    if answer[:1] == b"A":
        socket.send_fds(s, [b"G"], [w, w, w])
    while chunk := s.recv(16):
        answer += chunk
except OSError as exc:
    error = exc.strerror or str(exc)
os.close(w)
print(json.dumps({"connect": "ok", "answer": answer.hex(), "output": os.read(r, 65536).decode(), "error": error}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to attack as another user")
def test_another_user_cannot_make_a_call_as_its_owner(server: LiveServer, runtime: Path, tmp_path: Path):
    """The owner has logged in (the token in its config file); user nobody hands the warm
    process a call that would read that file and print whose token it is."""
    home = tmp_path / "home"
    config = home / ".config" / "corral"
    config.mkdir(parents=True)
    (config / "config.json").write_text(json.dumps({"server": server.url, "token": server.admin_token}))
    env = env_for(server, runtime)
    corral(env, "whoami")
    sock = wait_warm(runtime)

    def attack() -> dict[str, Any]:
        done = subprocess.run(["/usr/bin/python3", "-c", ATTACK, str(sock), str(home)],
                              user="nobody", cwd="/", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert attack() == {"connect": "Permission denied"}  # the directory is its owner's alone
    # Were the directory opened up (by mistake), the warm process itself still refuses:
    # nothing runs, nothing is written to the caller's streams, no exit status is sent.
    for directory in (runtime, runtime / "corral"):
        directory.chmod(0o711)
    sock.chmod(0o777)
    refused = attack()
    assert refused["connect"] == "ok" and refused["answer"] == "" and refused["output"] == "", refused
    assert pwd.getpwnam("nobody").pw_uid != os.getuid()
    assert corral(env, "whoami")[0].returncode == 0  # and it still serves its owner


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} is still there")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, for unshare")
def test_a_confined_caller_never_runs_in_an_unconfined_warm_process(server: LiveServer, runtime: Path,
                                                                    tmp_path: Path):
    """A call runs with the warm process's namespaces, cgroup and limits: a caller in a
    network namespace of its own (no network) gets its own answer, not the outer warm
    process's; and one that connects to the outer socket anyway is refused."""
    env = env_for(server, runtime)
    corral(env, "whoami")
    sock = wait_warm(runtime)
    confined = subprocess.run(["unshare", "-n", str(CORRAL_BIN), "whoami"], env=env, capture_output=True, text=True,
                              timeout=60)
    in_place = subprocess.run(["unshare", "-n", str(CORRAL_BIN), "whoami"], env={**env, "CORRAL_CLI_WARM": "0"},
                              capture_output=True, text=True, timeout=60)
    assert confined.returncode == in_place.returncode != 0  # no network in there: it cannot reach the server
    assert "cannot reach" in confined.stderr
    home = tmp_path / "home"
    (home / ".config" / "corral").mkdir(parents=True)
    (home / ".config" / "corral" / "config.json").write_text(json.dumps({"server": server.url,
                                                                       "token": server.admin_token}))
    attack = subprocess.run(["unshare", "-n", "/usr/bin/python3", "-c", ATTACK, str(sock), str(home)],
                            capture_output=True, text=True, timeout=60)
    refused = json.loads(attack.stdout)
    assert refused["connect"] == "ok" and refused["answer"] == "" and refused["output"] == "", refused


LISTENER = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.listen(8)
print("listening", flush=True)
s.settimeout(20)
got = b""
try:
    conn, _ = s.accept()
    conn.settimeout(5)
    while chunk := conn.recv(65536):
        got += chunk
except OSError:
    pass
print(len(got), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to listen as another user")
def test_a_caller_tells_nothing_to_a_socket_another_user_listens_on(server: LiveServer, runtime: Path):
    """Were another user's socket at the warm process's path (a directory swapped under the
    caller), the caller sees whose it is before it sends anything, and runs the call itself."""
    env = env_for(server, runtime)
    expected = Path(subprocess.run(
        [sys.executable, "-c", "from corral.cli.entry import socket_path; print(socket_path())"],
        env=env, capture_output=True, text=True, check=True).stdout.strip())
    spot = Path(tempfile.mkdtemp(prefix="cw-nobody-", dir="/tmp"))
    spot.chmod(0o777)
    listener = subprocess.Popen(["/usr/bin/python3", "-c", LISTENER, str(spot / "s.sock")], user="nobody",
                                stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert listener.stdout.readline().strip() == "listening"  # type: ignore[union-attr]
        os.rename(spot / "s.sock", expected)  # nobody's listening socket, where ours would be
        result, ran_warm = corral(env, "whoami")
        assert result.returncode == 0 and not ran_warm, result.stderr
        assert listener.stdout.readline().strip() == "0"  # type: ignore[union-attr]  # told nothing
    finally:
        listener.kill()
        listener.wait()
        shutil.rmtree(spot, ignore_errors=True)
