"""Recipes: what to run for each workload type, as ``Launch``es.

    launches = build_launches(
        workload_id=7, project="vision", workload_type="fine_tuning",
        spec=row.spec,                                  # as stored: spec.model_dump(mode="json")
        components=[ComponentRef(12, "job", gpu=1, cpu_millicores=4000, memory_bytes=16 * 2**30)],
        work_root=Path("/var/lib/corral/workloads"),    # the backend's work area
        secret_env={"HF_TOKEN": "hf_..."},              # the spec's secrets, resolved by the caller
    )
    for launch in launches:
        backend.start(launch)

A workload that cannot run here raises :class:`RecipeError`, whose message is meant as
the Failed reason of its components ("container images need a kubernetes or slurm
cluster ...").

Paths under the project's directory in the work area, ``<work_root>/<project>/`` (owned
by the project's OS user, readable by its workloads only; see ``local/workarea.py``):

- ``models/<name>/``: the project's model store (see ``local/modelstore.py``; each model
  has a ``corral-model.json`` manifest). Wherever a spec names a model (``model``,
  ``base_model``), a name found in the project's store is replaced by its directory;
  anything else (a Hugging Face repo, a path) is passed on as given.
- ``runs/<workload id>/``: working directory of batch jobs; ``output/`` in it is
  ``CORRAL_OUTPUT_DIR``.
- ``workspaces/<workload id>/``: a workspace's notebook directory.

What each type runs:

- **Model Download**: ``python -m corral.backends.local.download`` into
  ``models/<project>/<model_name>`` (default name: the repo's or file's name); Hugging
  Face token from ``HF_TOKEN`` (map a project secret to it in ``secrets``).
- **Inference**: ``vllm serve <model> --host 127.0.0.1 --port {port}`` (``VLLM_API_KEY``:
  the workload's service token) (plus
  ``--tensor-parallel-size`` for several GPUs per replica and ``--data-parallel-size``
  for several replicas: the local cluster runs all replicas as one server), ready when
  ``/health`` answers, endpoint ``http://127.0.0.1:<port>/v1``. With a ``command`` (any
  engine) that command runs instead; it should listen on ``{port}``/``$PORT`` (if it
  mentions neither, the spec's ``port`` is used), and is ready once the port accepts
  connections.
- **Training, Pre-Training, Fine-Tuning**: the spec's ``command`` under
  ``python -m corral.backends.local.jobrun``, with ``CORRAL_DATASET``,
  ``CORRAL_BASE_MODEL`` and ``CORRAL_MODEL_DIR`` (the base model, resolved),
  ``CORRAL_OUTPUT_DIR``; on success what the command wrote to ``CORRAL_OUTPUT_DIR`` is
  registered as model ``output_model`` (default ``<workload name>-<workload id>``).
- **Evaluation**: the ``command`` with ``CORRAL_MODEL`` (as given), ``CORRAL_MODEL_DIR``
  (resolved), ``CORRAL_DATASET``, ``CORRAL_EVAL_TASKS`` (comma-separated),
  ``CORRAL_OUTPUT_DIR`` and ``CORRAL_METRICS_FILE``; the JSON object written to the
  metrics file becomes the component's result (``{"metrics": {...}}``).
- **Workspace**: JupyterLab (``python -m jupyterlab`` when this interpreter has it, else
  ``jupyter lab``) on ``127.0.0.1:{port}`` with base URL ``/`` and the workload's service
  token (``JUPYTER_TOKEN``: other workloads on the host cannot use it; the control plane's
  authenticated proxy presents it, on the workload's own origin ``w<id>.<apps domain>``,
  see ``services/app_origins.py`` and ``services/service_tokens.py``); ready when ``/api``
  answers.
  Jupyter's own defences stay on, so the proxy must: send ``Host: 127.0.0.1:<port>``
  upstream (Jupyter refuses other hosts: DNS rebinding), rewrite ``Origin`` (of HTTP
  requests and WebSocket upgrades, once it has checked it is the workload's own origin)
  to ``http://127.0.0.1:<port>`` (Jupyter checks it against Host), and pass cookies
  through (the ``_xsrf`` cookie guards every POST; the lab page sends it back by itself),
  less the control plane's own. ``flavor: vscode`` is refused on the local cluster:
  code-server cannot require the service token. A ``command`` replaces either.
- **Custom**: ``command`` (a list: argv; a string: ``/bin/sh -c``) or ``batch_script``
  (run by its ``#!`` line or ``/bin/sh``); ``service: true`` makes it a server (port as
  for Inference). ``manifest`` needs a kubernetes cluster.

Every component also gets the spec's ``env`` and the resolved secrets, and the spec's
``time_limit`` (``Launch.time_limit_s``) and ``nodes`` (``Launch.nodes``, for a job). The control plane serves a service on the workload's own origin: a request for ``<path>`` there goes
to ``<path>`` on the origin of the server's ``endpoint_url`` (whose path, like vLLM's
``/v1``, is part of the URLs shown to users).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from corral.backends.base import Launch, Readiness
from corral.backends.local import modelstore
from corral.domain.durations import parse_duration

__all__ = ["ComponentRef", "RecipeError", "build_launches", "default_model_name", "time_limit_of"]


class RecipeError(ValueError):
    """The workload cannot run on this cluster; the message is the components' Failed reason."""


