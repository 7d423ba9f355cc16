"""Submitting a workload: a form per type, and a raw spec (YAML or JSON) for anything else.

The form becomes the same body ``POST /api/v1/workloads`` takes, validated by the same
code, so the messages beside the fields are the API's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.db.engine import read_tx
from corral.domain.clusters import ClusterHealth
from corral.domain.names import WORKLOAD_NAME_HTML_PATTERN, WORKLOAD_NAME_RULE
from corral.domain.workloads import WorkloadType
from corral.services import clusters as cluster_service, models as model_service, projects as project_service
from corral.services import workloads as workload_service
from corral.services.errors import ServiceError
from corral.web.http import CheckedForm, Session, WebRoute, page, redirect
from corral.web.templating import fmt_time

router = APIRouter(route_class=WebRoute, include_in_schema=False)

RAW = "raw"
# The page opens on the most general type, the one the quick start submits.
DEFAULT_KIND = WorkloadType.CUSTOM.value


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    widget: str = "text"  # text | number | select | textarea | checkbox
    required: bool = False
    hint: str = ""
    choices: tuple[str, ...] = ()
    placeholder: str = ""
    pattern: str = ""  # the input's pattern attribute (the form is novalidate: the server's message shows)
    models: bool = False  # offers the project's models (a datalist; any other name is accepted too)


# The domain's rule, so that the hint says what the API, the CLI and this form enforce.
_NAME = Field("name", "Name", required=True, hint=WORKLOAD_NAME_RULE, pattern=WORKLOAD_NAME_HTML_PATTERN)
_IMAGE = Field("image", "Container image", hint="for example rocm/pytorch:latest")
_COMMAND = Field("command", "Command", "textarea", hint="run by a shell in the container")
_TIME_LIMIT = Field("time_limit", "Time limit", placeholder="none",
                    hint="such as 2h, 90m or 1h30m: then it is stopped, and Failed")
_IMAGE_OR_COMMAND = "Give a container image, a command, or both."
_CUSTOM_WHAT = "Give exactly one of a command, a manifest or a batch script (or a container image alone)."

_NODES = Field("nodes", "Nodes", "number", placeholder="1",
               hint="spread over this many nodes (slurm, kubernetes); resources are per node")

# The fields of each type besides the common ones (name, project, cluster, priority,
# resources, advanced options); ``image_or_command``: the type needs one of the two.
TYPE_FIELDS: dict[str, tuple[tuple[Field, ...], bool]] = {
    "model_download": ((
        Field("source", "Source", required=True, placeholder="meta-llama/Llama-3.1-8B",
              hint="a Hugging Face repository (org/model), or an http(s):// or s3:// URL"),
        Field("revision", "Revision", hint="branch, tag or commit; default: the newest"),
        Field("model_name", "Name in the model store", hint="default: from the source"),
    ), False),
    "inference": ((
        Field("model", "Model", required=True, hint="a model store name, Hugging Face repository or path",
              models=True),
        Field("engine", "Engine", "select", choices=("vllm", "custom"), hint="custom needs an image or a command"),
        Field("replicas", "Replicas", "number", placeholder="1"),
        Field("port", "Port", "number", placeholder="8000"),
    ), False),
    "training": ((
        Field("dataset", "Dataset", required=True),
        Field("base_model", "Base model", hint="optional: start from this model", models=True),
        Field("output_model", "Output model name"),
        _NODES,
    ), True),
    "pre_training": ((
        Field("dataset", "Dataset", required=True),
        Field("output_model", "Output model name"),
        _NODES,
    ), True),
    "fine_tuning": ((
        Field("base_model", "Base model", required=True, models=True),
        Field("dataset", "Dataset", required=True),
        Field("output_model", "Output model name"),
        _NODES,
    ), True),
    "evaluation": ((
        Field("model", "Model", required=True, hint="a model store name, Hugging Face repository or path",
              models=True),
        Field("dataset", "Dataset", hint="a dataset, evaluation tasks, or both"),
        Field("tasks", "Tasks", hint="comma-separated, for example mmlu, hellaswag"),
    ), True),
    "workspace": ((
        Field("flavor", "Flavor", "select", choices=("jupyterlab", "vscode")),
    ), False),
    "custom": ((
        Field("manifest", "Manifest", "textarea", hint="Kubernetes objects as YAML or JSON"),
        Field("batch_script", "Batch script", "textarea", hint="a Slurm batch script"),
        Field("service", "Long-running service (serves until deleted)", "checkbox"),
    ), False),
}
RESOURCE_FIELDS = (
    Field("gpu", "GPUs", "number", placeholder="0"),
    Field("cpu", "CPU", placeholder="1", hint="cores, or millicores such as 500m"),
    Field("memory", "Memory", placeholder="2Gi", hint="bytes, or such as 512Mi, 16Gi"),
    Field("ephemeral_storage", "Ephemeral storage", placeholder="0", hint="such as 10Gi"),
)
_TOP_LEVEL = ("name", "project", "cluster", "priority", "preemptible", "image", "command", "env")


def _env(text: str) -> dict[str, str]:
    env = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _FormError("env", f"line {n}: write KEY=VALUE")
        env[key.strip()] = value
    return env


class _FormError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _structured(text: str, field: str) -> Any:
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise _FormError(field, f"not valid YAML or JSON{where}") from None


def body_from_form(kind: str, form: Any) -> dict[str, Any]:
    """The API's submission body from the form's fields; empty fields are left out."""
    if kind == RAW:
        body = _structured(form.get("spec"), "spec")
        if not isinstance(body, dict):
            raise _FormError("spec", "the spec must be a mapping of fields (type, name, project, ...)")
        return body
    body: dict[str, Any] = {"type": kind}
    for key in ("name", "project", "cluster", "priority", "image", "command", "time_limit"):
        if form.get(key).strip():
            body[key] = form.get(key).strip() if key != "command" else form.get(key)
    if form.get("preemptible") in ("true", "false"):
        body["preemptible"] = form.get("preemptible")
    resources = {f.name: form.get(f.name).strip() for f in RESOURCE_FIELDS if form.get(f.name).strip()}
    if resources:
        body["resources"] = resources
    if form.get("env").strip():
        body["env"] = _env(form.get("env"))
    for f in TYPE_FIELDS[kind][0]:
        value = form.get(f.name)
        if f.widget == "checkbox":
            if value:
                body[f.name] = True
        elif f.name == "tasks":
            tasks = [t.strip() for t in value.split(",") if t.strip()]
            if tasks:
                body["tasks"] = tasks
        elif f.name == "manifest":
            if value.strip():
                body["manifest"] = _structured(value, "manifest")
        elif value.strip():
            body[f.name] = value if f.widget == "textarea" else value.strip()
    return body


def _input_of(field: str | None, kind: str) -> str:
    """The form input an API error names ("resources.cpu" -> "cpu"; nested lists -> the list)."""
    if kind == RAW:
        return "spec"
    if not field:
        return "_form"
    head, _, rest = field.partition(".")
    if head == "resources":
        return rest.split(".")[0] if rest else "resources"
    return head


def _example(project: str | None) -> str:
    return (f"type: custom\nname: my-job\nproject: {project or 'PROJECT'}\ncommand: echo hello\n"
            "resources:\n  gpu: 0\n  cpu: 1\n  memory: 2Gi\n")


def cluster_choice(cluster: dict[str, Any]) -> dict[str, Any]:
    """A cluster as the form offers it: its health in words, and whether it can be chosen.

    A silent (unhealthy) cluster refuses submissions, so it is shown but cannot be picked;
    one never heard from (verifying) can be, with a warning: its workloads wait for its agent.
    """
    health = ClusterHealth(cluster["status"])
    if health is ClusterHealth.HEALTHY:
        note = "healthy"
    elif health is ClusterHealth.VERIFYING:
        note = "never heard from: workloads wait until its agent reports"
    else:
        note = f"unhealthy: agent silent since {fmt_time(cluster['last_heartbeat_at'])} UTC; submissions refused"
    return {"name": cluster["name"], "status": health.value, "label": f"{cluster['name']} ({note})",
            "selectable": health is not ClusterHealth.UNHEALTHY}


def _render(request: Request, session: Session, kind: str, values: dict[str, str], errors: dict[str, list[str]],
            status_code: int = 200) -> Response:
    settings = request.app.state.settings
    with read_tx(request.app.state.engine) as conn:
        projects = project_service.list_projects(conn, session.principal)
        clusters = [cluster_choice(c) for c in
                    cluster_service.list_clusters(conn, session.principal, settings.cluster_unhealthy_after_s)]
        # The models each project's store holds, for the model fields' suggestions.
        models: dict[str, list[dict]] = {}
        if any(f.models for f in TYPE_FIELDS.get(kind, ((), False))[0]):
            for m in model_service.list_models(conn, session.principal, page_size=model_service.MAX_PAGE_SIZE)["items"]:
                models.setdefault(m["project"], []).append(m)
    if projects and not values.get("project"):
        values = {**values, "project": projects[0]["name"]}  # what the select shows first
    kinds = [(t.value, t.label) for t in WorkloadType] + [(RAW, "Raw spec (YAML/JSON)")]
    fields, needs_image_or_command = TYPE_FIELDS.get(kind, ((), False))
    custom = kind == WorkloadType.CUSTOM.value  # its command is one of its main fields, not an advanced one
    return page(request, "submit.html", {
        "kind": kind, "kinds": kinds, "fields": fields, "needs_image_or_command": needs_image_or_command or custom,
        "name_field": _NAME, "image_field": _IMAGE, "command_field": _COMMAND,
        "time_limit_field": _TIME_LIMIT,
        "image_or_command": _CUSTOM_WHAT if custom else _IMAGE_OR_COMMAND,
        "resource_fields": RESOURCE_FIELDS, "values": values, "errors": errors, "projects": projects,
        "clusters": clusters, "example": _example(values.get("project")), "models": models,
    }, status_code=status_code)


@router.get("/workloads/new")
def submit_form(request: Request, session: Session) -> Response:
    q = request.query_params
    kind = q.get("type") or DEFAULT_KIND
    if kind != RAW:
        try:
            kind = WorkloadType.parse(kind).value
        except ValueError:
            kind = DEFAULT_KIND
    values = {"project": q.get("project", ""), "priority": "medium"}
    if kind == RAW:
        values["spec"] = _example(values["project"] or None)
    return _render(request, session, kind, values, {})


@router.post("/workloads/new")
def submit(request: Request, session: Session, form: CheckedForm) -> Response:
    kind = form.get("type")
    if kind != RAW and kind not in TYPE_FIELDS:
        kind = DEFAULT_KIND
    values = {k: v for k, v in form.pairs if k != "csrf_token"}
    errors: dict[str, list[str]] = {}
    try:
        body = body_from_form(kind, form)
        spec = workload_service.parse_spec(body)
        # Checked and written with the API's submissions of the moment, in one transaction.
        created = request.app.state.submit_batcher.submit_as(session.principal, spec)
    except _FormError as exc:
        errors[exc.field] = [exc.message]
    except ServiceError as exc:
        details = getattr(exc, "details", None) or [{"field": exc.field, "message": exc.message}]
        for d in details:
            message = d["message"] if kind != RAW or not d["field"] else f"{d['field']}: {d['message']}"
            errors.setdefault(_input_of(d["field"], kind), []).append(message)
    if errors:
        return _render(request, session, kind, values, errors, status_code=422)
    # A named cluster is where it runs; otherwise admission places it where it fits.
    where = f"to cluster {created['cluster']}" if spec.cluster is not None else f"in project {spec.project}"
    flash = (f"Submitted {WorkloadType(created['type']).label} workload {created['name']!r} {where}: "
             f"{created['status_reason']}.")
    with read_tx(request.app.state.engine) as conn:
        cluster = cluster_service.get_cluster(conn, session.principal, created["cluster"],
                                              request.app.state.settings.cluster_unhealthy_after_s)
    if cluster["status"] == ClusterHealth.VERIFYING.value:
        # Chosen by Corral only when no cluster of the project where it fits is healthy.
        flash += (f" Cluster {cluster['name']} has never been heard from: the workload waits until its agent "
                  "reports" + ("." if spec.cluster is not None else ", or another of the project's clusters "
                               "has room."))
    return redirect(request, f"/workloads/{created['id']}", flash=flash)
