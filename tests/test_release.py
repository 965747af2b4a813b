"""The committed student notebooks: generated from source/, with nothing to hide left in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autograder import course, notebooks

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = course.source_assignments(ROOT)


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


@pytest.mark.slow
def test_regenerating_release_gives_no_diff(tmp_path):
    """Does releasing source/ again reproduce the committed release/ byte for byte?"""
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copytree(ROOT / "source", tmp_path / "source")
    written = course.release(course_dir=tmp_path)
    assert {p.relative_to(tmp_path / "release").as_posix() for p in written} == {
        p.relative_to(ROOT / "release").as_posix() for p in (ROOT / "release").glob("*/*.ipynb")
    }
    for path in written:
        committed = ROOT / "release" / path.relative_to(tmp_path / "release")
        assert path.read_bytes() == committed.read_bytes(), f"{committed} is stale: make release"
