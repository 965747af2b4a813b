"""Grades out of the gradebook, in the files each LMS imports.

Every export writes two files into the output folder:

- ``grades_by_question.csv``: one row per student (id, names, email, LMS id, section),
  then per assignment its total and one column per graded cell, headed by the assignment
  and the cell's grade id (``01_derivatives/q3-1-analytic``), hand grades included;
- the LMS's own import file:

  ========== ================================ =============================================
  ``--lms``  file                             columns
  ========== ================================ =============================================
  canvas     ``canvas_grades.csv``            ``Student`` (Last, First), ``ID`` (Canvas user
                                              id), ``SIS User ID``, ``SIS Login ID``,
                                              ``Section``, then ``<assignment> (<Canvas
                                              assignment id>)`` per assignment; a second row
                                              ``Points Possible``
  moodle     ``moodle_grades.csv``            ``First name``, ``Last name``, ``ID number``,
                                              ``Email address``, one column per assignment
             ``moodle_worksheet_<a>.csv``     Moodle's grading worksheet per assignment:
                                              ``Identifier`` (``Participant <id>``), ``Full
                                              name``, ``Email address``, ``Status``,
                                              ``Grade``, ``Maximum Grade``, ...
  blackboard ``blackboard_grades.csv``        ``Last Name``, ``First Name``, ``Username``,
                                              ``<assignment> [Total Pts: N] |<column id>``
                                              (every value quoted, as Blackboard asks)
  csv        (only the per-question file)
  ========== ================================ =============================================

An assignment's LMS id (Canvas assignment id, Blackboard column id) comes from `ids`;
without one the column is headed by the assignment's name alone, which Canvas imports
as a new assignment and Blackboard as a new text column worth 0 points. A student not graded in an assignment gets an empty
cell (the LMS leaves its grade alone). Points still to be graded by hand are not in the
totals until they are graded; they are listed in the export's notes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .collect import read_manifest
from .roster import Roster, Student, gradebook
from .roster import load as load_roster

FORMATS = ("canvas", "moodle", "blackboard", "csv")

CANVAS_ID_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_COLUMNS = ["First name", "Last name", "ID number", "Email address"]
MOODLE_WORKSHEET = [
    "Identifier",
    "Full name",
    "Email address",
    "Status",
    "Grade",
    "Maximum Grade",
    "Grade can be changed",
    "Last modified (submission)",
    "Last modified (grade)",
    "Feedback comments",
]
BLACKBOARD_ID_COLUMNS = ["Last Name", "First Name", "Username"]


@dataclass
class Cell:
    grade_id: str
    score: float | None  # None: still to be graded by hand
    max_score: float


@dataclass
class Submission:
    score: float
    max_score: float
    cells: list[Cell]
    pending: float  # points still to grade by hand


@dataclass
class Grades:
    """The gradebook's scores: assignments (with max score and cell ids) and per
    (assignment, student) the submission's scores."""

    roster: Roster
    assignments: dict[str, float] = field(default_factory=dict)  # name -> max score
    questions: dict[str, list[str]] = field(default_factory=dict)  # name -> grade ids
    maxima: dict[tuple[str, str], float] = field(default_factory=dict)  # (name, id) -> points
    submissions: dict[tuple[str, str], Submission] = field(default_factory=dict)

    def total(self, assignment: str, student: str) -> str:
        sub = self.submissions.get((assignment, student))
        return "" if sub is None else f"{sub.score:g}"


def read_grades(course_dir: Path, assignments: list[str] | None = None) -> Grades:
    """Everything an export needs, from the gradebook (and the roster beside it)."""
    from nbgrader.api import MissingEntry

    course_dir = Path(course_dir).resolve()
    roster = load_roster(course_dir)
    grades = Grades(roster)
    with gradebook(course_dir, create=False) as gb:
        if gb is None:
            raise FileNotFoundError(f"no gradebook in {course_dir}: grade first")
        names = sorted(a.name for a in gb.assignments)
        if assignments:
            unknown = [a for a in assignments if a not in names]
            if unknown:
                raise FileNotFoundError(
                    f"not in the gradebook: {', '.join(unknown)} "
                    f"(it holds {', '.join(names) or 'no assignment'})"
                )
            names = [a for a in names if a in assignments]
        for name in names:
            assignment = gb.find_assignment(name)
            grades.assignments[name] = float(assignment.max_score)
            ids = []
            order = _source_order(course_dir, name)
            for nb in assignment.notebooks:
                cells = nb.grade_cells
                for c in sorted(cells, key=lambda c: (order.get(c.name, len(order)), c.name)):
                    ids.append(c.name)
                    grades.maxima[(name, c.name)] = float(c.max_score)
            grades.questions[name] = ids
            for student in roster.students:
                try:
                    sub = gb.find_submission(name, student.student_id)
                except MissingEntry:
                    continue
                cells, pending = [], 0.0
                for snb in sub.notebooks:
                    for g in snb.grades:
                        if g.auto_score is None and g.manual_score is None:
                            pending += float(g.max_score)
                            cells.append(Cell(g.name, None, float(g.max_score)))
                        else:
                            cells.append(Cell(g.name, float(g.score), float(g.max_score)))
                grades.submissions[(name, student.student_id)] = Submission(
                    float(sub.score), float(sub.max_score), cells, pending
                )
    return grades


