"""The main job, end to end: release the course, grade the bundled sample class."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from . import course
from .report import exit_status, print_summary


def run_demo(*, course_dir: Path = Path("."), work_dir: Path = Path("build/demo")) -> int:
    """Release every assignment of `course_dir`, then grade `examples/sample_class` in a
    fresh scratch course at `work_dir` (its own SQLite gradebook). Returns an exit code:
    0 when every sample submission was graded."""
    console = Console()
    course_dir = Path(course_dir).resolve()
    work_dir = (course_dir / work_dir).resolve() if not Path(work_dir).is_absolute() else work_dir
    sample = course_dir / "examples" / "sample_class"

    console.rule("Release")
    for path in course.release(course_dir=course_dir):
        console.print(f"released {path.relative_to(course_dir)}")

    console.rule("Grade the sample class")
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    shutil.copy2(course_dir / "nbgrader_config.py", work_dir / "nbgrader_config.py")
    shutil.copytree(course_dir / "source", work_dir / "source")
    assignments = [a for a in course.source_assignments(course_dir) if any(sample.glob(f"*/{a}"))]
    console.print(f"grading {', '.join(assignments)} in one run …")
    outcomes = course.grade(course_dir=work_dir, assignment=assignments, submissions=sample)
    csv_path = work_dir / "grades.csv"
    print_summary(outcomes, console, title="Sample class")
    console.print(f"gradebook: {work_dir / 'gradebook.db'}")
    console.print(f"grades CSV: {csv_path}")
    console.print(f"feedback HTML: {work_dir / 'feedback'}/<student>/<assignment>/")
    return exit_status(outcomes)
