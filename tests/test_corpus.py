"""The simulated students of tests/students/, graded by the real nbgrader pipeline.

The corpora are submitted as one class and graded once, in one run. Every student must
score exactly its expected points per test cell (the cells it loses 0, every other one
full points), each lost cell's message must name the expected cause before any
expected-vs-got line (or name none, where none may be guessed), in the notebook and in
the feedback HTML. Fast tests check that the corpora fit their notebooks and, together,
assert every mistake the diagnosis layer is meant to name.
"""

from __future__ import annotations

import html
import re

import pytest

from autograder import notebooks
from tests.conftest import Course
from tests.students import Student, corpora

CORPORA = corpora()

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

# Lines of a failure that must come after its diagnosis: the numbers, and any traceback.
AFTER_DIAGNOSIS = re.compile(r"Mismatched elements|^\s*expected |Traceback", re.MULTILINE)
CAUSE = "Likely cause ["


def _cause_first(text: str, code: str) -> bool:
    """In the failure naming `code`, the diagnosis precedes every expected-vs-got line."""
    tag = f"{CAUSE}{code}]"
    start = text.rfind("✗", 0, text.index(tag))
    if start < 0:
        return False
    failure = text[start:]
    after = AFTER_DIAGNOSIS.search(failure)
    return after is None or failure.index(tag) < after.start()


def _html_text(page: str) -> str:
    """The feedback page as plain text: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", notebooks.plain(page)))


def _printed(nb) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )


# --- the corpora themselves (fast) ---------------------------------------------------------


def test_corpora_assert_every_mistake_by_its_own_code():
    """Is each mistake of the list asserted, by its own code, by at least one simulated
    student of the corpora?"""
    asserted = {
        code for c in CORPORA.values() for s in c.STUDENTS.values() for code in s.causes.values()
    }
    assert REQUIRED - asserted == set()


@pytest.mark.parametrize("corpus", list(CORPORA.values()), ids=list(CORPORA))
def test_each_corpus_has_mistakes_and_correct_alternatives(corpus):
    """Does each corpus hold the perfect and blank submissions, at least six wrong ones
    naming a cause, and at least three correct alternatives, one of them in float32?"""
    students = corpus.STUDENTS
    named = [n for n, s in students.items() if s.causes and not s.blank]
    right = [n for n, s in students.items() if not s.lost and not s.blank and n != "perfect"]
    assert len(named) >= 6 and len(right) >= 3, (named, right)
    assert "alt_float32" in right
    assert students["blank"].blank and not students["perfect"].answers


@pytest.mark.parametrize("corpus", list(CORPORA.values()), ids=list(CORPORA))
def test_each_student_names_cells_of_its_notebook(tmp_path, corpus):
    """Do the students replace answer cells and expect results of test cells that the
    notebook has, and do its automatic points add up to the corpus's POINTS?"""
    a = corpus.ASSIGNMENT
    course = Course.create(tmp_path, [a])
    answers = set(notebooks.solutions(course.source_nb(a)))
    cells = course.auto_cells(a)
    assert sum(cells.values()) == corpus.POINTS
    for name, s in corpus.STUDENTS.items():
        assert set(s.answers) <= answers, (name, set(s.answers) - answers)
        assert set(s.lost) | set(s.says) <= set(cells), (name, set(s.lost) | set(s.says))


# --- through nbgrader ----------------------------------------------------------------------


def _problems(course: Course, assignment: str, name: str, s: Student, outcome) -> list[str]:
    """What differs from what `s` expects, in words (nothing when all is as expected)."""
    if outcome is None:
        return ["no outcome"]
    if outcome.status != "graded" or "tampered" in outcome.reason:
        return [f"{outcome.status}: {outcome.reason}"]  # honest, right or wrong
    cells = course.auto_cells(assignment)
    manual = course.manual_points(assignment)
    messages = course.messages(name, assignment)
    problems = []
    for gid, points in cells.items():
        expected = 0.0 if s.blank or gid in s.lost else points
        if outcome.cells[gid][0] != expected:
            problems.append(
                f"{gid}: {outcome.cells[gid][0]} points, not {expected}\n{messages[gid]}"
            )
    if outcome.max_score != sum(cells.values()) + manual:
        problems.append(f"max score {outcome.max_score}")
    if name == "perfect" and (outcome.score, outcome.needs_manual) != (sum(cells.values()), manual):
        problems.append(f"score {outcome.score}, to grade by hand {outcome.needs_manual}")

    # Cell -> the cause its message must name (None: none), and the texts it must show.
    causes = dict.fromkeys(cells) if s.blank else dict(s.lost)
    texts = {gid: ["not answered yet"] for gid in cells} if s.blank else {g: ["✗"] for g in s.lost}
    for gid, more in s.says.items():
        texts.setdefault(gid, []).extend(more)
    page = _html_text(course.feedback_html(name, assignment))
    for gid, wanted in texts.items():
        for want in wanted:
            if want not in messages[gid]:
                problems.append(f"{gid}: says no {want!r}\n{messages[gid]}")
            if want not in page:
                problems.append(f"{gid}: the feedback shows no {want!r}")
    for gid, code in causes.items():
        text = messages[gid]
        if code is None and CAUSE in text:
            problems.append(f"{gid}: names a cause, none may be guessed\n{text}")
        if code is not None and not (f"{CAUSE}{code}]" in text and _cause_first(text, code)):
            problems.append(f"{gid}: does not name [{code}] first\n{text}")
        if code is not None and not (f"{CAUSE}{code}]" in page and _cause_first(page, code)):
            problems.append(f"{gid}: the feedback does not name [{code}] first")
        if s.blank and "Traceback" in text:
            problems.append(f"{gid}: a traceback for a blank answer\n{text}")

    nb = course.autograded_nb(name, assignment)
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):  # stderr would zero the cell
            for o in cell.outputs:
                if o.output_type == "stream" and o.name == "stderr":
                    problems.append(f"{meta['grade_id']}: writes to stderr: {o.text!r}")
    printed = _printed(nb)
    for want in s.prints:
        if not (want.search(printed) if isinstance(want, re.Pattern) else want in printed):
            problems.append(f"prints nothing like {want!r}")
    return problems


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory) -> tuple[Course, dict]:
    """Every selected corpus submitted to one course and graded in one run (one queue of
    submissions, the workers and warm kernels started once)."""
    selected = sorted(
        {
            item.callspec.params["assignment"]
            for item in request.session.items
            if getattr(item, "originalname", "") == "test_corpus_through_nbgrader"
        }
    )
    course = Course.create(tmp_path_factory.mktemp("corpora"), selected)
    for assignment in selected:
        for name, s in CORPORA[assignment].STUDENTS.items():
            nb = (
                course.release_nb(assignment) if s.blank else course.solved(assignment, **s.answers)
            )
            course.submit(name, assignment, nb)
    return course, course.grade_all(selected)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", list(CORPORA))
def test_corpus_through_nbgrader(graded, assignment):
    """Graded as one class, does every simulated student score exactly its expected points
    per test cell, with the expected cause named first (or none) in the notebook and the
    feedback, every expected text shown, and nothing written to stderr by a test cell?"""
    course, outcomes = graded
    corpus = CORPORA[assignment]
    assert {s for a, s in outcomes if a == assignment} == set(corpus.STUDENTS)
    problems = {
        name: found
        for name, s in corpus.STUDENTS.items()
        if (found := _problems(course, assignment, name, s, outcomes.get((assignment, name))))
    }
    assert not problems, "\n\n".join(
        f"{name} ({corpus.STUDENTS[name].about}):\n  " + "\n  ".join(found)
        for name, found in problems.items()
    )
