"""01_derivatives end to end: release, simulated students through real nbgrader, feedback."""

from __future__ import annotations

import pytest

from autograder import notebooks
from tests.corpus import auto_cells, grade_corpus
from tests.students import a01_derivatives as corpus

A = corpus.ASSIGNMENT
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return grade_corpus(tmp_path_factory.mktemp("a01"), A, corpus.STUDENTS)


def test_every_submission_is_graded(graded):
    """Does every simulated student get a recorded, graded outcome?"""
    _, outcomes = graded
    assert set(outcomes) == set(corpus.STUDENTS)
    assert {o.status for o in outcomes.values()} == {"graded"}, {
        s: o.reason for s, o in outcomes.items() if o.status != "graded"
    }


def test_solved_notebook_scores_full_marks(graded):
    """Does the instructor's solution score every automatic point?"""
    course, outcomes = graded
    cells = auto_cells(course, A)
    perfect = outcomes["perfect"]
    assert perfect.score == sum(cells.values()) == 13
    assert perfect.max_score == 14 and perfect.needs_manual == 1


def test_blank_release_scores_zero(graded):
    """Does the unmodified release notebook score zero, saying 'not answered yet'?"""
    course, outcomes = graded
    assert outcomes["blank"].score == 0
    messages = course.messages("blank", A)
    for gid in auto_cells(course, A):
        assert "not answered yet" in messages[gid], gid
        assert "Traceback" not in messages[gid]


@pytest.mark.parametrize("name", sorted(corpus.STUDENTS))
def test_simulated_student(graded, name):
    """Does each simulated student lose exactly the points of the questions it gets wrong,
    with a message naming the question and the likely cause?"""
    course, outcomes = graded
    student = corpus.STUDENTS[name]
    if student.blank:
        return
    cells = auto_cells(course, A)
    got = {gid: outcomes[name].cells[gid][0] for gid in cells}
    expected = {gid: 0.0 if gid in student.lost else pts for gid, pts in cells.items()}
    assert got == expected, student.about
    messages = course.messages(name, A)
    for gid in student.lost:
        assert "✗" in messages[gid], (gid, messages[gid])
    for gid, code in student.diagnoses.items():
        assert f"[{code}]" in messages[gid], (gid, messages[gid])


def test_feedback_names_question_and_difference(graded):
    """Does the feedback HTML say which question failed, why, and what differed?"""
    course, _ = graded
    html = notebooks.plain(course.feedback_html("double_backward", A))
    assert "Q2 gradient" in html
    assert "accumulated" in html
    assert "Greatest absolute difference" in html
    assert "2× the reference" in html or "2&#215; the reference" in html or "2× the" in html


def test_test_cells_never_write_to_stderr(graded):
    """Do test cells keep stderr clean, pass or fail (stderr would zero a cell)?"""
    course, _ = graded
    for name in corpus.STUDENTS:
        nb = course.autograded_nb(name, A)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and cell.cell_type == "code":
                assert not [
                    o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"
                ], (name, meta)
