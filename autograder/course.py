"""Release and grade through nbgrader's own API, on a course directory.

A course directory is nbgrader's layout: `nbgrader_config.py`, `source/<assignment>/`,
`release/`, `submitted/<student>/<assignment>/`, `autograded/`, `feedback/` and the
gradebook (SQLite `gradebook.db` by default). Functions here are keyword-only; the
command line in :mod:`autograder.cli` only parses arguments and calls them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .lint import AuthoringError, lint_source

log = logging.getLogger("autograder")


# --- nbgrader plumbing -------------------------------------------------------------------


def load_config(course_dir: Path):
    """The course's nbgrader config, rooted at `course_dir`."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    cfg = Config()
    if (course_dir / "nbgrader_config.py").exists():
        cfg.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config())
    cfg.CourseDirectory.root = str(course_dir)
    return cfg


@contextlib.contextmanager
def _in_dir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _tools_on_path() -> None:
    """nbgrader runs `alembic` (gradebook migrations) as a command: it must be on PATH even
    when this package runs from a virtual environment that was not activated."""
    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def nbgrader_api(course_dir: Path):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    _tools_on_path()
    cfg = load_config(course_dir)
    if "root" not in cfg.get("Exchange", {}):
        # Releasing and grading never use nbgrader's exchange, but the API checks its
        # folder on start-up and complains when the system-wide default is missing.
        exchange = Path(tempfile.gettempdir()) / "autograder-exchange"
        exchange.mkdir(exist_ok=True)
        cfg.Exchange.root = str(exchange)
    if "log_level" not in cfg.get("NbGraderAPI", {}):
        # nbgrader's apps log every file they write; callers report what matters.
        cfg.NbGraderAPI.log_level = logging.WARNING
    coursedir = CourseDirectory(config=cfg)
    return NbGraderAPI(coursedir=coursedir, config=cfg)


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        detail = (result.get("error") or result.get("log") or "").strip()
        raise RuntimeError(f"{what} failed:\n{detail[-3000:]}")


def source_assignments(course_dir: Path) -> list[str]:
    return sorted(
        p.name for p in (course_dir / "source").iterdir() if p.is_dir() and any(p.glob("*.ipynb"))
    )


# --- release -----------------------------------------------------------------------------


def release(*, course_dir: Path = Path("."), assignments: list[str] | None = None) -> list[Path]:
    """Lint the instructor notebooks, then generate the student versions into release/.

    Refuses (AuthoringError) before touching release/ if any notebook has a problem.
    Returns the release notebooks written.
    """
    course_dir = Path(course_dir).resolve()
    assignments = assignments or source_assignments(course_dir)
    problems = lint_source(course_dir, assignments)
    if problems:
        raise AuthoringError(problems)
    api = nbgrader_api(course_dir)
    written: list[Path] = []
    with _in_dir(course_dir):
        for assignment in assignments:
            _check(
                api.generate_assignment(assignment, force=True, create=True),
                f"nbgrader generate_assignment {assignment}",
            )
            for nb_path in sorted((course_dir / "release" / assignment).glob("*.ipynb")):
                _normalise(nb_path)
                written.append(nb_path)
    return written


def _normalise(path: Path) -> None:
    """Write the notebook in one canonical form so regenerating gives no diff.

    Test cells are tagged `raises-exception`: a failed check is an error output, and
    without the tag JupyterLab's Run All stops at the first one, leaving every later
    question unchecked. nbgrader's checksums do not cover tags, and autograde runs on.
    """
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            meta = cell.metadata.get("nbgrader") or {}
            if meta.get("grade") and not meta.get("solution"):
                tags = cell.metadata.setdefault("tags", [])
                if "raises-exception" not in tags:
                    tags.append("raises-exception")
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


# --- submissions -------------------------------------------------------------------------


