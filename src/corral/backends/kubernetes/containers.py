"""What each workload type runs on Kubernetes: the container of one component.

The Kubernetes counterpart of ``backends/recipes.py`` (which runs commands on a host):
here a component is a container image, a command, an environment (plain values in the
pod spec, secrets in a Kubernetes Secret of the project's namespace) and a port.

- **Model Download**: ``runtime_image`` runs a short Python program that fetches a
  Hugging Face repo (``huggingface_hub``), or an http(s) URL, into ``/models/<name>`` on
  the project's model store (a PersistentVolumeClaim every later workload mounts).
  ``HF_TOKEN`` comes from the workload's secrets.
- **Inference**: ``vllm serve`` in ``inference_image`` on port 8000 (``VLLM_API_KEY``: the
  workload's service token), ``--tensor-parallel-size`` for several GPUs per replica,
  one pod per replica; ready when ``/health`` answers; a ``command`` (engine ``custom``)
  replaces it and should listen on ``$PORT`` (8000, or the spec's ``port``).
- **Training, Pre-Training, Fine-Tuning**: the spec's command in its image
  (``runtime_image`` if none) with ``CORRAL_DATASET``, ``CORRAL_BASE_MODEL``,
  ``CORRAL_MODEL_DIR`` and ``CORRAL_OUTPUT_DIR=/models/<output model>``: what it writes
  there is the new model. ``nodes`` > 1 (the spec's, or given by the caller) makes it
  multi-node.
- **Evaluation**: the command, with ``CORRAL_METRICS_FILE=/dev/termination-log``: the
  JSON object written there comes back in the pod's termination message and becomes the
  component's result (``{"metrics": {...}}``). Every other job gets
  ``CORRAL_RESULT_FILE`` (the same path) for a result of its own; at most 4 KiB on
  Kubernetes (see ``results``).
- **Workspace**: JupyterLab in ``workspace_image`` on port 8888, token
  ``JUPYTER_TOKEN`` (the service token, which only Corral's proxy presents), notebooks on
  the model store under ``workspaces/<id>``. ``flavor: vscode`` is refused as on the
  local cluster (code-server cannot require the service token).
- **Custom**: ``command``, ``batch_script`` (``/bin/sh -c``) or ``manifest`` (the
  user's own objects, put in the project's namespace with Corral's labels);
  ``service: true`` makes it a Deployment.

A ``time_limit`` is the batch objects' ``activeDeadlineSeconds`` (see ``render``); services
and manifests refuse one (a Deployment's pods cannot carry it; a manifest says its own).

A model named without a ``/`` is a model-store name (``/models/<name>``); anything else (a
Hugging Face repo) is passed on as given.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.backends.base import Launch
from corral.backends.kubernetes.results import RESULT_FILE
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.local.modelstore import safe_name
from corral.backends.recipes import VSCODE_UNSAFE, RecipeError, default_model_name, time_limit_of

MODELS_MOUNT = "/models"
SERVICE_TOKEN = "CORRAL_SERVICE_TOKEN"
DEFAULT_PORT = 8000
JUPYTER_PORT = 8888
METRICS_FILE = RESULT_FILE  # the termination message (results.py)
TIME_LIMIT_SERVICE = ("a time limit on a service is not available on kubernetes clusters (the pods of a Deployment "
                      "cannot carry activeDeadlineSeconds): remove time_limit, or run it on a local or slurm cluster")
TIME_LIMIT_MANIFEST = ("a time limit is not applied to a manifest's own objects: set activeDeadlineSeconds in the "
                       "manifest instead of time_limit")

DOWNLOAD_SCRIPT = """\
import os, shutil, sys, urllib.request
source, dest = os.environ["CORRAL_SOURCE"], os.environ["CORRAL_DEST"]
os.makedirs(dest, exist_ok=True)
if source.startswith(("http://", "https://")):
    name = os.path.basename(source.split("?")[0].rstrip("/")) or "download"
    with urllib.request.urlopen(source) as answer, open(os.path.join(dest, name), "wb") as out:
        shutil.copyfileobj(answer, out, 1 << 20)
