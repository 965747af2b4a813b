"""Release and grade through nbgrader's own API, on a course directory.

A course directory is nbgrader's layout: `nbgrader_config.py`, `source/<assignment>/`,
`release/`, `submitted/<student>/<assignment>/`, `autograded/`, `feedback/` and the
gradebook (SQLite `gradebook.db` by default). Functions here are keyword-only; the
command line in :mod:`autograder.cli` only parses arguments and calls them.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from .core.nbgrader_io import (
    in_dir,
    load_config,
    nbgrader_api,
    require_success,
    source_assignments,
)
from .core.outcome import Outcome
from .core.request import GradeRequest
from .core.submissions import (
    has_submissions,
    import_submissions,
    is_lms_download,
    submission_problem,
)
from .lint import AuthoringError, lint_source

# What the facade offers besides its own functions (from autograder.core).
__all__ = [
    "GradeRequest",
    "Outcome",
    "grade",
    "import_submissions",
    "load_config",
    "nbgrader_api",
    "release",
    "source_assignments",
    "submission_problem",
    "write_csv",
]


# --- release -----------------------------------------------------------------------------


def release(
    *,
    course_dir: Path = Path("."),
    assignments: list[str] | None = None,
    check_solutions: bool = True,
) -> list[Path]:
    """Lint the instructor notebooks, grade their solutions, then generate the student
    versions into release/.

    Refuses (AuthoringError) before touching release/ if any notebook has a problem, or
    (`check_solutions`) if the instructor's solution loses a point
    (:func:`autograder.solutions.solution_problems`). Each notebook released is also kept
    among the course's released versions (tamper flags compare submissions with those,
    not with today's source). Returns the release notebooks written.
    """
    from .batch.tamper import record_release
    from .core.nbgrader_io import generate_assignment

    course_dir = Path(course_dir).resolve()
    assignments = assignments or source_assignments(course_dir)
    problems = lint_source(course_dir, assignments)
    if problems:
        raise AuthoringError(problems)
    if check_solutions:
        from .solutions import solution_problems

        problems = solution_problems(course_dir, assignments)
        if problems:
            raise AuthoringError(problems)
    api = nbgrader_api(course_dir)
    written: list[Path] = []
    with in_dir(course_dir):
        for assignment in assignments:
            # nbgrader's generate_assignment, which also records the cells in the gradebook
            # when it already has submissions of the assignment
            require_success(
                generate_assignment(api, course_dir, assignment, course_dir / "release"),
                f"nbgrader generate_assignment {assignment}",
            )
            for nb_path in sorted((course_dir / "release" / assignment).glob("*.ipynb")):
                _normalise(nb_path)
                record_release(course_dir, nb_path)
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


# --- grading -------------------------------------------------------------------------------


def grade(
    *,
    course_dir: Path = Path("."),
    assignment: str | list[str] | None = None,
    submissions: Path | None = None,
    students: list[str] | None = GradeRequest.students,
    feedback: bool = GradeRequest.feedback,
    csv_path: Path | None = None,
    jobs: int | None = GradeRequest.jobs,
    timeout: float | None = GradeRequest.timeout,
    wall_timeout: float | None = GradeRequest.wall_timeout,
    force: bool = GradeRequest.force,
    progress: bool | None = GradeRequest.progress,
    cluster: str | None = GradeRequest.cluster,
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
    `cluster`: grade on a Dask cluster instead, ``tcp://HOST:8786`` or ``local:N`` (see
    :class:`~autograder.core.request.GradeRequest`).
    """
    from .batch import coordinator

    course_dir = Path(course_dir).resolve()
    if isinstance(assignment, str):
        names = [assignment]
    elif assignment:
        names = list(assignment)
    else:
        names = [
            a for a in source_assignments(course_dir) if has_submissions(course_dir, a, submissions)
        ]
        if not names:
            raise FileNotFoundError(
                f"no submissions in nbgrader's layout (<student>/<assignment>/) for any "
                f"assignment of {course_dir / 'source'}: name the assignment"
            )
    if submissions is not None:
        if len(names) > 1 and is_lms_download(Path(submissions)):
            raise FileNotFoundError(
                f"{submissions} is an LMS download, which holds one assignment: name it "
                f"(one of {', '.join(names)})"
            )
        for name in names:
            import_submissions(course_dir=course_dir, assignment=name, submissions=submissions)
    request = GradeRequest(
        course_dir=course_dir,
        assignments=tuple(names),
        students=None if students is None else tuple(students),
        feedback=feedback,
        jobs=jobs,
        timeout=timeout,
        wall_timeout=wall_timeout,
        force=force,
        progress=progress,
        cluster=cluster,
    )
    outcomes = coordinator.grade(request, executor=executor)
    if feedback:  # grades given by hand since an earlier run reach the feedback pages
        from .batch.gradebook import refresh_feedback

        refresh_feedback(course_dir, outcomes)
    write_csv(course_dir=course_dir, outcomes=outcomes, path=csv_path)
    return outcomes


def write_csv(*, course_dir: Path, outcomes: list[Outcome], path: Path | None = None) -> Path:
    """One row per student and assignment: status, reason, total and each cell's score
    (columns `<assignment>/<grade id>`). For the LMS's own files: ``autograder export``."""
    import csv

    path = Path(path) if path else course_dir / "grades.csv"
    # a question is named with its assignment (q3-1-analytic is in 01 and in 02)
    cells = sorted({(o.assignment, name) for o in outcomes for name in o.cells})
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
                *[f"{a}/{name}" for a, name in cells],
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
                        ""
                        if a != o.assignment or o.cells.get(c, (None,))[0] is None
                        else f"{o.cells[c][0]:g}"
                        for a, c in cells
                    ],
                ]
            )
    return path
