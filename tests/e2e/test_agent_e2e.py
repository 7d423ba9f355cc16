"""Workloads really run: `corral serve` with its built-in local cluster agent, real
processes, statuses reported by the agent, output, the proxy, deletion, GPUs, restarts."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client

from tests.conftest import work_root_for
from tests.e2e.conftest import CORRAL_BIN, LiveServer, clean_env, make_database, ok, start_server, stop_server

PY = sys.executable


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
                        timeout=30)


def _workload_origin(server: LiveServer, wid: int) -> tuple[str, str]:
    """(Host, origin) of a workload's own origin, w<id>.localhost:<port>. Browsers resolve
    *.localhost to this machine; httpx here does not, so it connects to the server's
    address and names the host in the Host header."""
    host = f"w{wid}.localhost:{urlsplit(server.url).port}"
    return host, f"http://{host}"


def _at_workload(server: LiveServer, wid: int, token: str | None = None) -> httpx.Client:
    headers = {"Host": _workload_origin(server, wid)[0]}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def _submit(client: httpx.Client, **body: Any) -> int:
    spec = {"type": "custom", "project": "default", "resources": {"cpu": "100m", "memory": "64Mi"}, **body}
    response = client.post("/api/v1/workloads", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _watch(client: httpx.Client, wid: int, until: set[str], timeout: float = 30.0) -> tuple[dict, list[str]]:
    """Poll until the status is one of ``until``; also the statuses seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        detail = client.get(f"/api/v1/workloads/{wid}").json()
        if not seen or seen[-1] != detail["status"]:
            seen.append(detail["status"])
        if detail["status"] in until:
            return detail, seen
        assert time.monotonic() < deadline, f"workload {wid} still {detail['status']} ({detail['status_reason']})"
        time.sleep(0.03)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_a_batch_job_goes_pending_running_complete_with_its_output(live_server):
    client = _client(live_server)
    wid = _submit(client, name="batch", command="echo started; sleep 1; echo done")
    detail, seen = _watch(client, wid, {"Complete", "Failed"})
    assert detail["status"] == "Complete", detail
    assert seen[0] == "Pending" and "Running" in seen, seen
    transitions = [e["message"] for e in detail["events"] if e["kind"] == "status_changed"]
    assert transitions[0].startswith("Pending -> Running") and transitions[-1].startswith("Running -> Complete")
    assert detail["run_seconds"] >= 0.9
    assert client.get(f"/api/v1/workloads/{wid}/logs").text == "started\ndone\n"
    assert client.get(f"/api/v1/workloads/{wid}/logs", params={"tail": 1}).text == "done\n"


def test_logs_follow_streams_output_while_it_is_written(live_server, tmp_path):
    client = _client(live_server)
    wid = _submit(client, name="ticker", command="for i in 1 2 3 4; do echo tick $i; sleep 0.5; done")
    _watch(client, wid, {"Running", "Complete"})
    cli = live_server.cli(tmp_path / "config.json", token=live_server.admin_token)
    followed = cli.run("workloads", "logs", str(wid), "-f")
    assert followed.returncode == 0, followed.stderr
    # Everything from the start, and the command returned only once the job had ended.
    assert followed.stdout == "tick 1\ntick 2\ntick 3\ntick 4\n"
    assert client.get(f"/api/v1/workloads/{wid}").json()["status"] == "Complete"
    assert ok(cli.invoke("workloads", "logs", str(wid), "--tail", "2")) == "tick 3\ntick 4\n"


