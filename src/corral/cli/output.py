"""Output for people (rich tables on stdout, messages on stderr) and for scripts (--json).

rich is imported by the functions that print for people: `--json` never loads it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel

from corral.cli.tables import Col, FitTable
from corral.client.errors import CorralAPIError, CorralError
from corral.domain.resources import format_bytes, format_millicores, parse_millicores

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]

# Exit codes: 1 for an error the server (or the database) reported, 2 for bad input
# given on the command line (the same code Typer uses for usage errors).
EXIT_ERROR = 1
EXIT_USAGE = 2


PIPED_WIDTH = 1000  # a table sent to a pipe or a file: as wide as its contents (no terminal to fit)


def out() -> Console:
    # Made per call: Typer's test runner swaps sys.stdout, and COLUMNS may change.
    from rich.console import Console

    # Into a pipe or a file (grep, less, a log) nothing is cut to a terminal's width:
    # rich would assume 80 columns there. COLUMNS still decides when it is set.
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(highlight=False, width=PIPED_WIDTH if piped else None)


def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def info(message: str | Text) -> None:
    from rich.text import Text

    err().print(message if isinstance(message, Text) else Text(message))


def fail(message: str, *, field: str | None = None, details: list[Any] | None = None,
         code: int = EXIT_ERROR) -> NoReturn:
    """Print the error in red on stderr and exit non-zero."""
    from rich.text import Text

    text = Text("Error: ", style="bold red")
    text.append(message, style="red")
    if field and field not in message:
        text.append(f" (field: {field})", style="red")
    console = err()
    console.print(text)
    for detail in (details or [])[1:]:  # the first one is the message itself
        if isinstance(detail, dict):
            line = f"  - {detail.get('field') or ''}: {detail.get('message')}".replace("  - : ", "  - ")
            console.print(Text(line, style="red"))
    raise typer.Exit(code)


def api_errors(fn: F) -> F:
    """Turn the client's errors into a red message on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CorralAPIError as exc:
            fail(exc.message, field=exc.field, details=exc.details)
        except CorralError as exc:
            fail(exc.message)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- formatting

def when(value: datetime | None) -> str:
    """A timestamp in the local time zone, to the second."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    if minutes or hours or days:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def gpu(value: int | None) -> str:
    return "unbounded" if value is None else str(value)


def cpu(cores: float | None) -> str:
    """CPU as the API gives it (cores: 2, 0.5) as people write it ("2", "500m")."""
    return "unbounded" if cores is None else format_millicores(parse_millicores(cores))


def memory(value: int | None) -> str:
    return "unbounded" if value is None else format_bytes(value)


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "gpu": gpu, "cpu": cpu, "memory": memory, "ephemeral_storage": memory,
}
RESOURCE_LABELS = {"gpu": "GPU", "cpu": "CPU", "memory": "Memory", "ephemeral_storage": "Ephemeral storage"}


def resource(name: str, value: float | None) -> str:
    return FORMATTERS.get(name, str)(value)  # type: ignore[arg-type]


def resources_line(values: dict[str, Any], names: Iterable[str] = ("gpu", "cpu", "memory", "ephemeral_storage"),
                   skip_zero: bool = False) -> str:
    parts = []
    for name in names:
        if name not in values or (skip_zero and not values[name] and name != "gpu"):
            continue
        parts.append(f"{RESOURCE_LABELS[name]} {resource(name, values[name])}")
    return ", ".join(parts) or "-"


def table(*columns: str | Col, title: str | None = None) -> FitTable:
    """A table that fits the terminal it is printed in (corral.cli.tables): a plain header
    (str) is more important the further left it is; Col gives a priority of its own."""
    return FitTable(*columns, title=title)


def cells(*values: Any) -> list[Text]:
    """Table cells as plain text: names typed by users are never read as rich markup."""
    from rich.text import Text

    return [v if isinstance(v, Text) else Text("-" if v is None else str(v)) for v in values]


def key_values(rows: Iterable[tuple[str, Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(Text(key), value if isinstance(value, Text) else Text("-" if value is None else str(value)))
    return grid


STATUS_STYLES = {
    "Running": "green", "Complete": "green", "Pending": "yellow", "Added": "yellow", "Deleting": "yellow",
    "Failed": "red", "DeleteFailed": "red", "Unknown": "magenta", "Deleted": "dim", "Terminated": "dim",
    "healthy": "green", "verifying": "yellow", "unhealthy": "red",
}


def status_text(status: str, label: str | None = None) -> Text:
    from rich.text import Text

    return Text(label or status, style=STATUS_STYLES.get(status, ""))
