"""Summaries of a grading run for people: a table on the terminal."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from .course import Outcome


def summary_table(outcomes: Iterable[Outcome], title: str = "Grades") -> Table:
    table = Table(title=title, show_lines=False)
    for col, kw in (
        ("student", {}),
        ("assignment", {}),
        ("score", {"justify": "right"}),
        ("status", {}),
        ("notes", {"overflow": "fold"}),
    ):
        table.add_column(col, **kw)
    for o in outcomes:
        if o.status == "graded":
            score = f"{o.score:g} / {o.max_score:g}"
            status = "[green]graded[/green]"
            notes = o.reason
            if o.needs_manual:
                notes = (notes + "; " if notes else "") + f"{o.needs_manual:g} pt to grade by hand"
        else:
            score, status, notes = "—", "[red]ungradable[/red]", o.reason
        table.add_row(o.student, o.assignment, score, status, notes)
    return table


def print_summary(
    outcomes: list[Outcome], console: Console | None = None, title: str = "Grades"
) -> None:
    console = console or Console()
    console.print(summary_table(outcomes, title))
    bad = [o for o in outcomes if o.status != "graded"]
    graded = len(outcomes) - len(bad)
    console.print(
        f"{graded} graded, {len(bad)} ungradable"
        + (": " + ", ".join(f"{o.student} ({o.reason})" for o in bad) if bad else "")
    )