def _source_order(course_dir: Path, assignment: str) -> dict[str, int]:
    """grade id -> its place in the source notebooks (the order students see)."""
    import json

    order: dict[str, int] = {}
    for nb_path in sorted((course_dir / "source" / assignment).glob("*.ipynb")):
        try:
            cells = json.loads(nb_path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            meta = (cell.get("metadata") or {}).get("nbgrader") or {}
            if meta.get("grade") and meta.get("grade_id"):
                order.setdefault(meta["grade_id"], len(order))
    return order


def _write(path: Path, rows: list[list[str]], quoting: int = csv.QUOTE_MINIMAL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, quoting=quoting).writerows(rows)
    return path


def by_question(grades: Grades, path: Path) -> Path:
    header = ["student_id", "first_name", "last_name", "email", "lms_id", "section"]
    for a, ids in grades.questions.items():
        header += [a, *[f"{a}/{gid}" for gid in ids]]
    rows = [header]
    possible = ["Points Possible", "", "", "", "", ""]
    for a, ids in grades.questions.items():
        possible.append(f"{grades.assignments[a]:g}")
        possible += [f"{grades.maxima[(a, gid)]:g}" for gid in ids]
    rows.append(possible)
    for s in grades.roster.students:
        row = [s.student_id, s.first_name, s.last_name, s.email, s.lms_id, s.section]
        for a, ids in grades.questions.items():
            sub = grades.submissions.get((a, s.student_id))
            row.append(grades.total(a, s.student_id))
            scores = {c.grade_id: c.score for c in sub.cells} if sub else {}
            row += ["" if scores.get(gid) is None else f"{scores[gid]:g}" for gid in ids]
        rows.append(row)
    return _write(path, rows)


def _heading(assignment: str, ids: dict[str, str], form: str) -> str:
    lms_id = ids.get(assignment, "")
    return form.format(name=assignment, id=lms_id) if lms_id else assignment


def canvas(grades: Grades, path: Path, ids: dict[str, str]) -> Path:
    names = list(grades.assignments)
    rows = [CANVAS_ID_COLUMNS + [_heading(a, ids, "{name} ({id})") for a in names]]
    rows.append(["Points Possible", "", "", "", ""] + [f"{grades.assignments[a]:g}" for a in names])
    for s in grades.roster.students:
        rows.append(
            [s.sortable_name, s.lms_id, "", s.login, s.section]
            + [grades.total(a, s.student_id) for a in names]
        )
    return _write(path, rows)


def moodle(grades: Grades, path: Path) -> Path:
    names = list(grades.assignments)
    rows = [MOODLE_COLUMNS + names]
    for s in grades.roster.students:
        rows.append(
            [s.first_name, s.last_name, s.student_id, s.email]
            + [grades.total(a, s.student_id) for a in names]
        )
    return _write(path, rows)


def moodle_worksheet(grades: Grades, course_dir: Path, assignment: str, path: Path) -> Path:
    """Moodle's "grading worksheet" of one assignment: the participant ids are that
    assignment's own (Moodle numbers participants per assignment), from its download."""
    from datetime import datetime

    # Moodle's own date form: it reads "Last modified (grade)" back with strtotime and
    # skips a row whose grade changed in Moodle later, unless told to overwrite
    moodle_date = "%A, %d %B %Y, %I:%M %p"
    now = datetime.now().strftime(moodle_date)
    seen = read_manifest(course_dir, assignment)
    rows = [MOODLE_WORKSHEET]
    for s in grades.roster.students:
        sub = grades.submissions.get((assignment, s.student_id))
        got = seen.get(s.student_id, {})
        participant = got.get("lms_id") if got.get("lms") == "moodle" else s.lms_id
        if sub is None or not participant:
            continue
        comment = f"Autograded: {sub.score:g} / {sub.max_score:g}"
        if sub.pending:
            comment += f" ({sub.pending:g} points still to be graded by hand)"
        rows.append(
            [
                f"Participant {participant}",
                s.full_name,
                s.email,
                "Submitted for grading - Graded",
                f"{sub.score:g}",
                f"{sub.max_score:g}",
                "Yes",
                _moodle_time(got.get("submitted_at", ""), moodle_date),
                now,
                comment,
            ]
        )
    return _write(path, rows)


def _moodle_time(text: str, form: str) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).strftime(form)
    except ValueError:
        return "-"