def _follower(server: LiveServer, tmp_path: Path, wid: int) -> subprocess.Popen[str]:
    cli = server.cli(tmp_path / "config.json", token=server.admin_token)
    return subprocess.Popen([str(CORRAL_BIN), "workloads", "logs", str(wid), "-f"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(cli.env))


def _first_stderr_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    got: list[str] = []
    assert process.stderr is not None
    stderr = process.stderr
    reader = threading.Thread(target=lambda: got.append(stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert got, "the follower said nothing on stderr"
    return got[0]


def test_logs_follow_waits_for_a_workload_in_the_queue_then_follows_it(live_server, tmp_path):
    client = _client(live_server)
    project = "logs-wait"
    assert client.post("/api/v1/projects", json={"name": project}).status_code == 201
    quota = {"guaranteed": {"gpu": 0, "cpu": 0, "memory": 0}, "limit": {"gpu": 0, "cpu": "200m", "memory": "1Gi"}}
    assert client.put(f"/api/v1/projects/{project}/quotas/local", json=quota).status_code == 200
    resources = {"cpu": "200m", "memory": "64Mi"}
    blocker = _submit(client, project=project, name="blocker", resources=resources, command="sleep 300")
    _watch(client, blocker, {"Running"})
    waiter = _submit(client, project=project, name="waiter", resources=resources,
                     command="echo hello; sleep 0.5; echo bye")
    detail, _ = _watch(client, waiter, {"Pending"})
    assert detail["admitted_at"] is None, detail

    # Waits (saying so on stderr), follows once admitted and started, and ends with it.
    follower = _follower(live_server, tmp_path, waiter)
    try:
        line = _first_stderr_line(follower)
        assert line.startswith(f"waiting for workload {waiter} to start (Pending: "), line
        assert follower.poll() is None
        assert client.delete(f"/api/v1/workloads/{blocker}").status_code in (200, 202)
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert out == "hello\nbye\n"
    assert client.get(f"/api/v1/workloads/{waiter}").json()["status"] == "Complete"

    # Ctrl-C while waiting ends cleanly; one that ends without starting ends with its status.
    blocker = _submit(client, project=project, name="blocker-2", resources=resources, command="sleep 300")
    _watch(client, blocker, {"Running"})
    waiter = _submit(client, project=project, name="waiter-2", resources=resources, command="echo never")
    follower = _follower(live_server, tmp_path, waiter)
    try:
        assert _first_stderr_line(follower).startswith(f"waiting for workload {waiter} to start (Pending: ")
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0 and out == "" and "Traceback" not in err, err
    follower = _follower(live_server, tmp_path, waiter)
    try:
        assert _first_stderr_line(follower).startswith(f"waiting for workload {waiter} to start (Pending: ")
        assert client.delete(f"/api/v1/workloads/{waiter}").status_code in (200, 202)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0 and out == "", err
    last = err.strip().splitlines()[-1]  # its status and reason
    reason = client.get(f"/api/v1/workloads/{waiter}").json()["status_reason"]
    assert reason and last == f"workload {waiter} ended without starting (Deleted: {reason})", err
    client.delete(f"/api/v1/workloads/{blocker}")


def test_a_project_secret_reaches_the_workload_as_an_environment_variable(live_server):
    client = _client(live_server)
    value = f"hf_{uuid.uuid4().hex}"
    assert client.put("/api/v1/projects/default/secrets/hf-token", json={"value": value}).status_code == 200
    # The spec names the secret, never its value; the job prints only a digest of what it got.
    wid = _submit(client, name="uses-secret", secrets={"HF_TOKEN": "hf-token"},
                  command='printf %s "$HF_TOKEN" | sha256sum | cut -c1-64')
    detail, _ = _watch(client, wid, {"Complete", "Failed"})
    assert detail["status"] == "Complete", detail
    expected = hashlib.sha256(value.encode()).hexdigest()
    assert client.get(f"/api/v1/workloads/{wid}/logs").text == expected + "\n"
    assert value not in live_server.log() and value not in str(detail)


def test_a_failing_command_ends_failed_with_its_exit_code(live_server):
    client = _client(live_server)
    wid = _submit(client, name="fails", command="echo trouble >&2; exit 3")
    detail, _ = _watch(client, wid, {"Complete", "Failed"})
    assert detail["status"] == "Failed"
    assert "code 3" in detail["status_reason"], detail["status_reason"]
    assert "trouble" in client.get(f"/api/v1/workloads/{wid}/logs").text


def test_a_service_runs_only_once_ready_is_proxied_and_deletes_to_nothing(live_server, tmp_path_factory):
    client = _client(live_server)
    marker = f"corral-e2e-service-{os.getpid()}-{time.monotonic_ns()}"
    # In the service's argv (findable in /proc); readable by the project's OS user, whoever that is.
    served = Path(tempfile.mkdtemp(prefix=marker))
    served.chmod(0o755)
    (served / "hello.txt").write_text("hello through the proxy\n")
    (served / "hello.txt").chmod(0o644)
    command = f"sleep 1.5; exec {PY} -m http.server {{port}} --bind 127.0.0.1 --directory {served}"
    wid = _submit(client, name="web", command=command, service=True)
    pending = None
    deadline = time.monotonic() + 30
    while True:
        detail = client.get(f"/api/v1/workloads/{wid}").json()
        if detail["status"] == "Running":
            break
        if detail["status"] == "Pending" and any(c["status"] == "Pending" and "waiting for" in c["reason"]
                                                 for c in detail["components"]):
            pending = detail  # started, not ready yet
        assert detail["status"] == "Pending" and time.monotonic() < deadline, detail
        time.sleep(0.05)
    assert pending is not None, "a service is Pending until its readiness check answers"
    # Running means ready: the first request through the proxy, on the workload's own origin, works.
    assert client.get(f"/api/v1/workloads/{wid}").json()["endpoints"] == {
        "server": _workload_origin(live_server, wid)[1] + "/"}
    page = _at_workload(live_server, wid, live_server.admin_token).get("/hello.txt")
    assert page.status_code == 200 and page.text == "hello through the proxy\n", page.text[:300]
    assert _at_workload(live_server, wid).get("/hello.txt").status_code == 401  # no credentials
    assert client.get(f"/proxy/{wid}/hello.txt").status_code == 404  # never on Corral's own origin
    assert _processes_with(marker)

    assert client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    detail, seen = _watch(client, wid, {"Deleted", "DeleteFailed"})
    assert detail["status"] == "Deleted" and seen[0] in ("Running", "Deleting"), seen
    assert _processes_with(marker) == []
    gone = _at_workload(live_server, wid, live_server.admin_token).get("/hello.txt")
    assert gone.status_code == 409  # no endpoint any more


# --------------------------------------------------------------------------- own servers

@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """SQLite, and a local cluster told it has two GPUs."""
    root = tmp_path_factory.mktemp("gpu-server")
    with ExitStack() as stack:
        database = make_database("sqlite", root / "data", stack)
        server = start_server(database, root / "server.log", env_extra={"CORRAL_LOCAL_GPUS": "nvidia:TestGPU:2"})
        yield server
        stop_server(server)


def test_two_workloads_never_receive_the_same_gpu(gpu_server):
    client = _client(gpu_server)
    cluster = client.get("/api/v1/clusters/local").json()
    assert cluster["capacity"]["gpu"] == 2, cluster
    ids = [_submit(client, name=f"gpu{i}", command='echo "devices=$CUDA_VISIBLE_DEVICES"; sleep 2',
                   resources={"gpu": 1, "cpu": "100m", "memory": "64Mi"}) for i in range(3)]
    devices = []
    for wid in ids:
        detail, _ = _watch(client, wid, {"Complete", "Failed"}, timeout=60)
        assert detail["status"] == "Complete", detail
        out = client.get(f"/api/v1/workloads/{wid}/logs").text
        devices.append(out.strip().removeprefix("devices="))
    assert sorted(set(devices)) == ["0", "1"], devices  # each got one device of its own
    first, second, third = (client.get(f"/api/v1/workloads/{w}").json() for w in ids)
    # Two GPUs: the third started only once one of the first two had finished.
    assert third["first_running_at"] >= min(first["finished_at"], second["finished_at"])


class _SlowFile(http.server.BaseHTTPRequestHandler):
    payload = os.urandom(3 * 2**20)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        for i in range(0, len(self.payload), 2**18):
            self.wfile.write(self.payload[i:i + 2**18])
            time.sleep(0.25)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_model_download_lands_in_the_model_store_with_progress(gpu_server):
    client = _client(gpu_server)
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SlowFile) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/weights.bin"
        wid = client.post("/api/v1/workloads", json={
            "type": "model_download", "name": "fetch", "project": "default", "source": url,
            "model_name": "tiny", "resources": {"cpu": "100m", "memory": "64Mi"}})
        assert wid.status_code == 201, wid.text
        wid = wid.json()["id"]
        progress = []
        deadline = time.monotonic() + 60
        while True:
            detail = client.get(f"/api/v1/workloads/{wid}").json()
            progress += [c["reason"] for c in detail["components"] if "of" in c["reason"] and "MB" in c["reason"]]
            if detail["status"] in ("Complete", "Failed"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        httpd.shutdown()
    assert detail["status"] == "Complete", detail
    assert progress, "the download reported bytes done and total while it ran"
    # In the project's own store, written by the project's OS user, readable by it alone.
    store = work_root_for(gpu_server.database.data_dir / "local-cluster") / "default" / "models" / "tiny"
    stored = list(store.rglob("weights.bin"))
    assert stored and stored[0].read_bytes() == _SlowFile.payload
    if os.geteuid() == 0:
        import pwd

        from corral.backends.identity import user_name_for

        assert stored[0].stat().st_uid == pwd.getpwnam(user_name_for("default")).pw_uid
        assert store.parent.parent.stat().st_mode & 0o077 == 0


def test_killed_control_plane_readopts_its_workloads_and_records_exits_it_missed(tmp_path):
    with ExitStack() as stack:
        database = make_database("sqlite", tmp_path / "data", stack)
        server = start_server(database, tmp_path / "server.log")
        client = _client(server)
        survivor = _submit(client, name="survivor", command="sleep 15; echo survived")
        quitter = _submit(client, name="quitter", command="sleep 2; exit 7")
        for wid in (survivor, quitter):
            _watch(client, wid, {"Running"})
        os.killpg(server.process.pid, signal.SIGKILL)  # server, scheduler and agent; not the components
        server.process.wait()
        time.sleep(3)  # the quitter exits while nothing watches
        server = start_server(database, tmp_path / "server.log")
        try:
            client = _client(server)
            detail, _ = _watch(client, quitter, {"Complete", "Failed"})
            assert detail["status"] == "Failed" and "code 7" in detail["status_reason"], detail
            detail, seen = _watch(client, survivor, {"Complete", "Failed"})
            assert detail["status"] == "Complete" and seen[0] == "Running", seen  # re-adopted, still running
            assert client.get(f"/api/v1/workloads/{survivor}/logs").text == "survived\n"
        finally:
            stop_server(server)


def test_jupyterlab_loads_on_its_own_origin_with_a_working_kernel(gpu_server):
    client = _client(gpu_server)
    wid = _submit(client, type="workspace", name="notebook", resources={"cpu": "500m", "memory": "1Gi"})
    detail, _ = _watch(client, wid, {"Running", "Failed"}, timeout=90)
    assert detail["status"] == "Running", detail
    host, origin = _workload_origin(gpu_server, wid)
    lab_client = _at_workload(gpu_server, wid, gpu_server.admin_token)
    lab = lab_client.get("/lab")
    assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.text[:300]
    assert '"baseUrl": "/"' in lab.text
    xsrf = lab_client.cookies.get("_xsrf")
    assert xsrf, "Jupyter's XSRF cookie passes through the proxy"
    # As the lab page sends it: from its own origin (which the proxy rewrites for Jupyter's own check).
    kernel = lab_client.post("/api/kernels", json={"name": "python3"},
                             headers={"X-XSRFToken": xsrf, "Origin": origin})
    assert kernel.status_code == 201, kernel.text
    port = urlsplit(gpu_server.url).port
    ws_url = f"ws://{host}/api/kernels/{kernel.json()['id']}/channels"
    headers = {"Authorization": f"Bearer {gpu_server.admin_token}", "Cookie": f"_xsrf={xsrf}"}

    def connect(from_origin: str):  # type: ignore[no-untyped-def]
        # The socket goes to the server's address; the URL names the workload's host.
        return websockets.sync.client.connect(ws_url, sock=socket.create_connection(("127.0.0.1", port)),
                                              origin=from_origin, additional_headers=headers)  # type: ignore[arg-type]

    # A page of another origin (another workload, or any site) cannot open the kernel.
    for foreign in (_workload_origin(gpu_server, wid + 1)[1], "http://evil.example", gpu_server.url):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            connect(foreign)
        assert refused.value.response.status_code == 403, foreign
    msg_id = uuid.uuid4().hex
    request = {"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                          "msg_type": "execute_request", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": "print(6 * 7)", "silent": False, "store_history": False,
                           "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}
    with connect(origin) as ws:
        ws.send(json.dumps(request))
        deadline = time.monotonic() + 60
        output = None
        while output is None and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=60))
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "stream":
                output = message["content"]["text"]
    assert output == "42\n"
    assert client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    _watch(client, wid, {"Deleted"})


def test_a_standalone_agent_runs_the_workloads_of_its_cluster(live_server, tmp_path):
    client = _client(live_server)
    created = client.post("/api/v1/clusters", json={"name": "box-standalone", "kind": "local"})
    assert created.status_code == 201, created.text
    cluster, token = created.json()["name"], created.json()["agent_token"]
    assert client.get(f"/api/v1/clusters/{cluster}").json()["status"] == "verifying"
    token_file = tmp_path / "agent-token"
    token_file.write_text(token + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    agent = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "agent", "--server", live_server.url,
                              "--token-file", str(token_file), "--state-dir", str(tmp_path / "agent-state"),
                              "--workload-root", str(work_root_for(tmp_path / "agent-state"))],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while (info := client.get(f"/api/v1/clusters/{cluster}").json())["status"] != "healthy":
            assert agent.poll() is None and time.monotonic() < deadline, agent.stdout.read().decode()
            time.sleep(0.1)
        assert info["capacity"]["cpu"] == (os.cpu_count() or 1)  # cores: this machine, as its backend sees it
        quota = client.put(f"/api/v1/projects/default/quotas/{cluster}",
                           json={"guaranteed": {"cpu": "500m", "memory": "1Gi"}})
        assert quota.status_code == 200, quota.text
        wid = _submit(client, name="elsewhere", cluster=cluster, command="echo from the standalone agent")
        detail, _ = _watch(client, wid, {"Complete", "Failed"})
        assert detail["status"] == "Complete" and detail["cluster"] == cluster, detail
        assert client.get(f"/api/v1/workloads/{wid}/logs").text == "from the standalone agent\n"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=15)
    from tests.e2e.conftest import remove_local_components

    remove_local_components(tmp_path / "agent-state")
