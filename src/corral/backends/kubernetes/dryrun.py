"""What the Kubernetes backend would create for a workload spec, without a cluster.

    corral agent --backend kubernetes --dry-run --spec workload.yaml | kubectl apply --dry-run=client -f -

The spec is checked as the API checks it (``corral.domain.workloads``), split into its
components as the control plane splits them, and rendered as the agent would render it:
the project's namespace, service account and model store first, then each component's
objects. Secret values are not known here: the Secret shows which project secret would
fill each variable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from corral.backends.base import Launch
from corral.backends.kubernetes.containers import SERVICE_TOKEN, service_port, unit_for
from corral.backends.kubernetes.render import component_objects, project_objects
from corral.backends.kubernetes.settings import KubeSettings


def render_workload(spec: Mapping[str, Any], settings: KubeSettings | None = None, *, workload_id: int = 1,
                    project: str | None = None, crds: Iterable[str] = (), nodes: int = 1,
                    submitter: str | None = None) -> list[dict[str, Any]]:
    """Every object of the workload, as dicts (``render.to_yaml`` prints them). Raises
    ``pydantic.ValidationError`` for a spec the API would refuse and ``RecipeError`` for
    one this cluster cannot run."""
    from pydantic import TypeAdapter

    from corral.domain.workloads import WorkloadSpec, plan_components

    settings = settings or KubeSettings()
    parsed = TypeAdapter(WorkloadSpec).validate_python(dict(spec))
    data = parsed.model_dump(mode="json")
    project = project or parsed.project
    kind = parsed.type.value
    secrets = {env: f"<value of project secret {name}>" for env, name in (data.get("secrets") or {}).items()}
    plans = plan_components(parsed)
    if any(p.kind == "server" for p in plans):
        secrets[SERVICE_TOKEN] = "<the workload's service token>"
    objects = project_objects(project, settings)
    for index, plan in enumerate(plans, start=1):
        launch = Launch(index, workload_id, project, kind, f"{project}-w{workload_id}-{plan.kind}", kind=plan.kind,
                        command=None if plan.kind == "endpoint" else ("(rendered)",), gpu=plan.requests.gpu,
                        cpu_millicores=plan.requests.cpu, memory_bytes=plan.requests.memory,
                        nodes=parsed.nodes_count() if plan.kind == "job" else 1)
        unit = unit_for(launch, settings, data, secrets if plan.kind != "endpoint" else {}, nodes=nodes,
                        submitter=submitter)
        objects += component_objects(unit, settings, crds,
                                     port=service_port(kind, data) if plan.kind == "endpoint" else None)
    return objects


def dry_run(spec_path: str, settings_path: str | None = None, nodes: int = 1) -> str:
    """``corral agent --backend kubernetes --dry-run``: the YAML for the spec in a file
    (YAML or JSON, as ``corral workloads submit -f`` takes). Raises ``ValueError`` with a
    message for a file, spec or setting that is wrong."""
    from pathlib import Path

    import yaml
    from pydantic import ValidationError

    from corral.backends.base import BackendError
    from corral.backends.kubernetes.render import to_yaml
    from corral.backends.recipes import RecipeError
    from corral.domain.workloads import error_field

    try:
        spec = yaml.safe_load(Path(spec_path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the workload spec {spec_path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise ValueError(f"{spec_path}: expected a workload spec (a mapping with type, name, project, ...)")
    try:
        settings = KubeSettings.from_file(settings_path)
        return to_yaml(render_workload(spec, settings, nodes=nodes))
    except ValidationError as exc:
        problems = "; ".join(f"{error_field(e) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{spec_path}: {problems}") from exc
    except (RecipeError, BackendError) as exc:
        raise ValueError(str(exc)) from exc
