"""The CLI's tables at every terminal width: one line per row, whole columns, and a line
naming what was left out (corral.cli.tables)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from corral.cli.tables import Col, FitTable

ROWS = [
    ("1", "llama-3-70b-instruct-fine-tuning-on-the-support-tickets", "Fine-Tuning", "foundation-models", "gpu-a100",
     "8", "64", "512Gi", "Pending", "maria.garcia@example.com", "2026-12-06 14:35:51",
     "queued: waiting for admission on a cluster of its project where it fits"),
    ("22", "tiny", "Custom", "default", "local", "0", "100m", "64Mi", "Running", "a@b.c", "2026-12-06 14:35:52", "-"),
]


def workloads_table() -> FitTable:
    table = FitTable(Col("ID"), Col("Name"), Col("Type", 4), Col("Project", 5), Col("Cluster", 2), Col("GPU", 3),
                     Col("CPU", 3), Col("Memory", 3), Col("Status"), Col("Created by", 7), Col("Created at", 6),
                     Col("Why", 1))
    for row in ROWS:
        table.add_row(*row)
    return table


def render(renderable: object, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue().rstrip("\n").splitlines()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [60, 72, 80, 100, 120, 160, 250])
def test_a_table_fits_its_width_one_line_per_row(width: int) -> None:
    out = render(workloads_table(), width)
    assert all(len(line) <= width for line in out), "\n".join(out)
    header, rule, first, second = out[:4]
    assert set(rule) == {"─"}
    assert first.split()[0] == "1" and second.split()[0] == "22"  # whole ids, a row per line
    assert {"ID", "Name", "Status"} <= set(header.split())
    assert "Pending" in first and "Running" in second  # never cut: status is not flexible
    optional = ("Type", "Project", "Cluster", "GPU", "CPU", "Memory", "Why", "Created by", "Created at")
    shown = {c for c in optional if c in header}
    left_out = out[4:]
    if width >= 250:
        assert ROWS[0][1] in first and ROWS[0][-1] in first  # wide enough: nothing shortened
    if not left_out:  # all there, the long cells shortened
        assert shown == set(optional)
    else:
        note = " ".join(left_out)
        assert note.startswith(f"(left out at {width} columns: ") and "--json" in note
        for column in optional:
            assert (column in shown) != (column in note.split("columns: ")[1]), (column, out)


def test_the_least_important_columns_go_first() -> None:
    header = render(workloads_table(), 80)[0].split()
    assert "Why" in header and "Cluster" in header  # priority 1 and 2 kept
    assert "by" not in header and "Project" not in header  # priority 7 and 5 left out first


def test_flexible_columns_shrink_before_any_column_is_left_out() -> None:
    table = FitTable("Name", "Kind", "Why")
    table.add_row("a-name-that-is-far-too-long-for-this-terminal", "job", "a reason that is also rather long")
    out = render(table, 50)
    assert len(out) == 3 and all(len(line) <= 50 for line in out)  # no note: nothing left out
    assert out[2].split()[1] == "job" and "…" in out[2]


def test_an_empty_table_and_plain_headers() -> None:
    out = render(FitTable("ID", "Name", "Created at"), 80)
    assert out[0].split() == ["ID", "Name", "Created", "at"] and len(out) == 2