def blackboard(grades: Grades, path: Path, ids: dict[str, str]) -> Path:
    names = list(grades.assignments)
    head = []
    for a in names:
        title = f"{a} [Total Pts: {grades.assignments[a]:g}]"
        head.append(f"{title} |{ids[a]}" if ids.get(a) else title)
    rows = [BLACKBOARD_ID_COLUMNS + head]
    for s in grades.roster.students:
        rows.append(
            [s.last_name, s.first_name, s.login or s.lms_id or s.student_id]
            + [grades.total(a, s.student_id) for a in names]
        )
    # Blackboard reads a comma-separated upload only with every value quoted
    return _write(path, rows, csv.QUOTE_ALL)


def _missing_ids(grades: Grades, lms: str) -> list[Student]:
    if lms == "canvas":
        return [s for s in grades.roster.students if not s.lms_id]
    if lms == "blackboard":
        return [s for s in grades.roster.students if not (s.login or s.lms_id)]
    if lms == "moodle":
        return [s for s in grades.roster.students if not s.email]
    return []


def export(
    *,
    course_dir: Path = Path("."),
    lms: str = "csv",
    out_dir: Path | None = None,
    assignments: list[str] | None = None,
    ids: dict[str, str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Write the grades for `lms` (canvas, moodle, blackboard or csv) into `out_dir`
    (default ``<course>/export/``). Returns the files written and notes for the
    instructor (students the LMS cannot match, points still to grade by hand)."""
    if lms not in FORMATS:
        raise ValueError(f"unknown LMS {lms!r}: one of {', '.join(FORMATS)}")
    course_dir = Path(course_dir).resolve()
    out_dir = Path(out_dir) if out_dir else course_dir / "export"
    ids = ids or {}
    grades = read_grades(course_dir, assignments)
    if not grades.assignments:
        raise FileNotFoundError(f"no assignment in the gradebook of {course_dir}: grade first")
    written = [by_question(grades, out_dir / "grades_by_question.csv")]
    if lms == "canvas":
        written.append(canvas(grades, out_dir / "canvas_grades.csv", ids))
    elif lms == "moodle":
        written.append(moodle(grades, out_dir / "moodle_grades.csv"))
        for a in grades.assignments:
            written.append(
                moodle_worksheet(grades, course_dir, a, out_dir / f"moodle_worksheet_{a}.csv")
            )
    elif lms == "blackboard":
        written.append(blackboard(grades, out_dir / "blackboard_grades.csv", ids))
    notes = []
    missing = _missing_ids(grades, lms)
    if missing:
        what = {"canvas": "Canvas user id", "blackboard": "username", "moodle": "email"}[lms]
        notes.append(
            f"{len(missing)} student(s) without a {what} (the LMS matches rows by it): "
            + ", ".join(s.student_id for s in missing)
        )
    pending = [
        f"{student} ({a}: {sub.pending:g} pt)"
        for (a, student), sub in sorted(grades.submissions.items())
        if sub.pending
    ]
    if pending:
        notes.append("points still to grade by hand, not in the totals: " + ", ".join(pending))
    no_id = [a for a in grades.assignments if a not in ids]
    if lms == "canvas" and no_id:
        notes.append(
            f"no canvas id given for {', '.join(no_id)}: Canvas creates new assignment(s) "
            "(give --assignment-id NAME=ID, the number in the assignment's address, to fill "
            "existing ones)"
        )
    if lms == "blackboard" and no_id:
        notes.append(
            f"no blackboard id given for {', '.join(no_id)}: Blackboard adds text column(s) "
            "with 0 points possible (create the columns in the Grade Center, download it "
            "once to read their ids, and give --assignment-id NAME=ID)"
        )
    return written, notes
