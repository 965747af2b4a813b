"""nbgrader's side of a course directory: its configuration, its API object, and the
gradebook's view of an assignment and of a student's scores."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .outcome import Outcome


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
        exchange = Path(tempfile.gettempdir()) / "autograder-exchange"
        exchange.mkdir(exist_ok=True)
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
    """The gradebook must know the assignment's cells (from source/) before autograde.
    Run in the course directory (:func:`in_dir`)."""
    with api.gradebook as gb:
        known = {a.name for a in gb.assignments}
    if assignment not in known:
        if not (course_dir / "source" / assignment).is_dir():
            raise FileNotFoundError(f"no source/{assignment} in {course_dir}")
        require_success(
            api.generate_assignment(assignment, force=True, create=True),
            f"nbgrader generate_assignment {assignment}",
        )


def read_scores(api, assignment: str, student: str) -> Outcome:
    """The gradebook's scores of a graded submission, as a "graded" outcome."""
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


def forget_submission(api, course_dir: Path, assignment: str, student: str) -> None:
    """Leave no grade behind for a submission that could not be graded: remove it from
    the gradebook (an earlier run may have graded an older version) and drop its
    autograded and feedback folders."""
    from nbgrader.api import MissingEntry

    with api.gradebook as gb:
        with contextlib.suppress(MissingEntry):
            gb.remove_submission(assignment, student)
    for top in ("autograded", "feedback"):
        folder = course_dir / top / student / assignment
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
