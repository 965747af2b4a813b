"""Grade a corpus of simulated students through the real pipeline (shared by test modules)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Course


def grade_corpus(base: Path, assignment: str, students: dict) -> tuple[Course, dict]:
    """One course, every simulated student submitted, graded once."""
    course = Course.create(base, [assignment])
    for name, student in students.items():
        nb = (
            course.release_nb(assignment)
            if student.blank
            else course.solved(assignment, **student.answers)
        )
        course.submit(name, assignment, nb)
    return course, course.grade(assignment)


def auto_cells(course: Course, assignment: str) -> dict[str, float]:
    """grade_id -> points of every automatically graded test cell."""
    out = {}
    for cell in course.source_nb(assignment).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"]] = float(meta["points"])
    return out
