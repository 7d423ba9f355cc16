"""Recipes run for real through the local backend: downloads, training, evaluation, custom."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.backends.local import LocalBackend, download, modelstore
from corral.backends.recipes import ComponentRef, RecipeError, build_launches, default_model_name
from corral.domain.statuses import ComponentStatus as S
from corral.domain.workloads import WorkloadType

from .conftest import Watcher

PAYLOAD = bytes(range(256)) * (12 * 1024)  # 3 MiB


class SlowFiles(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /files/<anything>, in slices with pauses, so progress is visible."""

    def do_GET(self) -> None:
        if not self.path.startswith("/files/"):
            self.send_error(404, "no such model here")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        step = len(PAYLOAD) // 12
        for start in range(0, len(PAYLOAD), step):
            self.wfile.write(PAYLOAD[start : start + step])
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowFiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def launches(type_: str, spec: dict[str, Any], work_root: Path, workload_id: int = 7, component_id: int = 1,
             **kw: Any):  # type: ignore[no-untyped-def]
    body = {"type": type_, "name": "w", "project": "proj", **spec}
    kind = "server" if type_ in ("inference", "workspace") or spec.get("service") else "job"
    refs = [ComponentRef(component_id, kind)]
    if kind == "server":
        refs.append(ComponentRef(component_id + 1, "endpoint"))
    return build_launches(workload_id=workload_id, project="proj", workload_type=type_, spec=body,
                          components=refs, work_root=work_root, **kw)


def test_model_download_from_http_lands_in_the_store_with_progress(backend: LocalBackend, watcher: Watcher,
                                                                    tmp_path: Path, file_server: str):
    data = backend.work.root
    (launch,) = launches("model_download", {"source": f"{file_server}/files/tiny-model.bin"}, data)
    backend.start(launch)
    done = watcher.wait(1, S.COMPLETED, timeout=30)
    partial = [o for o in watcher.history[1] if o.status is S.RUNNING and o.progress
               and 0 < o.progress.get("bytes_done", 0) < len(PAYLOAD)]
    assert partial, [(o.status, o.reason, o.progress) for o in watcher.history[1]]
    assert partial[0].progress["bytes_total"] == len(PAYLOAD)
    assert partial[0].reason.startswith("downloading: ") and partial[0].reason.endswith(" of 3.1 MB")
    # The manifest's fields too, so a backend that cannot list its store still says what was made.
    assert done.result == {"model": "tiny-model", "path": str(data / "proj/models/tiny-model"),
                           "bytes": len(PAYLOAD), "files": 1, "kind": "download",
                           "source": f"{file_server}/files/tiny-model.bin",
                           "created_at": modelstore.read_manifest(data / "proj/models/tiny-model")["created_at"]}
    assert done.reason == "completed: model tiny-model registered"
    model = data / "proj" / "models" / "tiny-model"
    assert (model / "tiny-model.bin").read_bytes() == PAYLOAD
    manifest = modelstore.read_manifest(model)
    assert manifest is not None and manifest["kind"] == "download" and manifest["workload_id"] == 7
    assert [m["name"] for m in modelstore.list_models(data, "proj")] == ["tiny-model"]
    assert [p.name for p in model.parent.iterdir()] == ["tiny-model"]  # no partial download left


def test_failed_download_is_failed_and_leaves_nothing(backend: LocalBackend, watcher: Watcher, tmp_path: Path,
                                                      file_server: str):
    data = backend.work.root
    (launch,) = launches("model_download", {"source": f"{file_server}/missing/x.bin", "model_name": "x"}, data)
    backend.start(launch)
    failed = watcher.wait(1, S.FAILED, timeout=30)
    assert failed.exit_code == 1
    assert failed.reason.endswith(f"last output: download failed: HTTP 404 Not Found for {file_server}/missing/x.bin")
    assert not (data / "proj" / "models").exists() or list((data / "proj" / "models").iterdir()) == []


