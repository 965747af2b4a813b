"""Does release refuse authoring mistakes, naming the notebook and the cell?"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import notebooks
from autograder.lint import lint_notebook

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "01_derivatives" / "01_derivatives.ipynb"


def _mutate(tmp_path: Path, change) -> Path:
    nb = notebooks.read(SOURCE)
    change(nb)
    return notebooks.write(nb, tmp_path / "source" / "01_derivatives" / "01_derivatives.ipynb")


def _cell(nb, gid):
    for i, c in enumerate(nb.cells):
        if notebooks.grade_id(c) == gid:
            return i, c
    raise KeyError(gid)


def test_the_course_source_notebooks_are_clean():
    """Do the committed instructor notebooks pass the lint?"""
    for path in sorted((ROOT / "source").glob("*/*.ipynb")):
        assert lint_notebook(path) == [], path


CASES = {
    "unbalanced solution marker": (
        lambda nb: setattr(
            _cell(nb, "q2-answer")[1],
            "source",
            _cell(nb, "q2-answer")[1].source.replace("### END SOLUTION", ""),
        ),
        "q2-answer",
        "never closed",
    ),
    "end marker without begin": (
        lambda nb: setattr(
            _cell(nb, "q2-answer")[1],
            "source",
            _cell(nb, "q2-answer")[1].source.replace("### BEGIN SOLUTION", ""),
        ),
        "q2-answer",
        "without a matching ### BEGIN SOLUTION",
    ),
    "hidden tests in an answer cell": (
        lambda nb: setattr(
            _cell(nb, "q2-answer")[1],
            "source",
            _cell(nb, "q2-answer")[1].source
            + "\n### BEGIN HIDDEN TESTS\npass\n### END HIDDEN TESTS",
        ),
        "q2-answer",
        "not a test (grade) cell",
    ),
    "duplicate grade id": (
        lambda nb: (
            _cell(nb, "q1-2-central")[1].metadata["nbgrader"].update(grade_id="q1-1-forward")
        ),
        "q1-1-forward",
        "duplicate grade_id",
    ),
    "bare expression at the end of a test": (
        lambda nb: setattr(
            _cell(nb, "q2-gradient")[1],
            "source",
            _cell(nb, "q2-gradient")[1].source
            + "\ntorch.allclose(gradient(torch.sum, torch.ones(2)), torch.ones(2))",
        ),
        "q2-gradient",
        "bare expression",
    ),
    "test that writes to stderr": (
        lambda nb: setattr(
            _cell(nb, "q2-gradient")[1],
            "source",
            "import sys\nprint('checking', file=sys.stderr)\n" + _cell(nb, "q2-gradient")[1].source,
        ),
        "q2-gradient",
        "stderr",
    ),
    "graded question with no hidden test": (
        lambda nb: setattr(_cell(nb, "q2-gradient")[1], "source", "a01.check_gradient(gradient)"),
        "q2-gradient",
        "no ### BEGIN HIDDEN TESTS",
    ),
    "solution cell without a solution block": (
        lambda nb: setattr(
            _cell(nb, "q2-answer")[1],
            "source",
            notebooks.strip_markers(_cell(nb, "q2-answer")[1].source),
        ),
        "q2-answer",
        "solution would be released",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_authoring_mistake_is_refused(tmp_path, case):
    """Is each authoring mistake reported with the notebook, cell index and grade id?"""
    change, gid, words = CASES[case]
    path = _mutate(tmp_path, change)
    problems = lint_notebook(path, "source/01_derivatives/01_derivatives.ipynb")
    matching = [p for p in problems if p.grade_id == gid and words in p.message]
    assert matching, problems
    text = str(matching[0])
    assert text.startswith("source/01_derivatives/01_derivatives.ipynb, cell ")
    assert f"({gid})" in text


def test_release_command_refuses_and_leaves_release_untouched(tmp_path):
    """Does `autograder release` exit non-zero, name the cell, and write nothing?"""

    def change(nb):
        cell = _cell(nb, "q2-gradient")[1]
        cell.source = cell.source + "\nFalse"

    _mutate(tmp_path, change)
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.cli", "--course-dir", str(tmp_path), "release"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "01_derivatives.ipynb, cell" in proc.stderr and "(q2-gradient)" in proc.stderr
    assert "bare expression `False`" in proc.stderr
    assert not (tmp_path / "release").exists()
