"""Can a hostile submission raise its score by tampering with the checks in its kernel?

Each hostile submission answers every question wrongly and tampers in one way with what
the in-kernel checks rely on (torch, numpy, this package, builtins, IPython's hooks,
sys.modules, stdout/stderr, the grader's wire protocol) or with the notebook's test cells.
Scores are decided in the grading process (autograder/trusted.py), so each must score no
more than the blank notebook, the correct student beside them keeps full marks, and the
course's files are unchanged. (Techniques that reach for files, processes or memory are
the sandbox's: tests/test_sandbox.py.)
"""

from __future__ import annotations

import hashlib

import pytest

from autograder import notebooks
from autograder.trusted import TAMPER_MIME
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
    "edit_test_cells",
    "delete_test_cells",
    "tamper_test_metadata",
]
# Patching the checks inside the kernel makes the in-notebook run pass: the mark says so.
FLAGGED = {
    "patch_torch_compare",
    "patch_numpy_compare",
    "patch_autograder_compare",
    "patch_check_functions",
    "swap_sys_modules",
    "ipython_hide_errors",
    "ipython_no_traceback",
    "patch_builtins",
}


def _hashes(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("source", "release")
        for p in sorted((root / sub).rglob("*"))
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


def test_course_files_are_unchanged(graded):
    """Are the instructor's source and release notebooks untouched?"""
    course, _, before = graded
    assert _hashes(course.root) == before
