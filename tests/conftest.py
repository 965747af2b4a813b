"""Fixtures: temporary course directories graded by the real nbgrader pipeline."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder import course as course_mod
from autograder import notebooks

ROOT = Path(__file__).resolve().parents[1]

# The `postgres_server` fixture: a real PostgreSQL server on loopback (tests/pg_server.py).
pytest_plugins = ["tests.pg_server"]


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader") or {}


@dataclass
class Course:
    """A throw-away nbgrader course directory built from this repository's files."""

    root: Path

    @classmethod
    def create(cls, base: Path, assignments: list[str]) -> Course:
        root = base / "course"
        root.mkdir(parents=True)
        shutil.copy2(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        for a in assignments:
            shutil.copytree(ROOT / "source" / a, root / "source" / a)
            if (ROOT / "release" / a).exists():
                shutil.copytree(ROOT / "release" / a, root / "release" / a)
        return cls(root)

    # Notebooks ----------------------------------------------------------------------
    def source_nb(self, assignment: str):
        return notebooks.read(next((self.root / "source" / assignment).glob("*.ipynb")))

    def auto_cells(self, assignment: str) -> dict[str, float]:
        """grade_id -> points of every automatically graded test cell."""
        return {
            notebooks.grade_id(cell): float(cell.metadata["nbgrader"]["points"])
            for cell in self.source_nb(assignment).cells
            if _nbgrader(cell).get("grade") and not _nbgrader(cell).get("solution")
        }

    def manual_points(self, assignment: str) -> float:
        """The points of the answers graded by hand (written answers)."""
        return sum(
            float(cell.metadata["nbgrader"]["points"])
            for cell in self.source_nb(assignment).cells
            if _nbgrader(cell).get("grade") and _nbgrader(cell).get("solution")
        )

    def release_nb(self, assignment: str):
        return notebooks.read(ROOT / "release" / assignment / f"{assignment}.ipynb")

    def solved(self, assignment: str, **overrides: str):
        """The release notebook answered with the instructor's solutions (and overrides)."""
        answers = notebooks.solutions(self.source_nb(assignment))
        answers.update(overrides)
        return notebooks.fill(self.release_nb(assignment), answers)

    def submit(
        self,
        student: str,
        assignment: str,
        nb=None,
        *,
        raw: bytes | None = None,
        name: str | None = None,
    ) -> Path:
        path = self.root / "submitted" / student / assignment / (name or f"{assignment}.ipynb")
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            path.write_bytes(raw)
        else:
            notebooks.write(nb, path)
        return path

    # Grading ------------------------------------------------------------------------
    def grade(self, assignment: str, **kwargs) -> dict[str, course_mod.Outcome]:
        outcomes = course_mod.grade(course_dir=self.root, assignment=assignment, **kwargs)
        return {o.student: o for o in outcomes}

    def grade_all(
        self, assignments: list[str], **kwargs
    ) -> dict[tuple[str, str], course_mod.Outcome]:
        """Grade several assignments in one run: (assignment, student) -> outcome."""
        outcomes = course_mod.grade(course_dir=self.root, assignment=assignments, **kwargs)
        return {(o.assignment, o.student): o for o in outcomes}

    def autograded_nb(self, student: str, assignment: str):
        return notebooks.read(
            self.root / "autograded" / student / assignment / f"{assignment}.ipynb"
        )

    def messages(self, student: str, assignment: str) -> dict[str, str]:
        return notebooks.cell_messages(self.autograded_nb(student, assignment))

    def feedback_html(self, student: str, assignment: str) -> str:
        return (self.root / "feedback" / student / assignment / f"{assignment}.html").read_text()


@pytest.fixture
def make_course(tmp_path):
    def make(*assignments: str) -> Course:
        return Course.create(tmp_path, list(assignments))

    return make
