"""nbgrader's side of a course directory: its configuration, its API object, and the
gradebook's view of an assignment and of a student's scores."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from .outcome import Outcome

# The course's grading state (outcomes, logs, released notebooks, the gradebook's
# generated copy of the assignment): never committed.
STATE_DIR = ".autograder"

# nbgrader's autograde pipeline with the course's cells (autograder.core.cells): missing
# cells restored before nbgrader's OverwriteCells, hand grades kept by SaveAutoGrades;
# OverwriteCells, SaveAutoGrades and the feedback's GetGrades read the gradebook once per
# notebook rather than once per cell.
SANITIZE = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "autograder.core.cells.RestoreMissingCells",
    "autograder.core.cells.OverwriteCellsAtOnce",
    "nbgrader.preprocessors.CheckCellMetadata",
]
AUTOGRADE = [
    "nbgrader.preprocessors.Execute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.core.cells.KeepHandGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]


def load_config(course_dir: Path):
    """The course's nbgrader config, rooted at `course_dir`."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    cfg = Config()
    if (course_dir / "nbgrader_config.py").exists():
        cfg.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config())
    cfg.CourseDirectory.root = str(course_dir)
    # The course's pipeline unless its nbgrader_config.py names its own.
    if "sanitize_preprocessors" not in cfg.get("Autograde", {}):
        cfg.Autograde.sanitize_preprocessors = list(SANITIZE)
    if "autograde_preprocessors" not in cfg.get("Autograde", {}):
        cfg.Autograde.autograde_preprocessors = list(AUTOGRADE)
    if "preprocessors" not in cfg.get("GenerateFeedback", {}):
        # (classes, not names: nbgrader's converters read each one's traits)
        from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

        from .cells import GetGradesAtOnce

        cfg.GenerateFeedback.preprocessors = [GetGradesAtOnce, CSSHTMLHeaderPreprocessor]
    state = str(Path(course_dir) / STATE_DIR)
    cfg.RestoreMissingCells.state_dir = state
    cfg.KeepHandGrades.state_dir = state
    return cfg


@contextlib.contextmanager
def in_dir(path: Path) -> Iterator[None]:
    """Run the block with `path` as the working directory (nbgrader reads paths from it)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def tools_on_path() -> None:
    """nbgrader runs `alembic` (gradebook migrations) as a command: it must be on PATH even
    when this package runs from a virtual environment that was not activated."""
    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def nbgrader_api(course_dir: Path):
    """nbgrader's API object for the course (quiet: callers report what matters)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    tools_on_path()
    cfg = load_config(course_dir)
    if "root" not in cfg.get("Exchange", {}):
        # Releasing and grading never use nbgrader's exchange, but the API checks its
        # folder on start-up and complains when the system-wide default is missing.
        # (An empty folder in the course's state, not in the temporary directory.)
        exchange = Path(course_dir) / ".autograder" / "exchange"
        exchange.mkdir(parents=True, exist_ok=True)
        cfg.Exchange.root = str(exchange)
    if "log_level" not in cfg.get("NbGraderAPI", {}):
        # nbgrader's apps log every file they write; callers report what matters.
        cfg.NbGraderAPI.log_level = logging.WARNING
    coursedir = CourseDirectory(config=cfg)
    return NbGraderAPI(coursedir=coursedir, config=cfg)


def require_success(result: dict, what: str) -> None:
    """Raise RuntimeError, with the end of nbgrader's log, unless `result` succeeded."""
    if not result.get("success"):
        detail = (result.get("error") or result.get("log") or "").strip()
        raise RuntimeError(f"{what} failed:\n{detail[-3000:]}")


def source_assignments(course_dir: Path) -> list[str]:
    """The assignments of source/ (folders holding a notebook), sorted."""
    return sorted(
        p.name for p in (course_dir / "source").iterdir() if p.is_dir() and any(p.glob("*.ipynb"))
    )


def ensure_assignment(api, course_dir: Path, assignment: str) -> None:
    """Make the gradebook's record of the assignment's cells match source/ (run in the
    course directory, :func:`in_dir`).

    nbgrader's generate_assignment does this, but writes release/ (a committed folder) and
    refuses to add or remove a cell once there are submissions. Here it runs with its
    output in the course's state folder (``.autograder/generated/``, also what
    :class:`~.cells.RestoreMissingCells` restores cells from) and
    :class:`~.cells.SyncCells` in place of SaveCells. It runs when the gradebook lacks the
    assignment or the source notebook changed since the last time (its digest is kept
    next to the generated copy).
    """
    source = course_dir / "source" / assignment
    if not source.is_dir():
        raise FileNotFoundError(f"no source/{assignment} in {course_dir}")
    generated = course_dir / STATE_DIR / "generated" / assignment
    stamp = generated.parent / f"{assignment}.source-digest"
    digest = _source_digest(source)
    with api.gradebook as gb:
        known = {a.name for a in gb.assignments}
    if assignment in known and stamp.exists() and stamp.read_text() == digest:
        return
    result = generate_assignment(api, course_dir, assignment, generated.parent)
    require_success(result, f"preparing the gradebook for {assignment}")
    stamp.write_text(digest)


