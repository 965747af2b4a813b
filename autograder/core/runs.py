"""What happened while a submission's notebooks ran: recorded by the grading worker's
Execute preprocessor (:class:`autograder.batch.execution.WatchedExecute`), one
:class:`NotebookRun` per notebook, and read to classify the outcome
(:mod:`.failures`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CellEvent:
    """A cell that ran out of time: what was done to it and how much it had used."""

    index: int
    label: str
    action: str  # "interrupted" or "killed"
    cpu: float
    wall: float
    limit: str  # "cpu" or "wall"


@dataclass
class NotebookRun:
    """One notebook's execution: time used, cells stopped, and how the kernel ended."""

    cpu: float = 0.0
    wall: float = 0.0
    cells: int = 0
    events: list[CellEvent] = field(default_factory=list)
    slowest_cell: float = 0.0  # wall seconds of the slowest cell
    died_in: str | None = None  # label of the cell the kernel died in
    exit_status: int | None = None  # the kernel's exit status when it died
