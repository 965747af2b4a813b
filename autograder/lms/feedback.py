"""Feedback back to students without nbgrader's exchange.

:func:`regenerate` writes the feedback pages again from the gradebook with nbgrader's own
``generate_feedback`` (after hand grading in formgrader, the pages then show the hand
grades and comments); it reads grades and never writes them.

:func:`archive` packs one assignment's pages for the LMS:

- Moodle ("Upload multiple feedback files in a zip"): one folder per participant, named
  as in Moodle's download, ``<full name>_<participant id>_assignfeedback_file_/``, holding
  the student's feedback page(s);
- Canvas and Blackboard have no bulk upload of feedback files: one folder per student,
  ``<student id>/`` (for Canvas ``<sortable name>_<user id>_<student id>/``), and
  ``index.csv`` naming each folder's student, LMS id, score and files.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..core.nbgrader_io import in_dir, nbgrader_api
from .collect import read_manifest
from .export import read_grades


@dataclass
class Regenerated:
    done: list[tuple[str, str]] = field(default_factory=list)  # (assignment, student)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (..., reason)


def _flags(course_dir: Path, assignment: str, student: str) -> str:
    """The tamper flags the last grading run recorded for this submission ("" if none),
    so that regenerated pages keep their banner."""
    from ..batch.store import OutcomeStore

    path = course_dir / ".autograder" / "outcomes.sqlite"
    if not path.exists():
        return ""
    store = OutcomeStore(path)
    try:
        got = store.get(assignment, student)
    finally:
        store.close()
    if got is None:
        return ""
    reason = got[1].reason
    start = reason.find("tampered: ")
    if start < 0:
        return ""
    return reason[start:].split("; feedback failed")[0]


def regenerate(
    *,
    course_dir: Path = Path("."),
    assignments: list[str] | None = None,
    students: list[str] | None = None,
) -> Regenerated:
    """Feedback pages again, for every autograded submission (of `assignments`, of
    `students`), from the gradebook as it stands: hand grades and comments included."""
    from ..batch import tamper

    course_dir = Path(course_dir).resolve()
    autograded = course_dir / "autograded"
    pairs = sorted(
        (p.parent.name, p.parent.parent.name)
        for p in autograded.glob("*/*/*.ipynb")
        if (assignments is None or p.parent.name in assignments)
        and (students is None or p.parent.parent.name in students)
    )
    pairs = sorted(set(pairs))
    result = Regenerated()
    api = nbgrader_api(course_dir)
    api.config.GenerateFeedback.exporter_class = tamper.FeedbackExporter
    with in_dir(course_dir):
        for assignment, student in pairs:
            tamper.flag_feedback(api.config, _flags(course_dir, assignment, student))
            out = api.generate_feedback(assignment, student, force=True)
            if out.get("success"):
                result.done.append((assignment, student))
            else:
                detail = (out.get("error") or out.get("log") or "").strip().splitlines()
                result.failed.append((assignment, student, detail[-1] if detail else "failed"))
    return result


def _safe(text: str) -> str:
    """A folder name the LMS and every file system accept (Moodle keeps spaces)."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", text).strip() or "_"


def archive(
    *,
    course_dir: Path = Path("."),
    assignment: str,
    lms: str = "csv",
    out: Path | None = None,
) -> tuple[Path, list[str]]:
    """One zip of `assignment`'s feedback pages laid out for `lms`'s upload. Returns the
    zip and notes (students left out, and why)."""
    course_dir = Path(course_dir).resolve()
    grades = read_grades(course_dir, [assignment])
    seen = read_manifest(course_dir, assignment)
    out = Path(out) if out else course_dir / "export" / f"feedback_{assignment}_{lms}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    index = io.StringIO()
    rows = csv.writer(index)
    rows.writerow(["folder", "student_id", "first_name", "last_name", "lms_id", "score", "files"])
    count = 0
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        folders = sorted(p for p in (course_dir / "feedback").glob(f"*/{assignment}") if p.is_dir())
        for folder in folders:
            student_id = folder.parent.name
            # the pages (and anything they link), not nbgrader's own timestamp.txt
            files = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.name != "timestamp.txt"
            )
            if not files:
                continue
            student = grades.roster.get(student_id)
            got = seen.get(student_id, {})
            if lms == "moodle":
                if got.get("lms") == "moodle":
                    name, pid = got["name"], got["lms_id"]
                else:
                    name, pid = student.full_name, student.lms_id
                if not (name and pid):
                    notes.append(
                        f"{student_id}: left out, no Moodle participant id (collect the "
                        "assignment's Moodle download, or give lms_id in the roster)"
                    )
                    continue
                # Moodle splits the folder's name at "_": none in the name (as its download)
                top = _safe(f"{name.replace('_', ' ')}_{pid}_assignfeedback_file_")
            elif lms == "canvas" and student.lms_id:
                sortable = re.sub(r"[\W_]+", "", (student.last_name + student.first_name).lower())
                top = _safe(f"{sortable}_{student.lms_id}_{student_id}")
            else:
                top = _safe(student_id)
            for f in files:
                zf.write(f, f"{top}/{f.relative_to(folder).as_posix()}")
            score = grades.total(assignment, student_id)
            rows.writerow(
                [
                    top,
                    student_id,
                    student.first_name,
                    student.last_name,
                    student.lms_id or got.get("lms_id", ""),
                    score,
                    " ".join(f.relative_to(folder).as_posix() for f in files),
                ]
            )
            count += 1
        if lms != "moodle":
            zf.writestr("index.csv", index.getvalue())
    if not count:
        tmp.unlink()
        raise FileNotFoundError(
            f"no feedback pages for {assignment} in {course_dir / 'feedback'}: grade first"
            + ("; " + "; ".join(notes) if notes else "")
        )
    tmp.replace(out)
    return out, notes