def import_submissions(*, course_dir: Path, assignment: str, submissions: Path) -> list[str]:
    """Copy submissions into submitted/<student>/<assignment>/ and return the students.

    Accepts nbgrader's layout (`<student>/<assignment>/*.ipynb`), a folder holding only
    `<student>/` folders whose notebooks sit directly inside, or an LMS download (a zip
    file or a flat folder of `..._<student>_attempt_<timestamp>_<notebook>.ipynb` files),
    which goes through nbgrader's own `zip_collect`.
    """
    course_dir = Path(course_dir).resolve()
    submissions = Path(submissions).resolve()
    target = course_dir / "submitted"
    if (
        submissions.is_file()
        and zipfile.is_zipfile(submissions)
        or (
            submissions.is_dir()
            and any(p.is_file() for p in submissions.iterdir())
            and not any(p.is_dir() for p in submissions.iterdir())
        )
    ):
        return _zip_collect(course_dir, assignment, submissions)
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


def _zip_collect(course_dir: Path, assignment: str, archive: Path) -> list[str]:
    from nbgrader.apps import ZipCollectApp

    dest = course_dir / "downloaded" / assignment / "archive"
    dest.mkdir(parents=True, exist_ok=True)
    if archive.is_dir():
        for f in archive.iterdir():
            shutil.copy2(f, dest / f.name)
    else:
        shutil.copy2(archive, dest / archive.name)
    cfg = load_config(course_dir)
    cfg.ZipCollectApp.force = True
    with _in_dir(course_dir):
        app = ZipCollectApp(config=cfg)
        app.initialize([assignment])
        app.coursedir.assignment_id = assignment
        app.start()
    sub = course_dir / "submitted"
    return (
        sorted(p.name for p in sub.iterdir() if (p / assignment).is_dir()) if sub.exists() else []
    )


# --- grading -----------------------------------------------------------------------------


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


def check_submission(path: Path, assignment: str) -> str | None:
    """Why a submission folder cannot be graded, or None if it holds valid notebooks."""
    notebooks = sorted(Path(path).glob("*.ipynb"))
    if not notebooks:
        return "missing notebook: no .ipynb file submitted"
    for nb_path in notebooks:
        problem = _notebook_problem(nb_path)
        if problem:
            return problem[1]
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


def submission_problem(course_dir: Path, assignment: str, student: str) -> tuple[str, str] | None:
    """(code, reason) when a submission cannot be graded at all, before running anything:
    nothing submitted, no notebook, an empty / non-JSON / non-notebook file, or another
    assignment's notebook (by file name, or by its graded cells)."""
    course_dir = Path(course_dir)
    folder = course_dir / "submitted" / student / assignment
    if not folder.is_dir():
        return "not_submitted", "missing: nothing submitted"
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


def grade(
    *,
    course_dir: Path = Path("."),
    assignment: str | list[str] | None = None,
    submissions: Path | None = None,
    students: list[str] | None = None,
    feedback: bool = True,
    csv_path: Path | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    wall_timeout: float | None = None,
    force: bool = False,
    progress: bool | None = None,
    executor=None,
) -> list[Outcome]:
    """Autograde every submission of `assignment` with nbgrader; record an outcome each.

    `assignment` may also be a list, or None for every assignment in source/ that has
    submissions: they are graded in one run (the workers and the warm kernel server start
    once). Submissions are graded in parallel (`jobs` workers, default one more than the
    cores) by nbgrader's own autograde pipeline, in kernels forked from a warm
    interpreter. One bad submission never stops the others: it is recorded as ungradable
    with the reason. A cell may use `timeout` CPU seconds (default: the course's
    Execute.timeout) and take `wall_timeout` wall seconds (default: five times that).
    Submissions graded by an earlier run and unchanged since are not graded again unless
    `force`. Writes feedback HTML for every graded student and a grades CSV; shows a
    progress bar on a terminal (`progress`). `executor`: where to run the submissions
    (default: a new :class:`~autograder.batch.executor.LocalExecutor` for this call).
    """
    from .batch.coordinator import grade_assignments, grade_class

    course_dir = Path(course_dir).resolve()
    if isinstance(assignment, str):
        names = [assignment]
    elif assignment:
        names = list(assignment)
    else:
        names = [
            a
            for a in source_assignments(course_dir)
            if _has_submissions(course_dir, a, submissions)
        ]
        if not names:
            raise FileNotFoundError(
                f"no submissions in nbgrader's layout (<student>/<assignment>/) for any "
                f"assignment of {course_dir / 'source'}: name the assignment"
            )
    if submissions is not None:
        for name in names:
            import_submissions(course_dir=course_dir, assignment=name, submissions=submissions)
    options = dict(
        course_dir=course_dir,
        students=students,
        jobs=jobs,
        timeout=timeout,
        wall_timeout=wall_timeout,
        feedback=feedback,
        force=force,
        progress=progress,
    )
    if len(names) == 1 or executor is not None:
        outcomes = []
        for name in names:
            outcomes += grade_class(assignment=name, executor=executor, **options)
    else:
        outcomes = grade_assignments(assignments=names, **options)
    write_csv(course_dir=course_dir, outcomes=outcomes, path=csv_path)
    return outcomes


