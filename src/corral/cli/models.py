"""`corral models ls|show`: the model stores of your projects, and evaluations of a model
side by side (over HTTP)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli import config, output
from corral.cli.output import JsonOption, api_errors, cells, fail, key_values, print_json, status_text, table, when
from corral.cli.tables import Col

models_app = typer.Typer(help="Models in your projects' stores, and their evaluations.", no_args_is_help=True)

ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project name.")]
ClusterOption = Annotated[str | None, typer.Option("--cluster", "-c", help="Only this cluster's store.")]


def size(value: int) -> str:
    """Bytes as the rest of Corral writes them (48.8Ki, 1.5Gi)."""
    return output.memory(value)


def produced_by(model: Any) -> str:
    if model.workload is None:
        return "-"
    return f"{model.workload.id} {model.workload.name or ''}".strip()


def metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@models_app.command("ls")
@api_errors
def models_ls(project: ProjectOption = None, cluster: ClusterOption = None, json_: JsonOption = False) -> None:
    """List the models in your projects' stores (name, project, cluster, size, what made them)."""
    with config.client() as client:
        items, page = [], 1
        while True:
            answer = client.list_models(project, cluster=cluster, page=page, page_size=500)
            items += answer.items
            if len(items) >= answer.total or not answer.items:
                break
            page += 1
    if json_:
        print_json(items)
        return
    if not items:
        where = f"project {project}" if project else "your projects"
        output.out().print(f"No models in {where} yet: a model download or a training workload makes one.",
                           markup=False)
        return
    result = table(Col("ID", 5), "Name", "Project", "Cluster", Col("Kind", 3), Col("Size", 1), Col("Files", 4),
                   Col("Source", 5), Col("Produced by", 2), Col("Created at", 4))
    for m in items:
        result.add_row(*cells(m.id, m.name, m.project, m.cluster, m.kind, size(m.bytes), m.files, m.source or "-",
                              produced_by(m), when(m.created_at)))
    output.out().print(result)


@models_app.command("show")
@api_errors
def models_show(name: Annotated[str, typer.Argument(help="Model name.")], project: ProjectOption = None,
                cluster: ClusterOption = None, json_: JsonOption = False) -> None:
    """A model's details and its evaluations, one column per metric."""
    with config.client() as client:
        found = client.list_models(project, cluster=cluster, name=name, page_size=100).items
        if not found:
            where = f" in project {project}" if project else ""
            fail(f"no model {name!r}{where}" + (f" on cluster {cluster}" if cluster else "") +
                 ": `corral models ls` lists them")
        details = [client.get_model(m.id) for m in found]
    if json_:
        print_json(details if len(details) > 1 else details[0])
        return
    console = output.out()
    for d in details:
        rows: list[tuple[str, Any]] = [
            ("Model", f"{d.name}  (id {d.id})"), ("Project", d.project), ("Cluster", d.cluster), ("Kind", d.kind),
            ("Size", f"{size(d.bytes)} in {d.files} file(s)"), ("Source", d.source or "-"),
        ]
        for label, value in (("Revision", d.revision), ("Base model", d.base_model), ("Dataset", d.dataset)):
            if value:
                rows.append((label, value))
        rows += [("Produced by", f"workload {produced_by(d)}" if d.workload else "-"),
                 ("Created at", when(d.created_at))]
        console.print(key_values(rows))
        if not d.evaluations:
            console.print("No evaluations of this model yet.", markup=False)
            continue
        evals = table(Col("ID", 0), "Name", Col("Status", 0), Col("Finished", 3),
                      *(Col(n, 1) for n in d.metric_names), title="Evaluations")
        for e in d.evaluations:
            evals.add_row(*cells(e.id, e.name, status_text(e.status), when(e.finished_at),
                                 *(metric((e.metrics or {}).get(n)) for n in d.metric_names)))
        console.print(evals)
