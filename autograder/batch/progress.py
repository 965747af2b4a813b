"""What a person sees while grading: a progress bar with counts by outcome (the summary
at the end is :mod:`autograder.report`'s)."""

from __future__ import annotations

import os
from collections import Counter

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

from ..core.outcome import Outcome


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