def _has_submissions(course_dir: Path, assignment: str, submissions: Path | None) -> bool:
    """Whether submitted/ (or `submissions`, in nbgrader's layout) holds `assignment`."""
    roots = [course_dir / "submitted"] + ([Path(submissions)] if submissions else [])
    return any(root.is_dir() and any(root.glob(f"*/{assignment}")) for root in roots)


def _ensure_assignment(api, course_dir: Path, assignment: str) -> None:
    """The gradebook must know the assignment's cells (from source/) before autograde."""
    with api.gradebook as gb:
        known = {a.name for a in gb.assignments}
    if assignment not in known:
        if not (course_dir / "source" / assignment).is_dir():
            raise FileNotFoundError(f"no source/{assignment} in {course_dir}")
        _check(
            api.generate_assignment(assignment, force=True, create=True),
            f"nbgrader generate_assignment {assignment}",
        )


def _grade_one(api, course_dir: Path, assignment: str, student: str, feedback: bool) -> Outcome:
    """Grade one submission in this process, with ordinary kernels (no parallelism)."""
    problem = submission_problem(course_dir, assignment, student)
    if problem:
        return Outcome(student, assignment, "ungradable", problem[1], code=problem[0])
    result = api.autograde(assignment, student, force=True, create=True)
    if not result.get("success"):
        return Outcome(
            student, assignment, "ungradable", _failure_reason(result), code="autograde_failed"
        )
    outcome = _read_scores(api, assignment, student)
    if feedback:
        fb = api.generate_feedback(assignment, student, force=True)
        if not fb.get("success"):
            outcome.reason = "graded; feedback failed: " + _failure_reason(fb)
            outcome.code = "feedback_failed"
    return outcome


def _failure_reason(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for needle, reason in (
        ("Kernel died", "kernel died"),
        ("DeadKernelError", "kernel died"),
        ("CellTimeoutError", "timed out"),
        ("TimeoutError", "timed out"),
        ("Inconsistent checksums", "locked or test cells changed"),
        ("wrong assignment", "wrong assignment"),
    ):
        if needle in text:
            return reason
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return ("autograde failed: " + lines[-1][:200]) if lines else "autograde failed"


def _read_scores(api, assignment: str, student: str) -> Outcome:
    with api.gradebook as gb:
        sub = gb.find_submission(assignment, student)
        cells: dict[str, tuple[float | None, float]] = {}
        manual = 0.0
        for nb in sub.notebooks:
            for g in nb.grades:
                score = g.score
                cells[g.name] = (score, g.max_score)
                if g.auto_score is None and g.manual_score is None:
                    manual += g.max_score
        return Outcome(
            student, assignment, "graded", "", float(sub.score), float(sub.max_score), manual, cells
        )


def write_csv(*, course_dir: Path, outcomes: list[Outcome], path: Path | None = None) -> Path:
    """One row per student and assignment: status, reason, total and each cell's score."""
    import csv

    path = Path(path) if path else course_dir / "grades.csv"
    cells = sorted({name for o in outcomes for name in o.cells})
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "student",
                "assignment",
                "status",
                "reason",
                "score",
                "max_score",
                "manual_pending",
                *cells,
            ]
        )
        for o in outcomes:
            w.writerow(
                [
                    o.student,
                    o.assignment,
                    o.status,
                    o.reason,
                    f"{o.score:g}",
                    f"{o.max_score:g}",
                    f"{o.needs_manual:g}",
                    *[
                        "" if o.cells.get(c, (None,))[0] is None else f"{o.cells[c][0]:g}"
                        for c in cells
                    ],
                ]
            )
    return path
