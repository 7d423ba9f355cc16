"""Tables that fit the terminal: one line per row, whole columns, never a cell cut to "…"
in every column.

A table is laid out when it is printed, for the width it gets (an 80-column terminal, a
wide one, COLUMNS): each column wants its widest cell. If that does not fit, the flexible
columns (names, reasons, messages) give up width first, down to a minimum, their cells
ending in "…"; then whole columns are left out, the least important first, and a line
under the table says which (a wider terminal or --json shows them). Cells never wrap, so
a row stays a line and columns stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported when a table is filled, not for `--json` (CLI start-up time)
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.text import Text

GAP = 2  # spaces between two columns
RIGHT = frozenset({"ID", "GPU", "CPU", "Memory", "Count", "Queued", "Nodes"})
FLEX = {"Name": 16, "Why": 12, "Reason": 12, "Message": 16, "Description": 12, "Email": 16, "Result": 12,
        "Created by": 12, "By": 10, "Project": 10, "Cluster": 10, "Node": 10, "GPU model": 10}


@dataclass(frozen=True)
class Col:
    """A column: ``priority`` 0 is never left out; higher ones go first when space is short.
    ``min_width`` (flexible columns): how narrow it may get, its cells ending in "…"."""

    header: str
    priority: int = 0
    min_width: int | None = None
    justify: str | None = None


class FitTable:
    """Rows of cells (``rich.text.Text``), laid out for the width they are printed at."""

    def __init__(self, *columns: str | Col, title: str | None = None) -> None:
        cols = [c if isinstance(c, Col) else Col(c, priority=i) for i, c in enumerate(columns)]
        self.columns = [Col(c.header, c.priority, c.min_width if c.min_width is not None else FLEX.get(c.header),
                            c.justify or ("right" if c.header in RIGHT else "left")) for c in cols]
        self.title = title
        self.rows: list[tuple[list[Text], bool]] = []

    def add_row(self, *values: Text | str, end_section: bool = False) -> None:
        from rich.text import Text

        self.rows.append(([v if isinstance(v, Text) else Text(str(v)) for v in values], end_section))

    def layout(self, width: int) -> tuple[list[int], list[int]]:
        """(indexes of the columns shown, their widths) for a terminal ``width`` wide."""
        natural = [max([len(col.header)] + [row[i].cell_len for row, _ in self.rows])
                   for i, col in enumerate(self.columns)]
        shown = list(range(len(self.columns)))

        def least(i: int) -> int:
            col = self.columns[i]
            return min(natural[i], max(col.min_width, len(col.header))) if col.min_width else natural[i]

        def total(widths: list[int]) -> int:
            return sum(widths) + GAP * (len(widths) - 1)

        # Leave out columns, least important (then rightmost) first, until the rest fit at their least.
        while total([least(i) for i in shown]) > width:
            droppable = [i for i in shown if self.columns[i].priority > 0]
            if not droppable:
                break
            shown.remove(max(droppable, key=lambda i: (self.columns[i].priority, i)))
        widths = [natural[i] for i in shown]
        # Shrink the flexible columns, the widest first, until the table fits.
        excess = total(widths) - width
        while excess > 0:
            slack = [(widths[k] - least(i), k) for k, i in enumerate(shown) if widths[k] > least(i)]
            if not slack:
                break
            _, k = max(slack, key=lambda s: (widths[s[1]], s[0]))
            cut = min(excess, widths[k] - least(shown[k]),
                      max(1, widths[k] - max([w for j, w in enumerate(widths) if j != k] or [0])))
            widths[k] -= cut
            excess -= cut
        return shown, widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        shown, widths = self.layout(options.max_width)
        table = Table(title=self.title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                      show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0))  # + the divider: GAP
        for i, width in zip(shown, widths):
            col = self.columns[i]
            table.add_column(col.header, justify=col.justify, width=width, no_wrap=True,  # type: ignore[arg-type]
                             overflow="ellipsis")
        for cells, end_section in self.rows:
            table.add_row(*(cells[i] for i in shown), end_section=end_section)
        yield table
        left_out = [self.columns[i].header for i in range(len(self.columns)) if i not in shown]
        if left_out:
            yield Text(f"(left out at {options.max_width} columns: {', '.join(left_out)}; wider or --json shows "
                       f"{'them' if len(left_out) > 1 else 'it'})", style="dim")