else:
    try:
        import huggingface_hub
    except ImportError:
        import subprocess
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--target", "/tmp/hf",
                               "huggingface_hub"])
        sys.path.insert(0, "/tmp/hf")
        import huggingface_hub
    huggingface_hub.snapshot_download(source, revision=os.environ.get("CORRAL_REVISION") or None,
                                      local_dir=dest, token=os.environ.get("HF_TOKEN") or None)
print(f"downloaded {source} to {dest}")
"""


@dataclass(frozen=True)
class Unit:
    """One component as Kubernetes objects will hold it (see ``render``)."""

    component_id: int
    workload_id: int
    project: str
    workload_type: str
    role: str  # job | server | endpoint
    image: str = ""
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    gpu: int = 0  # per pod
    cpu_millicores: int = 0  # per pod
    memory_bytes: int = 0  # per pod
    replicas: int = 1
    nodes: int = 1
    port: int | None = None
    readiness_path: str | None = None  # None with a port: a TCP probe
    endpoint_path: str = "/"
    models_read_only: bool = True
    workdir_subpath: str | None = None  # on the model store, mounted at /work
    manifest: tuple[Mapping[str, Any], ...] = ()
    result_model: str | None = None
    metrics: bool = False
    submitter: str | None = None
    priority: str | None = None  # low | medium | high
    time_limit_s: int | None = None  # a Job's activeDeadlineSeconds (Launch.time_limit_s)


def model_path(reference: str) -> str:
    """A model-store name -> its directory on the store; a repo or path as given."""
    return reference if "/" in reference else f"{MODELS_MOUNT}/{safe_name(reference)}"


def _command(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    return tuple(str(part) for part in value)


def _mentions_port(text: str) -> bool:
    return "{port}" in text or re.search(r"\$\{?PORT\b", text) is not None


def unit_for(launch: Launch, settings: KubeSettings, spec: Mapping[str, Any] | None = None,
             secret_env: Mapping[str, str] | None = None, nodes: int = 1, submitter: str | None = None) -> Unit:
    """The container of ``launch``'s component. With the workload's ``spec`` it follows the
    type's recipe above; without one (a plain ``Launch``) it runs the launch's command or
    script in ``runtime_image``, every variable kept in the Secret."""
    secret = dict(secret_env or {})
    base = dict(component_id=launch.component_id, workload_id=launch.workload_id, project=launch.project,
                workload_type=launch.workload_type, role=launch.kind, submitter=submitter,
                priority=(spec or {}).get("priority"))
    if launch.kind == "endpoint":
        return Unit(**base)
    limit = launch.time_limit_s or time_limit_of(spec or {})
    if limit and launch.kind == "server":
        raise RecipeError(TIME_LIMIT_SERVICE)
    if limit and (spec or {}).get("manifest") is not None:
        raise RecipeError(TIME_LIMIT_MANIFEST)
    base["time_limit_s"] = limit
    replicas = int((spec or {}).get("replicas") or 1) if launch.kind == "server" else 1
    # A Launch spanning nodes holds them all (Launch.nodes): each pod one node's share. (The
    # dry run's ``nodes`` alone gives every pod the whole request, as it always did.)
    share = replicas * launch.nodes
    per_pod = dict(gpu=launch.gpu // share, cpu_millicores=launch.cpu_millicores // share,
                   memory_bytes=launch.memory_bytes // share, replicas=replicas)
    if launch.kind == "job":
        per_pod["nodes"] = max(1, int(nodes), launch.nodes)
    if spec is None:
        return _from_launch(launch, settings, base, per_pod)
    recipe = _RECIPES.get(launch.workload_type)
    if recipe is None:
        raise RecipeError(f"unknown workload type {launch.workload_type!r}")
    plain = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    made = recipe(spec, settings, secret, launch)
    env = {**plain, **made.pop("env", {})}
    for key in secret:
        env.pop(key, None)  # a secret never sits in the pod spec
    return Unit(**base, **per_pod, env=env, secret_env=secret, **made)


def _from_launch(launch: Launch, settings: KubeSettings, base: dict[str, Any], per_pod: dict[str, Any]) -> Unit:
    port = None
    if launch.kind == "server" and (launch.needs_port or launch.fixed_port):
        port = launch.fixed_port or DEFAULT_PORT
    command = launch.command if launch.command is not None else ("/bin/sh", "-c", launch.script or "")
    sub = (lambda text: text.replace("{port}", str(port))) if port else (lambda text: text)
    env = {k: sub(v) for k, v in launch.env.items()}
    if port:
        env["PORT"] = str(port)
    readiness = launch.readiness.http_path if launch.readiness is not None else None
    return Unit(**base, **per_pod, image=settings.runtime_image, command=tuple(sub(c) for c in command),
                secret_env=env, port=port, readiness_path=readiness, endpoint_path=launch.endpoint_path)


def _model_download(spec: Mapping[str, Any], settings: KubeSettings, secret: dict[str, str],
                    launch: Launch) -> dict[str, Any]:
    source = str(spec["source"])
    if source.startswith("s3://"):
        raise RecipeError("s3:// downloads are not supported on kubernetes yet: give an http(s) URL or a "
                          "Hugging Face repository")
    name = safe_name(spec.get("model_name") or default_model_name(source))
    env = {"CORRAL_SOURCE": source, "CORRAL_DEST": f"{MODELS_MOUNT}/{name}", "PYTHONUNBUFFERED": "1"}
    if spec.get("revision"):
        env["CORRAL_REVISION"] = str(spec["revision"])
    return {"image": spec.get("image") or settings.runtime_image, "command": ("python", "-c", DOWNLOAD_SCRIPT),
            "env": env, "models_read_only": False, "result_model": name}


def _service_port(spec: Mapping[str, Any], default: int) -> tuple[int, dict[str, str]]:
    port = int(spec.get("port") or default)
    return port, {"PORT": str(port)}


def _inference(spec: Mapping[str, Any], settings: KubeSettings, secret: dict[str, str],
               launch: Launch) -> dict[str, Any]:
    model = str(spec["model"])
    secret.setdefault(SERVICE_TOKEN, secrets.token_hex(32))
    port, env = _service_port(spec, DEFAULT_PORT)
    env |= {"CORRAL_MODEL": model, "CORRAL_MODEL_DIR": model_path(model)}
    command = _command(spec.get("command"))
    if command is None and spec.get("engine", "vllm") == "vllm":
        gpus = int((spec.get("resources") or {}).get("gpu") or 0)
        command = ("vllm", "serve", model_path(model), "--host", "0.0.0.0", "--port", str(port),
                   "--served-model-name", model, *(("--tensor-parallel-size", str(gpus)) if gpus > 1 else ()))
        secret["VLLM_API_KEY"] = secret[SERVICE_TOKEN]  # only the proxy may call it
        return {"image": spec.get("image") or settings.inference_image, "command": command, "env": env,
                "port": port, "readiness_path": "/health", "endpoint_path": "/v1"}
    return {"image": spec.get("image") or settings.runtime_image, "command": command, "env": env, "port": port,
            "readiness_path": None}


def _training(spec: Mapping[str, Any], settings: KubeSettings, secret: dict[str, str],
              launch: Launch) -> dict[str, Any]:
    name = safe_name(str(spec.get("output_model") or f"{spec.get('name') or launch.workload_type}-"
                                                     f"{launch.workload_id}"))
    env = {"CORRAL_DATASET": str(spec.get("dataset") or ""), "CORRAL_OUTPUT_DIR": f"{MODELS_MOUNT}/{name}"}
    if spec.get("base_model"):
        env["CORRAL_BASE_MODEL"] = str(spec["base_model"])
        env["CORRAL_MODEL_DIR"] = model_path(str(spec["base_model"]))
    return {"image": spec.get("image") or settings.runtime_image, "command": _command(spec.get("command")),
            "env": env, "models_read_only": False, "result_model": name}


def _evaluation(spec: Mapping[str, Any], settings: KubeSettings, secret: dict[str, str],
                launch: Launch) -> dict[str, Any]:
    model = str(spec["model"])
    env = {"CORRAL_MODEL": model, "CORRAL_MODEL_DIR": model_path(model),
           "CORRAL_DATASET": str(spec.get("dataset") or ""),
           "CORRAL_EVAL_TASKS": ",".join(str(t) for t in spec.get("tasks") or ()),
           "CORRAL_OUTPUT_DIR": "/tmp/corral-output", "CORRAL_METRICS_FILE": METRICS_FILE}
    return {"image": spec.get("image") or settings.runtime_image, "command": _command(spec.get("command")),
            "env": env, "metrics": True}


def _workspace(spec: Mapping[str, Any], settings: KubeSettings, secret: dict[str, str],
               launch: Launch) -> dict[str, Any]:
    secret.setdefault(SERVICE_TOKEN, secrets.token_hex(32))
    command = _command(spec.get("command"))
    if command is not None:
        port, env = _service_port(spec, DEFAULT_PORT)
        return {"image": spec.get("image") or settings.runtime_image, "command": command, "env": env,
                "port": port, "workdir_subpath": f"workspaces/{launch.workload_id}", "models_read_only": False}
    if spec.get("flavor") == "vscode":
        raise RecipeError(VSCODE_UNSAFE.replace("on the local cluster", "yet"))
    secret["JUPYTER_TOKEN"] = secret[SERVICE_TOKEN]
    command = ("jupyter", "lab", "--no-browser", "--ip=0.0.0.0", f"--port={JUPYTER_PORT}",
               "--ServerApp.base_url=/", "--ServerApp.root_dir=/work", "--ServerApp.port_retries=0")
    return {"image": spec.get("image") or settings.workspace_image, "command": command,
            "env": {"PORT": str(JUPYTER_PORT)}, "port": JUPYTER_PORT, "readiness_path": "/api",
            "workdir_subpath": f"workspaces/{launch.workload_id}", "models_read_only": False}


def _custom(spec: Mapping[str, Any], settings: KubeSettings, secret: dict[str, str],
            launch: Launch) -> dict[str, Any]:
    image = spec.get("image") or settings.runtime_image
    manifest = spec.get("manifest")
    if manifest is not None:
        items = manifest if isinstance(manifest, list) else [manifest]
        return {"manifest": tuple(dict(item) for item in items)}
    if spec.get("batch_script") is not None:
        command: tuple[str, ...] | None = ("/bin/sh", "-c", str(spec["batch_script"]))
    else:
        command = _command(spec.get("command"))  # None: the image's own entrypoint
    made: dict[str, Any] = {"image": image, "command": command}
    if launch.kind == "server":
        text = " ".join(command or ())
        port = int(spec.get("port") or DEFAULT_PORT)
        if _mentions_port(text) or spec.get("port"):
            made |= {"port": port, "env": {"PORT": str(port)}}
            made["command"] = tuple(part.replace("{port}", str(port)) for part in command or ()) or None
    return made


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


def service_port(workload_type: str, spec: Mapping[str, Any] | None) -> int:
    """The port a service's server listens on (its endpoint's Service targets it)."""
    spec = spec or {}
    if workload_type == "workspace" and spec.get("command") is None:
        return JUPYTER_PORT
    return int(spec.get("port") or DEFAULT_PORT)
