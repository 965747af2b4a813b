"""Submissions: bringing them into the course, finding them, and telling which cannot be
graded at all before anything runs."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import nbformat

log = logging.getLogger("autograder.collect")


def is_lms_download(submissions: Path) -> bool:
    """Whether `submissions` is an LMS download (a zip; a folder of flat files; a folder of
    Moodle's per-participant folders) rather than a folder in nbgrader's layout."""
    submissions = Path(submissions)
    if submissions.is_file():
        return True
    if not submissions.is_dir():
        return False
    entries = list(submissions.iterdir())
    dirs = [p for p in entries if p.is_dir()]
    if any("_assignsubmission_" in p.name for p in dirs):
        return True
    return any(p.is_file() for p in entries) and not dirs


def import_submissions(*, course_dir: Path, assignment: str, submissions: Path) -> list[str]:
    """Copy submissions into submitted/<student>/<assignment>/ and return the students.

    Accepts nbgrader's layout (`<student>/<assignment>/*.ipynb`), a folder holding only
    `<student>/` folders whose notebooks sit directly inside, or an LMS download from
    Canvas, Moodle or Blackboard (a zip, or the folder it unpacks to), collected by
    :func:`autograder.lms.collect.collect` (its summary, naming every file skipped, is
    logged; a download that yields nothing raises
    :class:`~autograder.lms.collect.CollectError`).
    """
    course_dir = Path(course_dir).resolve()
    submissions = Path(submissions).resolve()
    target = course_dir / "submitted"
    if is_lms_download(submissions):
        from ..lms.collect import collect

        result = collect(course_dir=course_dir, assignment=assignment, download=submissions)
        log.warning(result.summary())
        return sorted(result.students)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions at {submissions}")
    students = []
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        src = student_dir / assignment if (student_dir / assignment).is_dir() else student_dir
        if src is student_dir and any(
            p.is_dir() and p.name != assignment for p in student_dir.iterdir()
        ):
            continue  # this student submitted other assignments only
        dest = target / student_dir.name / assignment
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
        students.append(student_dir.name)
    return students


def submitted_students(course_dir: Path, assignment: str) -> list[str]:
    """Everyone with a submitted/<student>/<assignment>/ folder, sorted."""
    sub = Path(course_dir) / "submitted"
    if not sub.exists():
        return []
    return sorted(p.name for p in sub.iterdir() if (p / assignment).is_dir())


def has_submissions(course_dir: Path, assignment: str, submissions: Path | None = None) -> bool:
    """Whether submitted/ (or `submissions`, in nbgrader's layout) holds `assignment`."""
    roots = [Path(course_dir) / "submitted"] + ([Path(submissions)] if submissions else [])
    return any(root.is_dir() and any(root.glob(f"*/{assignment}")) for root in roots)


def _notebook_problem(nb_path: Path) -> tuple[str, str] | None:
    raw = nb_path.read_bytes()
    if not raw.strip():
        return "empty_file", f"{nb_path.name}: empty file"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return "invalid_json", f"{nb_path.name}: invalid JSON ({exc})"
    if not isinstance(data, dict) or "cells" not in data:
        return "not_a_notebook", f"{nb_path.name}: not a notebook"
    try:
        nb = nbformat.from_dict(data)
        nbformat.validate(nb)
    except Exception as exc:
        return (
            "invalid_notebook",
            f"{nb_path.name}: not a valid notebook ({str(exc).splitlines()[0]})",
        )
    return None


def _grade_ids(path: Path) -> set[str]:
    try:
        nb = json.loads(path.read_bytes())
        return {
            gid
            for c in nb.get("cells", [])
            if (gid := ((c.get("metadata") or {}).get("nbgrader") or {}).get("grade_id"))
        }
    except (OSError, ValueError, AttributeError):
        return set()


def _owner(course_dir: Path, assignment: str, *, name: str | None = None, ids=()) -> str | None:
    """The other assignment a notebook (by file name, or by its cells) belongs to."""
    source = course_dir / "source"
    if not source.is_dir():
        return None
    for other in sorted(p for p in source.iterdir() if p.is_dir() and p.name != assignment):
        for nb_path in other.glob("*.ipynb"):
            if name is not None and nb_path.name == name:
                return other.name
            if ids and set(ids) & _grade_ids(nb_path):
                return other.name
    return None


def _timestamp_problem(folder: Path) -> str | None:
    """Why nbgrader could not read the submission's timestamp.txt (it would stop on it),
    or None. nbgrader's own `zip_collect` can write times it cannot read back."""
    path = folder / "timestamp.txt"
    if not path.exists():
        return None
    from nbgrader.utils import parse_utc

    text = path.read_text(errors="replace").strip()
    try:
        if not text:
            raise ValueError("empty")
        if re.fullmatch(r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", text):
            # an LMS's dashed time: nbgrader reads its -MM-SS tail as a time-zone offset
            raise ValueError("dashed time")
        parse_utc(text)
    except (ValueError, OverflowError):
        return (
            f"invalid timestamp: timestamp.txt holds {text!r}, which nbgrader cannot read "
            "(write the time as 2026-11-20 23:59:30, or collect the download again with "
            "`autograder collect`)"
        )
    return None


def submission_problem(course_dir: Path, assignment: str, student: str) -> tuple[str, str] | None:
    """(code, reason) when a submission cannot be graded at all, before running anything:
    nothing submitted, a timestamp.txt nbgrader cannot read, no notebook, an empty /
    non-JSON / non-notebook file, or another assignment's notebook (by file name, or by
    its graded cells)."""
    course_dir = Path(course_dir)
    folder = course_dir / "submitted" / student / assignment
    if not folder.is_dir():
        return "not_submitted", "missing: nothing submitted"
    stamp = _timestamp_problem(folder)
    if stamp:
        return "invalid_timestamp", stamp
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        return "missing_notebook", "missing notebook: no .ipynb file submitted"
    for nb_path in notebooks:
        problem = _notebook_problem(nb_path)
        if problem:
            return problem
    sources = {p.name: p for p in (course_dir / "source" / assignment).glob("*.ipynb")}
    matching = [p for p in notebooks if p.name in sources]
    if sources and not matching:
        names = ", ".join(p.name for p in notebooks)
        owner = next(
            (o for p in notebooks if (o := _owner(course_dir, assignment, name=p.name))), None
        )
        hint = f" (that is {owner})" if owner else ""
        return (
            "wrong_assignment",
            f"wrong assignment: expected {', '.join(sorted(sources))}, got {names}{hint}",
        )
    for nb_path in matching:
        ids = _grade_ids(nb_path)
        if ids and not ids & _grade_ids(sources[nb_path.name]):
            owner = _owner(course_dir, assignment, ids=ids)
            hint = f"{owner}'s cells" if owner else "cells of another assignment"
            return "wrong_assignment", f"wrong assignment: {nb_path.name} holds {hint}"
    return None
