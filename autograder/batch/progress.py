"""What a person sees: a progress bar while grading, a summary table at the end."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..course import Outcome


def interactive(console: Console) -> bool:
    """A progress bar only on a terminal, never in CI logs."""
    return console.is_terminal and not os.environ.get("CI")


class GradingProgress:
    """Counts, bar and ETA for one assignment; does nothing when not interactive."""

    def __init__(
        self,
        assignment: str,
        total: int,
        *,
        reused: int = 0,
        enabled: bool | None = None,
        console: Console | None = None,
    ):
        self.console = console or Console(stderr=True)
        self.enabled = interactive(self.console) if enabled is None else enabled
        self.counts: Counter[str] = Counter()
        self.reused = reused
        self.assignment = assignment
        self.total = total
        self._progress: Progress | None = None
        self._task = None

    def _fields(self) -> str:
        parts = [f"{self.counts['graded']} graded"]
        if self.counts["ungradable"]:
            parts.append(f"[red]{self.counts['ungradable']} ungradable[/red]")
        if self.counts["timed_out"]:
            parts.append(f"[yellow]{self.counts['timed_out']} timed out[/yellow]")
        if self.reused:
            parts.append(f"{self.reused} unchanged")
        return " · ".join(parts)

    def __enter__(self) -> GradingProgress:
        if self.enabled and self.total:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                f"grading {self.assignment}", total=self.total, counts=self._fields()
            )
        return self

    def advance(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.code == "timed_out":
            self.counts["timed_out"] += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, counts=self._fields())

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def _status(o: Outcome) -> str:
    if o.status != "graded":
        return f"[red]{(o.code or 'ungradable').replace('_', ' ')}[/red]"
    if o.code == "timed_out":
        return "[yellow]graded, timed out[/yellow]"
    if o.code:
        return f"[yellow]graded, {o.code.replace('_', ' ')}[/yellow]"
    return "[green]graded[/green]"


def summary_table(outcomes: Iterable[Outcome], title: str = "Grades") -> Table:
    """One row per submission: score, outcome, time taken and what went wrong."""
    table = Table(title=title)
    table.add_column("student")
    table.add_column("assignment")
    table.add_column("score", justify="right")
    table.add_column("outcome")
    table.add_column("time", justify="right")
    table.add_column("notes", overflow="fold")
    for o in outcomes:
        score = f"{o.score:g} / {o.max_score:g}" if o.status == "graded" else "—"
        notes = o.reason
        if o.status == "graded" and o.needs_manual:
            notes = (notes + "; " if notes else "") + f"{o.needs_manual:g} pt to grade by hand"
        if o.reused:
            notes = (notes + "; " if notes else "") + "unchanged since the last run"
        seconds = f"{o.seconds:.1f} s" if o.seconds else ""
        table.add_row(o.student, o.assignment, score, _status(o), seconds, notes)
    return table


def problems(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Submissions an instructor should look at: ungradable ones and timed-out cells."""
    return [o for o in outcomes if o.status != "graded" or o.code]


def summary_line(outcomes: list[Outcome]) -> str:
    """'28 graded, 2 ungradable: bob (invalid JSON), …' — what went wrong and for whom."""
    graded = sum(o.status == "graded" for o in outcomes)
    bad = [o for o in outcomes if o.status != "graded"]
    text = f"{graded} graded, {len(bad)} ungradable"
    flagged = problems(outcomes)
    if flagged:
        text += ": " + "; ".join(f"{o.student}/{o.assignment}: {o.reason}" for o in flagged)
    return text


def print_summary(
    outcomes: list[Outcome], console: Console | None = None, title: str = "Grades"
) -> None:
    """The summary table, then one line naming every submission that went wrong."""
    console = console or Console()
    console.print(summary_table(outcomes, title))
    console.print(summary_line(outcomes))


def exit_status(outcomes: Iterable[Outcome]) -> int:
    """0 when every submission was graded cleanly, 1 when some need attention."""
    return 1 if problems(outcomes) else 0
