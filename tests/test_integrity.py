"""Can a hostile submission raise its score by tampering with the checks in its kernel?

Each hostile submission answers every question wrongly and tampers in one way with what
the in-kernel checks rely on (torch, numpy, this package, builtins, IPython's hooks,
sys.modules, stdout/stderr, the grader's wire protocol) or with the notebook's test cells.
Scores are decided in the grading process (autograder/judge/), so each must score no
more than the blank notebook, the correct student beside them keeps full marks, and the
course's files are unchanged. (Techniques that reach for files, processes or memory are
the sandbox's: tests/test_sandbox.py.)
"""

from __future__ import annotations

import hashlib

import pytest

from autograder import notebooks
from autograder.judge.verdict import TAMPER_MIME
from tests.conftest import Course
from tests.hostile import ASSIGNMENT, HOSTILE, notebook

pytestmark = pytest.mark.slow

IN_KERNEL = [
    "patch_torch_compare",
    "patch_numpy_compare",
    "patch_autograder_compare",
    "patch_check_functions",
    "swap_sys_modules",
    "ipython_hide_errors",
    "ipython_no_traceback",
    "patch_builtins",
    "stdout_stderr",
    "forge_wire_reply",
    "forge_batch_reply",
    "edit_test_cells",
    "delete_test_cells",
    "tamper_test_metadata",
]
# Techniques that make the checks inside the kernel pass: the grader's re-check fails, and
# the submission is marked. (The others already fail inside the kernel: the checks there
# compare with plain arithmetic, not torch/numpy's allclose, and nbgrader records the
# kernel's error reply even when IPython's display of it is silenced.)
FLAGGED = {"patch_autograder_compare", "patch_check_functions", "swap_sys_modules"}
# Techniques that edit the notebook's locked or test cells: nbgrader restores edited or
# deleted cells (the outcome names them), and refuses a notebook whose test cells were
# re-tagged (ungradable, scored as nothing).
EDITED = {
    "edit_test_cells": ("tampered", "edited"),
    "delete_test_cells": ("tampered", "deleted"),
    "tamper_test_metadata": ("changed_cells", "locked or test cells changed"),
}


def _hashes(root):
    """The instructor's files (release/ among them: grading never writes it) and the
    correct student's submission."""
    files = [
        *sorted((root / "source").rglob("*")),
        *sorted((root / "release").rglob("*")),
        *sorted((root / "submitted" / "victim").rglob("*")),
        root / "nbgrader_config.py",
    ]
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = Course.create(tmp_path_factory.mktemp("integrity"), [ASSIGNMENT])
    course.submit("victim", ASSIGNMENT, course.solved(ASSIGNMENT))
    course.submit("blank", ASSIGNMENT, course.release_nb(ASSIGNMENT))
    for name in IN_KERNEL:
        course.submit(name, ASSIGNMENT, notebook(course, name))
    before = _hashes(course.root)
    outcomes = course.grade(ASSIGNMENT, progress=False)
    return course, outcomes, before


def test_the_batch_completes_and_the_victim_keeps_full_marks(graded):
    """Does every submission get an outcome, and the correct one its 13 points?"""
    _, outcomes, _ = graded
    assert set(outcomes) == {"victim", "blank", *IN_KERNEL}
    assert outcomes["victim"].status == "graded" and outcomes["victim"].score == 13


@pytest.mark.parametrize("name", IN_KERNEL)
def test_tampering_scores_no_more_than_blank(graded, name):
    """Does tampering inside the kernel (or with the test cells) gain nothing?"""
    _, outcomes, _ = graded
    assert outcomes["blank"].score == 0
    assert outcomes[name].score <= outcomes["blank"].score, (HOSTILE[name].about, outcomes[name])


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_tampering_with_the_checks_is_flagged(graded, name):
    """Is a submission whose in-kernel checks passed, but the grader's did not, marked?"""
    course, outcomes, _ = graded
    if outcomes[name].status != "graded":
        pytest.fail(f"{name} was not graded: {outcomes[name].reason}")
    nb = course.autograded_nb(name, ASSIGNMENT)
    marks = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "display_data" and TAMPER_MIME in o.get("data", {})
    ]
    assert marks, HOSTILE[name].about
    assert "[tampered]" in notebooks.plain(course.feedback_html(name, ASSIGNMENT))
    assert outcomes[name].code == "tampered"
    assert "checks changed at run time" in outcomes[name].reason


@pytest.mark.parametrize("name", sorted(EDITED))
def test_edited_test_cells_are_named_in_the_outcome(graded, name):
    """Does the summary say which locked or test cells a submission changed?"""
    _, outcomes, _ = graded
    code, words = EDITED[name]
    assert outcomes[name].code == code, outcomes[name]
    assert words in outcomes[name].reason, outcomes[name].reason


def test_honest_submissions_are_not_flagged(graded):
    _, outcomes, _ = graded
    for name in ("victim", "blank"):
        assert outcomes[name].code == "" and "tamper" not in outcomes[name].reason


def test_course_files_are_unchanged(graded):
    """Are the instructor's notebooks, the config and the other student's work untouched?"""
    course, _, before = graded
    assert _hashes(course.root) == before