def test_a_download_that_cannot_connect_names_the_host_and_why(backend: LocalBackend, watcher: Watcher):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = backend.work.root
    (launch,) = launches("model_download", {"source": f"http://127.0.0.1:{port}/m.bin", "model_name": "m"}, data)
    backend.start(launch)
    failed = watcher.wait(1, S.FAILED, timeout=30)
    assert failed.exit_code == 1
    assert f"last output: download failed: cannot reach 127.0.0.1:{port}: " in failed.reason
    assert "Connection refused" in failed.reason and failed.reason.endswith(f"(http://127.0.0.1:{port}/m.bin)")


def test_download_errors_in_one_line():
    request = httpx.Request("GET", "https://user:secret@example.com/a/m.bin")
    error = httpx.HTTPStatusError("x", request=request, response=httpx.Response(403, request=request))
    assert download.describe_error(error) == "HTTP 403 Forbidden for https://example.com/a/m.bin"
    assert download.describe_error(ValueError("first\n\nsecond")) == "ValueError: first; second"


def test_hugging_face_download_uses_the_token_and_installs_atomically(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def fake_snapshot(**kw: Any) -> str:
        calls.append(kw)
        assert not (tmp_path / "store" / "llama").exists()  # nothing visible while downloading
        Path(kw["local_dir"], "config.json").write_text("{}")
        Path(kw["local_dir"], ".cache").mkdir()
        return str(kw["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(download, "_hf_total", lambda *a: (2, 1))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    progress = tmp_path / "progress.json"
    monkeypatch.setenv("CORRAL_PROGRESS_FILE", str(progress))
    result = download.run("org/llama", tmp_path / "store" / "llama", "main", "proj")
    (call,) = calls
    assert (call["repo_id"], call["revision"], call["token"]) == ("org/llama", "main", "hf_secret")
    assert Path(call["local_dir"]).parent == tmp_path / "store"
    assert sorted(p.name for p in (tmp_path / "store" / "llama").iterdir()) == ["config.json", "corral-model.json"]
    assert result["model"] == "llama"
    assert json.loads(progress.read_text())["phase"] == "downloaded"


def test_training_registers_the_model_it_wrote(backend: LocalBackend, watcher: Watcher, tmp_path: Path):
    data = backend.work.root
    script = ('test -n "$CORRAL_DATASET" && echo "weights from $CORRAL_DATASET and $CORRAL_BASE_MODEL" '
              '> "$CORRAL_OUTPUT_DIR/model.safetensors"')
    (launch,) = launches("fine_tuning", {"base_model": "org/base", "dataset": "/data/d.jsonl", "command": script,
                                         "output_model": "tuned", "env": {"EXTRA": "1"}}, data,
                         secret_env={"HF_TOKEN": "hf_x"})
    assert launch.env["EXTRA"] == "1" and launch.env["HF_TOKEN"] == "hf_x"
    backend.start(launch)
    done = watcher.wait(1, S.COMPLETED, timeout=20)
    assert done.result is not None and done.result["model"] == "tuned"
    model = data / "proj" / "models" / "tuned"
    assert (model / "model.safetensors").read_text() == "weights from /data/d.jsonl and org/base\n"
    manifest = modelstore.read_manifest(model)
    assert manifest is not None and manifest["kind"] == "fine_tuning" and manifest["base_model"] == "org/base"
    # The next fine-tuning of that model finds it in the store.
    (second,) = launches("fine_tuning", {"base_model": "tuned", "dataset": "d", "command": "true"}, data)
    assert second.env["CORRAL_MODEL_DIR"] == str(model)


def test_failed_training_registers_nothing(backend: LocalBackend, watcher: Watcher, tmp_path: Path):
    data = backend.work.root
    (launch,) = launches("training", {"dataset": "d", "command": 'echo half > "$CORRAL_OUTPUT_DIR/x"; exit 4'}, data)
    backend.start(launch)
    failed = watcher.wait(1, S.FAILED, timeout=20)
    assert failed.exit_code == 4
    assert modelstore.list_models(data, "proj") == []


def test_evaluation_metrics_become_the_result(backend: LocalBackend, watcher: Watcher, tmp_path: Path):
    data = backend.work.root
    script = """echo "{\\"accuracy\\": 0.75, \\"tasks\\": \\"$CORRAL_EVAL_TASKS\\"}" > "$CORRAL_METRICS_FILE" """
    (launch,) = launches("evaluation", {"model": "m", "tasks": ["mmlu", "gsm8k"], "command": script}, data)
    backend.start(launch)
    done = watcher.wait(1, S.COMPLETED, timeout=20)
    assert done.result == {"metrics": {"accuracy": 0.75, "tasks": "mmlu,gsm8k"}}
    assert done.reason == "completed: metrics recorded"


def test_custom_batch_script_and_custom_service(backend: LocalBackend, watcher: Watcher, tmp_path: Path):
    data = backend.work.root
    (job,) = launches("custom", {"batch_script": "#!/bin/sh\necho from a script\n"}, data)
    backend.start(job)
    watcher.wait(1, S.COMPLETED)
    assert backend.logs(1) == "from a script\n"
    service = launches("custom", {"service": True, "command": [sys.executable, "-m", "http.server", "--bind",
                                                                "127.0.0.1", "{port}"]}, data, component_id=5)
    assert [launch.kind for launch in service] == ["server", "endpoint"]
    for launch in service:
        backend.start(launch)
    running = watcher.wait(5, S.RUNNING)
    assert httpx.get(running.endpoint_url, timeout=5).status_code == 200
    assert watcher.wait(6, S.COMPLETED).reason.startswith("endpoint created")
    backend.stop(5, grace_s=2)
    watcher.wait(5, S.DELETED)


def test_inference_defaults_to_vllm(tmp_path: Path):
    server, endpoint = launches("inference", {"model": "org/m", "replicas": 2, "resources": {"gpu": 2}}, tmp_path)
    assert server.command[:3] == ("vllm", "serve", "org/m")
    assert "--port" in server.command and "{port}" in server.command
    assert ("--tensor-parallel-size", "2") == server.command[server.command.index("--tensor-parallel-size"):][:2]
    assert ("--data-parallel-size", "2") == server.command[server.command.index("--data-parallel-size"):][:2]
    assert server.readiness is not None and server.readiness.http_path == "/health"
    assert server.endpoint_path == "/v1" and endpoint.kind == "endpoint"


def test_what_cannot_run_here_is_a_recipe_error(tmp_path: Path):
    with pytest.raises(RecipeError, match="container images need a kubernetes or slurm cluster"):
        launches("training", {"dataset": "d", "image": "pytorch/pytorch"}, tmp_path)
    with pytest.raises(RecipeError, match="manifests need a kubernetes cluster"):
        launches("custom", {"manifest": {"kind": "Pod"}}, tmp_path)
    with pytest.raises(RecipeError, match="engine 'custom'|container images"):
        launches("inference", {"model": "m", "engine": "custom", "image": "my/server"}, tmp_path)
    # Every type has a recipe.
    assert {t.value for t in WorkloadType} <= set(__import__("corral.backends.recipes", fromlist=["_"])._RECIPES)


def test_default_model_names():
    assert default_model_name("meta-llama/Llama-3.1-8B") == "Llama-3.1-8B"
    assert default_model_name("https://example.org/x/tiny%20model.gguf") == "tiny-model"
    assert default_model_name("s3://bucket/models/bert/") == "bert"
    # A file named like every model's weights: the directory names the model.
    assert default_model_name("https://example.org/llama-7b/model.safetensors") == "llama-7b"
    assert default_model_name("https://example.org/pytorch_model.bin") == "pytorch_model"  # nothing better


def test_inference_without_vllm_says_what_to_install(backend: LocalBackend, watcher: Watcher):
    import shutil

    if shutil.which("vllm"):
        pytest.skip("vllm is installed on this host")
    server, _endpoint = launches("inference", {"model": "org/m"}, backend.work.root)
    backend.start(server)
    failed = watcher.wait(1, S.FAILED, timeout=30)
    assert failed.exit_code == 127
    assert failed.reason == ("could not start vllm: No such file or directory; vllm is not installed on this host: "
                             "pip install vllm (where the workload's user can run it), or give the inference "
                             "workload a command")
    # A program of the user's own that is missing gets no vLLM hint.
    custom, _ = launches("inference", {"model": "org/m", "command": ["no-such-server", "{port}"]},
                         backend.work.root, component_id=3)
    assert custom.missing_hint is None
    backend.start(custom)
    assert watcher.wait(3, S.FAILED, timeout=30).reason == "could not start no-such-server: No such file or directory"
