"""The simulated-student corpora of 02, 03 and 04, graded by the real nbgrader pipeline.

Each corpus (tests/students/) is submitted as one class and graded once per assignment.
Every student must score exactly its expected cells (lost cells 0, every other automatic
cell full marks), and each lost cell's message must name the expected diagnosis before
any expected-vs-got line. A fast test checks that the corpora, together with 01's, assert
every mistake the diagnosis layer is meant to name.
"""

from __future__ import annotations

import re

import pytest

from autograder import notebooks
from tests.corpus import auto_cells, grade_corpus
from tests.students import (
    a01_derivatives,
    a02_chain_rule,
    a03_vector_jacobian,
    a04_parametrized,
)

CORPORA = {c.ASSIGNMENT: c for c in (a02_chain_rule, a03_vector_jacobian, a04_parametrized)}
ALL_CORPORA = [a01_derivatives, *CORPORA.values()]

# Mistakes each named by its own diagnosis code, asserted somewhere in the corpora.
REQUIRED = {
    "accumulated",  # .grad summed over k backward calls
    "accumulated_rows",  # Jacobian rows are running sums (.grad not cleared between rows)
    "sign_flipped",
    "missing_chain_factor",  # off by a known inner derivative
    "v_applied_twice",  # off by exactly the gradient vector passed
    "gradient_is_y",  # backward(gradient=y)
    "transposed",
    "block_diagonal",  # wrong batch layout: the full (N, m, N, n) Jacobian
    "batch_axis",  # wrong batch layout: the batch axis not first
    "summed_over_batch",
    "per_sample_not_summed",
    "no_backward",  # None gradient, by cause
    "nonleaf_grad",
    "detached",
    "requires_grad_after_copy",
    "nonfinite",  # NaN/inf outside the function's domain
    "nonscalar_backward",  # torch errors in plain words
    "graph_freed",
    "numpy_requires_grad",
    "inplace_modified",
    "no_grad_fn",
    "integer_requires_grad",
}

# One student per assignment whose feedback HTML must show the diagnosis:
# (student, cell, code, what follows the diagnosis in that failure).
FEEDBACK = {
    "02_chain_rule": (
        "adjoint_missing_factor",
        "q3-2-adjoints",
        "missing_chain_factor",
        "Mismatched elements",
    ),
    "03_vector_jacobian": (
        "accumulated_rows",
        "q6-2-rows",
        "accumulated_rows",
        "Mismatched elements",
    ),
    "04_parametrized": ("no_create_graph", "q4-2-second", "no_grad_fn", "RuntimeError: element 0"),
}

# Lines of a failure that must come after its diagnosis: the numbers, and any traceback.
AFTER_DIAGNOSIS = re.compile(r"Mismatched elements|^\s*expected |Traceback", re.MULTILINE)


def _graded(tmp_path_factory, assignment: str):
    return grade_corpus(
        tmp_path_factory.mktemp(assignment[:3]), assignment, CORPORA[assignment].STUDENTS
    )


@pytest.fixture(scope="module")
def graded_02(tmp_path_factory):
    return _graded(tmp_path_factory, "02_chain_rule")


@pytest.fixture(scope="module")
def graded_03(tmp_path_factory):
    return _graded(tmp_path_factory, "03_vector_jacobian")


@pytest.fixture(scope="module")
def graded_04(tmp_path_factory):
    return _graded(tmp_path_factory, "04_parametrized")


def _course(request, assignment: str):
    return request.getfixturevalue(f"graded_{assignment[:2]}")


def _diagnosis_comes_first(text: str, code: str) -> bool:
    """In the failure naming `code`, the diagnosis precedes every expected-vs-got line."""
    tag = f"[{code}]"
    start = text.rfind("✗", 0, text.index(tag))
    failure = text[start:]
    after = AFTER_DIAGNOSIS.search(failure)
    return after is None or failure.index(tag) < after.start()


# --- the corpora themselves (fast) ---------------------------------------------------------


def test_corpora_assert_every_mistake_by_its_own_code():
    """Is each mistake of the list asserted, by its own code, by at least one simulated
    student of the four corpora?"""
    asserted = {
        code for c in ALL_CORPORA for s in c.STUDENTS.values() for code in s.diagnoses.values()
    }
    assert REQUIRED - asserted == set()


@pytest.mark.parametrize("corpus", list(CORPORA.values()), ids=lambda c: c.ASSIGNMENT)
def test_each_corpus_has_mistakes_and_correct_alternatives(corpus):
    """Does each corpus hold at least six wrong submissions, each naming a diagnosis, and at
    least three correct alternatives, one of them in float32?"""
    students = corpus.STUDENTS
    wrong = [n for n, s in students.items() if s.lost and not s.blank]
    right = [n for n, s in students.items() if not s.lost and not s.blank and n != "perfect"]
    assert len(wrong) >= 6 and len(right) >= 3, (wrong, right)
    assert "alt_float32" in right
    assert students["blank"].blank and not students["perfect"].answers
    for name, s in students.items():
        assert set(s.diagnoses) <= s.lost, name
        if name in wrong:
            assert s.diagnoses, f"{name} names no diagnosis"


# --- through nbgrader ----------------------------------------------------------------------

CASES = [(a, name) for a, c in CORPORA.items() for name in c.STUDENTS]


@pytest.mark.slow
@pytest.mark.parametrize(("assignment", "name"), CASES, ids=[f"{a[:2]}-{n}" for a, n in CASES])
def test_simulated_student(request, assignment, name):
    """Does each simulated student score exactly its expected cells (the wrong ones 0, every
    other one full marks), with the likely cause named first in each lost cell?"""
    course, outcomes = _course(request, assignment)
    student = CORPORA[assignment].STUDENTS[name]
    outcome = outcomes[name]
    assert outcome.status == "graded", outcome.reason
    assert "tampered" not in outcome.reason, outcome.reason  # honest, right or wrong
    cells = auto_cells(course, assignment)
    got = {gid: outcome.cells[gid][0] for gid in cells}
    if student.blank:
        assert got == dict.fromkeys(cells, 0.0)
        messages = course.messages(name, assignment)
        assert all("not answered yet" in messages[gid] for gid in cells), messages
        return
    expected = {gid: 0.0 if gid in student.lost else pts for gid, pts in cells.items()}
    assert got == expected, student.about
    messages = course.messages(name, assignment)
    for gid in student.lost:
        assert "✗" in messages[gid], (gid, messages[gid])
    for gid, code in student.diagnoses.items():
        text = messages[gid]
        assert f"Likely cause [{code}]" in text, (gid, text)
        assert _diagnosis_comes_first(text, code), (gid, text)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(FEEDBACK))
def test_feedback_html_names_the_diagnosis_first(request, assignment):
    """Does the student's feedback HTML show the diagnosis, before the numbers?"""
    course, _ = _course(request, assignment)
    name, gid, code, then = FEEDBACK[assignment]
    assert CORPORA[assignment].STUDENTS[name].diagnoses[gid] == code
    html = notebooks.plain(course.feedback_html(name, assignment))
    tag = html.index(f"Likely cause [{code}]")
    header = html.rfind("✗", 0, tag)
    assert header >= 0
    before = html[header:tag]
    for marker in ("Mismatched elements", "expected", "Traceback", "Error:"):
        assert marker not in before, (marker, before)
    assert then in html[tag:]
