"""Before a release: the instructor's own solution must get every automatic point.

Each instructor notebook is released into a scratch course directory, its answer cells
filled with the solutions (markers removed, as a student would write them), and graded
there by the same pipeline that grades students (:func:`autograder.batch.coordinator.grade`,
with real kernels). A test cell that does not give the solution its points is an authoring
mistake: the release is refused, naming the notebook, the cell and the check's message.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from . import notebooks
from .lint import Problem

STUDENT = "instructor-solution"


def solution_problems(
    course_dir: Path, assignments: list[str], *, jobs: int | None = None
) -> list[Problem]:
    """The test cells of `assignments` on which the instructor's solution loses points
    (or the reason the solution could not be graded at all)."""
    from .core.nbgrader_io import in_dir, nbgrader_api, require_success

    course_dir = Path(course_dir).resolve()
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="autograder-solutions-") as tmp:
        scratch = Path(tmp) / "course"
        scratch.mkdir()
        if (course_dir / "nbgrader_config.py").exists():
            shutil.copy2(course_dir / "nbgrader_config.py", scratch / "nbgrader_config.py")
        api = nbgrader_api(scratch)
        names: dict[str, list[str]] = {}
        for assignment in assignments:
            shutil.copytree(course_dir / "source" / assignment, scratch / "source" / assignment)
            with in_dir(scratch):
                require_success(
                    api.generate_assignment(assignment, force=True, create=True),
                    f"nbgrader generate_assignment {assignment}",
                )
            for released in sorted((scratch / "release" / assignment).glob("*.ipynb")):
                source = notebooks.read(scratch / "source" / assignment / released.name)
                solved = notebooks.fill(notebooks.read(released), notebooks.solutions(source))
                notebooks.write(
                    solved, scratch / "submitted" / STUDENT / assignment / released.name
                )
                names.setdefault(assignment, []).append(released.name)
        if not names:
            return problems
        from .batch import coordinator
        from .core.request import GradeRequest

        request = GradeRequest(
            course_dir=scratch, assignments=tuple(names), feedback=False, jobs=jobs, progress=False
        )
        outcomes = coordinator.grade(request)
        for o in outcomes:
            display = f"source/{o.assignment}/{names[o.assignment][0]}"
            if o.status != "graded":
                problems.append(
                    Problem(display, 0, None, f"the solution could not be graded: {o.reason}")
                )
                continue
            for path in (scratch / "autograded" / STUDENT / o.assignment).glob("*.ipynb"):
                nb = notebooks.read(path)
                messages = notebooks.cell_messages(nb)
                for index, cell in enumerate(nb.cells):
                    gid = notebooks.grade_id(cell)
                    score, max_score = o.cells.get(gid, (None, 0.0))
                    meta = cell.get("metadata", {}).get("nbgrader") or {}
                    if gid is None or meta.get("solution") or not meta.get("grade"):
                        continue
                    if score is None or score < max_score:
                        said = " ".join(messages.get(gid, "").split())[:300]
                        problems.append(
                            Problem(
                                f"source/{o.assignment}/{path.name}",
                                index,
                                gid,
                                f"the instructor's solution scores {score or 0:g} of "
                                f"{max_score:g} here" + (f": {said}" if said else ""),
                            )
                        )
    return problems
