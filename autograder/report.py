"""The summary of a grading run, for people (a table and a line naming what was not
graded), and the run's exit status: one rule for the command line and the demo."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from .core.outcome import Outcome


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
    for note in sandbox_missing():
        console.print(f"[yellow]warning: kernel sandbox: {note}[/yellow]")
    console.print(summary_table(outcomes, title))
    bad = [o for o in outcomes if o.status != "graded"]
    graded = len(outcomes) - len(bad)
    console.print(
        f"{graded} graded, {len(bad)} ungradable"
        + (": " + ", ".join(f"{o.student} ({o.reason})" for o in bad) if bad else "")
    )
    if not outcomes:
        console.print(
            "[red]nothing graded:[/red] no submission found in submitted/<student>/<assignment>/ "
            "(collect an LMS download with `autograder collect`)"
        )
    skipped = [o for o in outcomes if o.reused]
    if skipped:
        names = ", ".join(f"{o.student}/{o.assignment}" for o in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        console.print(
            f"{len(skipped)} not graded again (unchanged since an earlier run, as are the "
            f"checks, the source's tests and the settings): {names}{more}; "
            "`--force` grades them again"
        )


def sandbox_missing() -> list[str]:
    """The kernel protections this machine lacks under this run's settings, in words."""
    from .batch import sandbox

    return sandbox.available().missing(sandbox.Limits.from_env())


def exit_status(outcomes: Iterable[Outcome]) -> int:
    """0 when every submission was graded, 1 when some could not be, or there were none."""
    outcomes = list(outcomes)
    return 0 if outcomes and all(o.status == "graded" for o in outcomes) else 1