@dataclass(frozen=True, slots=True)
class ComponentRef:
    """A component as registered by the control plane: its id, kind and requests."""

    id: int
    kind: str  # job | server | endpoint
    gpu: int = 0
    cpu_millicores: int = 0
    memory_bytes: int = 0


VSCODE_UNSAFE = ("VS Code workspaces are not available on the local cluster: code-server cannot require the "
                 "workload's service token, so other workloads on the host could use it; use flavor jupyterlab, or "
                 "a custom service that checks CORRAL_SERVICE_TOKEN")
_IMAGE_ONLY = ("container images need a kubernetes or slurm cluster; the local cluster runs commands "
               "(give a command)")


def build_launches(
    *,
    workload_id: int,
    project: str,
    workload_type: str,
    spec: Mapping[str, Any],
    components: Sequence[ComponentRef],
    work_root: str | os.PathLike[str],
    secret_env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> list[Launch]:
    """One ``Launch`` per component of the workload (see the module docstring)."""
    kind = str(getattr(workload_type, "value", workload_type))
    recipe = _RECIPES.get(kind)
    if recipe is None:
        raise RecipeError(f"unknown workload type {kind!r}")
    ctx = _Context(workload_id, project, kind, spec, Path(work_root), dict(secret_env or {}), python)
    main = recipe(ctx)
    main_env = main.pop("env", {})
    launches = []
    for ref in components:
        if ref.kind == "endpoint":
            launches.append(Launch(ref.id, workload_id, project, kind, ctx.native_name("endpoint"), kind="endpoint"))
            continue
        if (ref.kind == "server") != (main.get("kind") == "server"):
            raise RecipeError(f"component {ref.id} is a {ref.kind}, but a {kind} workload runs a {main.get('kind')}")
        env = {**{str(k): str(v) for k, v in (spec.get("env") or {}).items()}, **ctx.secret_env, **main_env}
        launches.append(Launch(
            component_id=ref.id, workload_id=workload_id, project=project, workload_type=kind,
            native_name=ctx.native_name(ref.kind), env=env, gpu=ref.gpu, cpu_millicores=ref.cpu_millicores,
            memory_bytes=ref.memory_bytes, time_limit_s=time_limit_of(spec),
            nodes=max(1, int(spec.get("nodes") or 1)) if ref.kind == "job" else 1, **main,
        ))
    return launches


@dataclass
class _Context:
    workload_id: int
    project: str
    kind: str
    spec: Mapping[str, Any]
    work_root: Path
    secret_env: dict[str, str]
    python: str

    def native_name(self, component_kind: str) -> str:
        return f"{self.project}-w{self.workload_id}-{component_kind}"

    def project_dir(self) -> Path:
        return self.work_root / self.project

    def run_dir(self) -> Path:
        return self.project_dir() / "runs" / str(self.workload_id)

    def store(self) -> Path:
        return modelstore.store_dir(self.work_root, self.project)

    def resolve_model(self, reference: str | None) -> str | None:
        if not reference:
            return None
        return modelstore.resolve(self.work_root, self.project, reference) or reference

    def service_token(self) -> str:
        """The token the proxy presents to this workload's service (the control plane
        sends it as CORRAL_SERVICE_TOKEN, see services/service_tokens.py); without one, a
        random one: the service then answers nobody rather than everybody."""
        return self.secret_env.get("CORRAL_SERVICE_TOKEN") or secrets.token_hex(32)

    def user_command(self, required: bool = True) -> list[str] | None:
        command = self.spec.get("command")
        if command is None:
            if required:
                raise RecipeError(_IMAGE_ONLY if self.spec.get("image") else f"a {self.kind} workload needs a command")
            return None
        if isinstance(command, str):
            return ["/bin/sh", "-c", command]
        return [str(part) for part in command]


def time_limit_of(spec: Mapping[str, Any]) -> int | None:
    """The spec's ``time_limit`` in seconds (stored so; a spec written by hand may say "2h")."""
    value = spec.get("time_limit")
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise RecipeError(f"time_limit: {exc}") from exc


# File names that say nothing of the model (".../llama-7b/model.safetensors"): the
# directory above names it instead.
_GENERIC_STEMS = {"model", "pytorch_model", "weights", "checkpoint", "consolidated", "adapter_model", "download",
                  "file", "index", "latest"}


def default_model_name(source: str) -> str:
    """The store name of a download when the spec gives none: the repo's or file's name
    (the directory's, for a file named like every model's weights)."""
    if source.startswith(("http://", "https://", "s3://")):
        path = unquote(urlparse(source).path.rstrip("/"))
        base = os.path.basename(path) or urlparse(source).netloc
        for suffix in (".tar.gz", ".tgz", ".zip", ".bin", ".safetensors", ".gguf", ".pt", ".pth", ".onnx"):
            if base.lower().endswith(suffix) and len(base) > len(suffix):
                base = base[: -len(suffix)]
                break
        parent = os.path.basename(os.path.dirname(path))
        if base.lower() in _GENERIC_STEMS and parent:
            base = parent
        return modelstore.safe_name(base)
    return modelstore.safe_name(source.rsplit("/", 1)[-1])


def _mentions_port(command: Sequence[str] | str | None) -> bool:
    text = command if isinstance(command, str) else " ".join(command or ())
    return "{port}" in text or re.search(r"\$\{?PORT\b", text) is not None


def _model_download(ctx: _Context) -> dict[str, Any]:
    source = str(ctx.spec["source"])
    name = ctx.spec.get("model_name") or default_model_name(source)
    dest = ctx.store() / modelstore.safe_name(name)
    command = [ctx.python, "-m", "corral.backends.local.download", "--source", source, "--dest", str(dest),
               "--project", ctx.project]
    if ctx.spec.get("revision"):
        command += ["--revision", str(ctx.spec["revision"])]
    return {"kind": "job", "command": tuple(command), "working_dir": str(ctx.run_dir())}


VLLM_MISSING = ("vllm is not installed on this host: pip install vllm (where the workload's user can run it), "
                "or give the inference workload a command")


def _inference(ctx: _Context) -> dict[str, Any]:
    model = str(ctx.spec["model"])
    resolved = ctx.resolve_model(model) or model
    env = {"CORRAL_MODEL": model, "CORRAL_MODEL_DIR": resolved}
    command = ctx.user_command(required=False)
    if command is None:
        if ctx.spec.get("engine", "vllm") != "vllm":
            raise RecipeError(_IMAGE_ONLY)
        command = ["vllm", "serve", resolved, "--host", "127.0.0.1", "--port", "{port}",
                   "--served-model-name", model]
        per_replica_gpu = int((ctx.spec.get("resources") or {}).get("gpu") or 0)
        replicas = int(ctx.spec.get("replicas") or 1)
        if per_replica_gpu > 1:
            command += ["--tensor-parallel-size", str(per_replica_gpu)]
        if replicas > 1:
            command += ["--data-parallel-size", str(replicas)]
        env["VLLM_API_KEY"] = ctx.service_token()  # only the proxy may call it
        return {"kind": "server", "command": tuple(command), "needs_port": True, "readiness": Readiness("/health"),
                "endpoint_path": "/v1", "env": env, "working_dir": str(ctx.run_dir()), "missing_hint": VLLM_MISSING}
    return _service(ctx, command, env)


def _service(ctx: _Context, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    raw = ctx.spec.get("command")
    if _mentions_port(raw):
        port: dict[str, Any] = {"needs_port": True, "readiness": Readiness(None)}
    elif ctx.spec.get("port"):
        port = {"fixed_port": int(ctx.spec["port"]), "readiness": Readiness(None)}
    else:  # no way to know where it listens: Running once started, no endpoint URL
        port = {"needs_port": False, "readiness": None}
    return {"kind": "server", "command": tuple(command), "env": env, "working_dir": str(ctx.run_dir()), **port}


def _training(ctx: _Context) -> dict[str, Any]:
    command = ctx.user_command()
    assert command is not None
    output = ctx.run_dir() / "output"
    base_model = ctx.spec.get("base_model")
    name = ctx.spec.get("output_model") or f"{ctx.spec.get('name') or ctx.kind}-{ctx.workload_id}"
    env = {"CORRAL_DATASET": str(ctx.spec.get("dataset") or ""), "CORRAL_OUTPUT_DIR": str(output)}
    if base_model:
        env["CORRAL_BASE_MODEL"] = str(base_model)
        env["CORRAL_MODEL_DIR"] = ctx.resolve_model(str(base_model)) or str(base_model)
    runner = [ctx.python, "-m", "corral.backends.local.jobrun", "--output-dir", str(output),
              "--register-as", modelstore.safe_name(str(name)), "--store", str(ctx.store()),
              "--project", ctx.project, "--kind", ctx.kind]
    if base_model:
        runner += ["--base-model", str(base_model)]
    if ctx.spec.get("dataset"):
        runner += ["--dataset", str(ctx.spec["dataset"])]
    return {"kind": "job", "command": tuple(runner + ["--", *command]), "env": env,
            "working_dir": str(ctx.run_dir())}


def _evaluation(ctx: _Context) -> dict[str, Any]:
    command = ctx.user_command()
    assert command is not None
    output = ctx.run_dir() / "output"
    metrics = output / "metrics.json"
    model = str(ctx.spec["model"])
    env = {"CORRAL_MODEL": model, "CORRAL_MODEL_DIR": ctx.resolve_model(model) or model,
           "CORRAL_DATASET": str(ctx.spec.get("dataset") or ""),
           "CORRAL_EVAL_TASKS": ",".join(str(t) for t in ctx.spec.get("tasks") or ()),
           "CORRAL_OUTPUT_DIR": str(output), "CORRAL_METRICS_FILE": str(metrics)}
    runner = [ctx.python, "-m", "corral.backends.local.jobrun", "--output-dir", str(output),
              "--metrics-file", str(metrics), "--"]
    return {"kind": "job", "command": tuple(runner + command), "env": env, "working_dir": str(ctx.run_dir())}


def _workspace(ctx: _Context) -> dict[str, Any]:
    home = ctx.project_dir() / "workspaces" / str(ctx.workload_id)
    command = ctx.user_command(required=False)
    if command is not None:
        return _service(ctx, command, {}) | {"working_dir": str(home)}
    if ctx.spec.get("flavor") == "vscode":
        # code-server can check no bearer token: on a shared host any other workload that
        # found its port would run code as this project. Refused until it can be reached
        # only through the proxy (a socket of the project's own).
        raise RecipeError(VSCODE_UNSAFE)
    if importlib.util.find_spec("jupyterlab") is not None and ctx.python == sys.executable:
        jupyter = [ctx.python, "-m", "jupyterlab"]
    else:
        jupyter = [shutil.which("jupyter") or "jupyter", "lab"]
    # The port goes by environment (JUPYTER_PORT), not the command line every user can read.
    command = [*jupyter, "--no-browser", "--ip", "127.0.0.1",
               "--ServerApp.base_url=/", f"--ServerApp.root_dir={home}",
               "--ServerApp.port_retries=0", "--ServerApp.allow_root=True"]
    return {"kind": "server", "command": tuple(command), "needs_port": True, "readiness": Readiness("/api"),
            "endpoint_path": "/", "working_dir": str(home),
            "env": {"JUPYTER_PLATFORM_DIRS": "1", "JUPYTER_TOKEN": ctx.service_token(), "JUPYTER_PORT": "{port}"}}


def _custom(ctx: _Context) -> dict[str, Any]:
    spec = ctx.spec
    if spec.get("manifest") is not None:
        raise RecipeError("Kubernetes manifests need a kubernetes cluster; the local cluster runs commands")
    service = bool(spec.get("service"))
    if spec.get("batch_script") is not None:
        script = str(spec["batch_script"])
        if service:
            port = {"needs_port": True, "readiness": Readiness(None)} if _mentions_port(script) else {}
            return {"kind": "server", "script": script, "working_dir": str(ctx.run_dir()), **port}
        return {"kind": "job", "script": script, "working_dir": str(ctx.run_dir())}
    command = ctx.user_command()
    assert command is not None
    if service:
        return _service(ctx, command, {})
    return {"kind": "job", "command": tuple(command), "working_dir": str(ctx.run_dir())}


_RECIPES = {
    "model_download": _model_download,
    "inference": _inference,
    "training": _training,
    "pre_training": _training,
    "fine_tuning": _training,
    "evaluation": _evaluation,
    "workspace": _workspace,
    "custom": _custom,
}

