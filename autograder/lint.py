"""Refuse authoring mistakes in instructor notebooks before nbgrader sees them.

Every problem names the notebook and the cell (index and grade id), so an instructor can
go straight to it. Checks:
- BEGIN/END SOLUTION and BEGIN/END HIDDEN TESTS markers balanced, not nested, and in the
  right kind of cell;
- grade ids unique;
- a solution code cell has a solution block (or the solution would be released);
- a test cell has a hidden test, points > 0, and does not end in a bare expression
  (nbgrader takes the value of the last expression as the score: `False` gives full
  points) unless it is a call into `autograder`, whose checks return nothing;
- a test cell has no code that writes to stderr (any stderr output scores the cell 0);
- the points the text states agree with the cells': a "Total: N points" line (and its
  "M checked automatically" / "all checked automatically"), and each heading that ends
  in "(N points)" with the graded cells under it (up to the next heading of its level).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
_MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)


@dataclass(frozen=True)
class Problem:
    notebook: str
    cell: int
    grade_id: str | None
    message: str

    def __str__(self) -> str:
        gid = f" ({self.grade_id})" if self.grade_id else ""
        return f"{self.notebook}, cell {self.cell}{gid}: {self.message}"


class AuthoringError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _marker_problems(lines: list[str], solution: bool, grade: bool) -> list[str]:
    out: list[str] = []
    open_block: str | None = None
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        marker = next((m for m in _MARKERS if line.startswith(m)), None)
        if marker is None:
            continue
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if open_block:
                out.append(f"line {n}: {marker} inside an open {open_block} block")
            open_block = marker
            if marker == BEGIN_SOLUTION and not solution:
                out.append(f"line {n}: {marker} in a cell that is not a solution cell")
            if marker == BEGIN_HIDDEN and not grade:
                out.append(f"line {n}: {marker} in a cell that is not a test (grade) cell")
        else:
            expected = BEGIN_SOLUTION if marker == END_SOLUTION else BEGIN_HIDDEN
            if open_block != expected:
                out.append(f"line {n}: {marker} without a matching {expected}")
            open_block = None
    if open_block:
        out.append(f"{open_block} is never closed")
    return out


def _autograder_names(nb) -> set[str]:
    """Names bound by `import autograder...` / `from autograder... import ...` anywhere."""
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "autograder":
                        names.add(a.asname or a.name.split(".")[0])
            elif (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] == "autograder"
            ):
                names.update(a.asname or a.name for a in node.names)
    return names


def _python_only(source: str) -> str:
    # IPython magics and shell escapes are not Python.
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


_STDERR = [
    (re.compile(r"\bsys\.stderr\b"), "writes to sys.stderr"),
    (re.compile(r"\bwarnings\.warn\b"), "emits a warning (shown on stderr)"),
    (re.compile(r"\blogging\.(warning|error|info|debug|critical|exception)\b"), "logs (to stderr)"),
    (re.compile(r"file\s*=\s*sys\.__stderr__"), "writes to stderr"),
]


def lint_notebook(path: Path, display: str | None = None) -> list[Problem]:
    display = display or str(path)
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # unreadable notebook: one problem, nothing else to check
        return [Problem(display, 0, None, f"cannot read notebook: {exc}")]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    ag_names = _autograder_names(nb)

    for i, cell in enumerate(nb.cells):
        meta = _meta(cell)
        gid = meta.get("grade_id")
        solution, grade = bool(meta.get("solution")), bool(meta.get("grade"))

        def add(msg: str, i=i, gid=gid) -> None:
            problems.append(Problem(display, i, gid, msg))

        if meta and not gid and (solution or grade or meta.get("locked")):
            add("nbgrader cell without a grade_id")
        if gid:
            if gid in seen:
                add(f"duplicate grade_id {gid!r} (also cell {seen[gid]})")
            else:
                seen[gid] = i
        lines = cell.source.splitlines()
        for msg in _marker_problems(lines, solution, grade):
            add(msg)
        if cell.cell_type != "code":
            continue
        if solution and not grade and not any(BEGIN_SOLUTION in line for line in lines):
            add("solution cell with no ### BEGIN SOLUTION block: the solution would be released")
        if not grade or solution:
            continue
        # A test cell.
        if not meta.get("points") or float(meta.get("points", 0)) <= 0:
            add("test cell with no points")
        if not any(line.strip().startswith(BEGIN_HIDDEN) for line in lines):
            add(
                "graded test cell with no ### BEGIN HIDDEN TESTS block: nothing checks the "
                "answer on fresh inputs"
            )
        code = _python_only(cell.source)
        for pattern, what in _STDERR:
            if pattern.search(code):
                add(f"test cell {what}: any stderr output scores the cell 0")
        try:
            body = ast.parse(code).body
        except SyntaxError as exc:
            add(f"syntax error on line {exc.lineno}: {exc.msg}")
            continue
        last = body[-1] if body else None
        if isinstance(last, ast.Expr):
            call_into_autograder = (
                isinstance(last.value, ast.Call) and _root_name(last.value.func) in ag_names
            )
            if not call_into_autograder:
                text = ast.get_source_segment(code, last) or ast.dump(last)
                add(
                    f"test cell ends in the bare expression `{text.strip()[:60]}`: nbgrader "
                    "takes its value as the score (False gives full points). End with a "
                    "statement (assert ...) or a call into autograder."
                )
    return problems + stated_points(nb, display)


_TOTAL = re.compile(r"Total:?\s*\**\s*(\d+(?:\.\d+)?)\s*points?", re.I)
_AUTO = re.compile(r"(\d+(?:\.\d+)?)\s+checked automatically", re.I)
_ALL_AUTO = re.compile(r"all\s+checked automatically", re.I)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\((\d+(?:\.\d+)?)\s*points?\)\s*$", re.I)


def _points(cell) -> tuple[float, float]:
    """(automatic, by hand) points of a cell."""
    meta = _meta(cell)
    if not meta.get("grade") and not meta.get("task"):
        return 0.0, 0.0
    pts = float(meta.get("points") or 0)
    by_hand = meta.get("task") or meta.get("solution")
    return (0.0, pts) if by_hand else (pts, 0.0)


def _g(x: float) -> str:
    return f"{x:g}"


def stated_points(nb, display: str) -> list[Problem]:
    """Where the notebook's text states points that its cells do not add up to."""
    problems: list[Problem] = []
    auto = sum(_points(c)[0] for c in nb.cells)
    hand = sum(_points(c)[1] for c in nb.cells)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        gid = _meta(cell).get("grade_id")
        for line in cell.source.splitlines():
            total = _TOTAL.search(line)
            if total and float(total.group(1)) != auto + hand:
                problems.append(
                    Problem(
                        display,
                        i,
                        gid,
                        f"the text says {total.group(0).strip('* ')!r} "
                        f"but the cells give {_g(auto + hand)} ({_g(auto)} automatic, "
                        f"{_g(hand)} by hand)",
                    )
                )
            stated_auto = _AUTO.search(line)
            if total and stated_auto and float(stated_auto.group(1)) != auto:
                problems.append(
                    Problem(
                        display,
                        i,
                        gid,
                        f"the text says {stated_auto.group(0)!r} but the "
                        f"test cells give {_g(auto)} points",
                    )
                )
            if total and _ALL_AUTO.search(line) and hand:
                problems.append(
                    Problem(
                        display,
                        i,
                        gid,
                        f"the text says all points are checked "
                        f"automatically but {_g(hand)} are graded by hand",
                    )
                )
            heading = _HEADING.match(line.strip())
            if heading:
                level = len(heading.group(1))
                under = 0.0
                for later in nb.cells[i + 1 :]:
                    if later.cell_type == "markdown" and any(
                        m and len(m.group(1)) <= level
                        for m in (re.match(r"^(#{1,6})\s", x) for x in later.source.splitlines())
                    ):
                        break
                    under += sum(_points(later))
                if float(heading.group(3)) != under:
                    problems.append(
                        Problem(
                            display,
                            i,
                            gid,
                            f"the heading {heading.group(0).strip()!r} "
                            f"states {heading.group(3)} points but its cells give {_g(under)}",
                        )
                    )
    return problems


def lint_source(course_dir: Path, assignments: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    for assignment in assignments:
        folder = course_dir / "source" / assignment
        notebooks = sorted(folder.glob("*.ipynb"))
        if not notebooks:
            problems.append(Problem(f"source/{assignment}", 0, None, "no notebook found"))
        for nb_path in notebooks:
            problems += lint_notebook(nb_path, str(nb_path.relative_to(course_dir)))
    return problems
