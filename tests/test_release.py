"""The committed student notebooks: generated from source/, with nothing to hide left in."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from autograder import course, notebooks

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = course.source_assignments(ROOT)
# Text that must not reach a student: block markers, and the hidden calls of the checks.
MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "BEGIN MARK SCHEME",
    "hidden=True",
)


def _blocks(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip().startswith(begin):
            inside = True
        elif line.strip().startswith(end):
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_holds_no_solution_or_hidden_test_code(assignment):
    """Is every line inside a solution or hidden-test block absent from the release?"""
    source = notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")
    release_path = ROOT / "release" / assignment / f"{assignment}.ipynb"
    assert release_path.exists(), "release/ is out of date: run `make release`"
    released_lines = {
        line.strip()
        for cell in notebooks.read(release_path).cells
        for line in cell.source.splitlines()
    }
    hidden = []
    for cell in source.cells:
        hidden += _blocks(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
        hidden += _blocks(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
        hidden += _blocks(cell.source, "=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ===")
    # Lines that also appear outside the blocks (e.g. a visible test repeated) are fine.
    visible = set()
    for cell in source.cells:
        text = cell.source
        for begin, end in (
            ("### BEGIN SOLUTION", "### END SOLUTION"),
            ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
        ):
            kept, inside = [], False
            for line in text.splitlines():
                if line.strip().startswith(begin):
                    inside = True
                elif line.strip().startswith(end):
                    inside = False
                elif not inside:
                    kept.append(line)
            text = "\n".join(kept)
        visible |= {line.strip() for line in text.splitlines()}
    leaked = [line for line in hidden if line in released_lines and line not in visible]
    assert hidden and not leaked
    assert "YOUR CODE HERE" in release_path.read_text()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_holds_no_marker(assignment):
    """Are the solution, hidden-test and mark-scheme markers, and every hidden call, gone
    from the student's notebook (code and markdown alike)?"""
    text = (ROOT / "release" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text, marker


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_keeps_every_signature_and_docstring(assignment):
    """Does each answer cell of the release keep, in the source's order, every function's
    signature and docstring, with nbgrader's stub in place of the body and nothing else?"""
    source = notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")
    release = notebooks.read(ROOT / "release" / assignment / f"{assignment}.ipynb")
    solutions = notebooks.solutions(source)
    stubs = {
        notebooks.grade_id(c): c
        for c in release.cells
        if (c.metadata.get("nbgrader") or {}).get("solution")
    }
    assert list(stubs) == list(solutions)
    for gid, cell in stubs.items():
        if cell.cell_type != "code":
            continue
        tree = ast.parse(solutions[gid]).body
        functions = [node for node in tree if isinstance(node, ast.FunctionDef)] + [
            method  # the methods of a class the answer defines (a torch.autograd.Function)
            for node in tree
            if isinstance(node, ast.ClassDef)
            for method in node.body
            if isinstance(method, ast.FunctionDef)
        ]
        assert functions, gid
        for fn in functions:
            signature = solutions[gid].splitlines()[fn.lineno - 1]
            doc = (ast.get_docstring(fn) or "").splitlines()
            assert signature in cell.source.splitlines(), (gid, signature)
            assert doc and doc[0] in cell.source, (gid, fn.name)
        body = {
            line.strip()
            for line in cell.source.splitlines()
            if line.strip()
            and not line.strip().startswith(("def ", "class ", "@staticmethod"))
            and not line.strip().startswith('"""')
        }
        assert body == {"# YOUR CODE HERE", "raise NotImplementedError()"}, (gid, body)


@pytest.mark.slow
def test_regenerating_release_gives_no_diff(tmp_path):
    """Does releasing source/ again reproduce the committed release/ byte for byte?"""
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copytree(ROOT / "source", tmp_path / "source")
    written = course.release(course_dir=tmp_path, check_solutions=False)
    assert {p.relative_to(tmp_path / "release").as_posix() for p in written} == {
        p.relative_to(ROOT / "release").as_posix() for p in (ROOT / "release").glob("*/*.ipynb")
    }
    for path in written:
        committed = ROOT / "release" / path.relative_to(tmp_path / "release")
        assert path.read_bytes() == committed.read_bytes(), f"{committed} is stale: make release"
