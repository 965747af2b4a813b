"""What happened to one student's submission of one assignment, and its JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Outcome:
    """What happened to one student's submission of one assignment.

    `status` is "graded" or "ungradable"; `code` says what went wrong in a word
    ("" when nothing did; e.g. "invalid_json", "wrong_assignment", "kernel_died",
    "timed_out" — a graded submission can carry "timed_out" when a cell was interrupted
    and the rest graded) and `reason` in a sentence.
    """

    student: str
    assignment: str
    status: str  # "graded" or "ungradable"
    reason: str = ""
    score: float = 0.0
    max_score: float = 0.0
    needs_manual: float = 0.0
    cells: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    code: str = ""
    seconds: float = 0.0  # wall time spent grading it
    kernel_cpu: float = 0.0  # CPU time its kernel used
    slowest_cell: float = 0.0  # wall time of its slowest cell
    reused: bool = False  # unchanged since an earlier run, which graded it

    def to_json(self) -> dict:
        """A JSON-ready dict (each cell's score pair as a list)."""
        data = asdict(self)
        data["cells"] = {k: list(v) for k, v in self.cells.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> Outcome:
        """The outcome :meth:`to_json` gave; unknown keys (a newer writer's) are ignored."""
        data = dict(data)
        data["cells"] = {k: tuple(v) for k, v in (data.get("cells") or {}).items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
