"""`corral workloads delete`: one workload, or many in one request (ids or the list's filters)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli import config, output
from corral.cli.output import EXIT_USAGE, JsonOption, api_errors, cells, fail, print_json, status_text, table

# rich (Text) is imported where people's output is made, not with this module: `corral
# workloads ls --json` imports this module and never loads rich (CLI start-up time).

ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project name.")]


@api_errors
def workloads_delete(
    workload_ids: Annotated[list[int] | None, typer.Argument(help="Workload ids (one or more).",
                                                             show_default=False)] = None,
    project: ProjectOption = None,
    statuses: Annotated[list[str] | None, typer.Option("--status", "-s", help="Status (repeatable), e.g. Running; "
                                                       "default: all but Deleted.")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", "-t", help="Workload type (repeatable).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name contains (case-insensitive).")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name.")] = None,
    created_by: Annotated[str | None, typer.Option("--created-by", help="Creator's email.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonOption = False,
) -> None:
    """Delete workloads: by ids, or all matching filters (as `ls` takes them), in one request.

    Each is Deleting until its cluster removed every component, then Deleted. Asks once
    for confirmation, listing what will be deleted, unless --yes; --dry-run only lists.
    """
    filters = {"project": project, "statuses": statuses, "types": types, "name": name, "cluster": cluster,
               "created_by": created_by}
    if workload_ids and any(filters.values()):
        fail("give workload ids or filters (--project, --status, ...), not both", code=EXIT_USAGE)
    if not workload_ids and not any(filters.values()):
        fail("give workload ids, or at least one filter: --project, --status, --type, --name, --cluster, "
             "--created-by", code=EXIT_USAGE)
    if workload_ids and len(workload_ids) == 1 and not dry_run:
        _delete_one(workload_ids[0], yes, json_)
        return
    with config.client() as client:
        def bulk(dry: bool) -> Any:
            if workload_ids:
                return client.delete_workloads(workload_ids, dry_run=dry)
            return client.delete_workloads(dry_run=dry, **filters)  # type: ignore[arg-type]

        if dry_run:
            _bulk_report(bulk(True), json_)
            return
        if not yes:
            preview = bulk(True)
            todo = preview.counts.get("done", 0)
            if not todo:
                _bulk_report(preview, json_)
                return
            console = output.err() if json_ else output.out()
            console.print(_bulk_table(preview))
            typer.confirm(f"Delete {todo} workload{'s' if todo != 1 else ''}?", abort=True, err=True)
        result = bulk(False)
    _bulk_report(result, json_)


_BULK_WORDS = {"done": "deleted", "already_deleting": "already deleting", "already_deleted": "already deleted",
               "not_found": "not found"}


def _bulk_table(result: Any) -> Any:
    from rich.text import Text

    rows = table("ID", "Name", "Project", "Status", "Result")
    for item in result.items:
        word = "would delete" if result.dry_run and item.result == "done" else _BULK_WORDS.get(item.result,
                                                                                               item.result)
        status = status_text(item.status, item.status_label) if item.status else None
        rows.add_row(*cells(item.id, item.name, item.project, status,
                            Text(word, style="red" if item.result == "not_found" else "")))
    return rows


def _bulk_report(result: Any, json_: bool) -> None:
    """The per-workload results and their counts; exit 1 if an id was not found (as scancel)."""
    if json_:
        print_json(result)
    else:
        from rich.text import Text

        console = output.out()
        if result.items:
            console.print(_bulk_table(result))
        words = {**_BULK_WORDS, "done": "would be deleted"} if result.dry_run else _BULK_WORDS
        counts = ", ".join(f"{n} {words.get(k, k)}" for k, n in result.counts.items() if n)
        prefix = "Dry run, nothing changed: " if result.dry_run else ""
        console.print(Text(prefix + (counts or "no workload matches"), style="dim"))
    if result.counts.get("not_found"):
        raise typer.Exit(1)


def _delete_one(workload_id: int, yes: bool, json_: bool) -> None:
    with config.client() as client:
        if not yes:
            current = client.get_workload(workload_id)
            typer.confirm(f"Delete workload {current.id} ({current.name!r}, {current.status_label}) "
                          f"in project {current.project}?", abort=True, err=True)
        deleted = client.delete_workload(workload_id)
    if json_:
        print_json(deleted)
        return
    from rich.text import Text

    line = Text(f"Workload {deleted.id} ({deleted.name!r}): ")
    line.append_text(status_text(deleted.status, deleted.status_label))
    if deleted.status_reason:
        line.append(f" ({deleted.status_reason})")
    output.out().print(line)