def _source_digest(source: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(source)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def generate_assignment(api, course_dir: Path, assignment: str, into: Path) -> dict:
    """nbgrader's generate_assignment of `assignment` into `into` (not release/), with
    :class:`~.cells.SyncCells` recording the cells in the gradebook; nbgrader's result
    dict."""
    from nbgrader.apps.api import capture_log
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import SaveCells

    from .cells import SyncCells

    cfg = copy.deepcopy(api.config)
    cfg.CourseDirectory.root = str(course_dir)
    cfg.CourseDirectory.release_directory = str(Path(into).resolve())
    steps = cfg.GenerateAssignment.get("preprocessors") or list(
        GenerateAssignment.class_traits()["preprocessors"].default()
    )
    cfg.GenerateAssignment.preprocessors = [
        SyncCells if p in (SaveCells, "nbgrader.preprocessors.SaveCells") else p for p in steps
    ]
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = assignment
    app = GenerateAssignment(coursedir=coursedir, config=cfg)
    app.force = True
    app.create_assignment = True
    return capture_log(app)


def rows_with_cells(gb, model, notebook_ids):
    """The `model` rows (nbgrader's Grade or Comment) of the submitted notebooks
    `notebook_ids`, each with its cell loaded: one query, not one per row's cell."""
    from sqlalchemy.orm import joinedload

    return (
        gb.db.query(model)
        .options(joinedload(model.cell))
        .filter(model.notebook_id.in_(list(notebook_ids)))
    )


def read_scores(api, assignment: str, student: str, gb=None) -> Outcome:
    """The gradebook's scores of a graded submission, as a "graded" outcome. `gb`: an
    open Gradebook to read them through (default: one opened for this)."""
    if gb is None:
        with api.gradebook as opened:
            return read_scores(api, assignment, student, opened)
    from nbgrader.api import Grade, SubmittedNotebook
    from sqlalchemy.orm import joinedload, undefer

    sub = gb.find_submission(assignment, student)
    cells: dict[str, tuple[float | None, float]] = {}
    manual = 0.0
    # every grade of the submission with its cell and its maximum score (a deferred
    # column of nbgrader's, else loaded by a query per grade), in one query
    grades = (
        gb.db.query(Grade)
        .options(joinedload(Grade.cell), undefer(Grade.max_score))
        .join(SubmittedNotebook, SubmittedNotebook.id == Grade.notebook_id)
        .filter(SubmittedNotebook.assignment_id == sub.id)
        .order_by(SubmittedNotebook.id, Grade.id)
    )
    for g in grades:
        score = g.score
        cells[g.cell.name] = (score, g.max_score)
        if g.auto_score is None and g.manual_score is None:
            manual += g.max_score
    return Outcome(
        student, assignment, "graded", "", float(sub.score), float(sub.max_score), manual, cells
    )


def hand_grades_file(course_dir: Path, assignment: str, student: str) -> Path:
    """Where the hand grades of a submission removed from the gradebook are kept."""
    return Path(course_dir) / STATE_DIR / "hand_grades" / assignment / f"{student}.json"


def save_hand_grades(gb, course_dir: Path, assignment: str, student: str) -> Path | None:
    """Keep the scores and comments given by hand to a submission about to be removed from
    the gradebook (:class:`~.cells.KeepHandGrades` puts them back when the same answers
    are graded again). Raises nbgrader's MissingEntry when there is no submission."""
    import json

    sub = gb.find_submission(assignment, student)
    kept: dict[str, dict[str, dict]] = {}
    for nb in sub.notebooks:
        cells: dict[str, dict] = {}
        for g in nb.grades:
            if g.manual_score is not None or g.extra_credit:
                cells.setdefault(g.name, {}).update(
                    manual_score=g.manual_score, extra_credit=g.extra_credit
                )
        for c in nb.comments:
            if c.manual_comment:
                cells.setdefault(c.name, {})["manual_comment"] = c.manual_comment
        if cells:
            kept[nb.name] = cells
    if not kept:
        return None
    path = hand_grades_file(course_dir, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    earlier.update(kept)
    path.write_text(json.dumps(earlier, indent=1, sort_keys=True), encoding="utf-8")
    return path


def forget_submission(api, course_dir: Path, assignment: str, student: str) -> None:
    """Leave no grade behind for a submission that could not be graded: remove it from
    the gradebook (an earlier run may have graded an older version) and drop its
    autograded and feedback folders. Grades and comments given by hand are kept
    (:func:`save_hand_grades`)."""
    from nbgrader.api import MissingEntry

    with api.gradebook as gb:
        with contextlib.suppress(MissingEntry):
            save_hand_grades(gb, course_dir, assignment, student)
            gb.remove_submission(assignment, student)
    for top in ("autograded", "feedback"):
        folder = course_dir / top / student / assignment
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
