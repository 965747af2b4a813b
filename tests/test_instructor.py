"""An instructor's term on real nbgrader: grading a fresh gradebook leaves committed files
alone, a deleted answer and test cell pair is restored and graded, `explain` says why a
submission got its grade, and the feedback pages read offline and carry the flags.

One small class (01_derivatives: a solved notebook, one with an answer cell and its test
cell deleted, a blank one), graded once in a course directory that is a git work tree.
The instructor's edits after release (regrading, tamper flags, hand grades) are in
tests/test_instructor_edits.py.
"""

from __future__ import annotations

import csv
import shutil
import subprocess

import pytest

from autograder import notebooks
from autograder.batch import store, tamper
from autograder.core.nbgrader_io import in_dir, nbgrader_api
from autograder.explain import explain
from tests.conftest import ROOT, Course

pytestmark = pytest.mark.slow

A = "01_derivatives"


def git(root, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def commit_course(root) -> None:
    """Make the course directory a git work tree, as a clone of the project is."""
    shutil.copy2(ROOT / ".gitignore", root / ".gitignore")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "course")


def without_pair(course: Course):
    """The solved notebook with its first answer cell and the test cell after it deleted."""
    nb = course.solved(A)
    ids = [notebooks.grade_id(c) for c in nb.cells]
    answer = ids.index("q1-differences-answer")
    assert ids[answer + 1] == "q1-1-forward"
    del nb.cells[answer : answer + 2]
    return nb


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    course = Course.create(tmp_path_factory.mktemp("term"), [A])
    commit_course(course.root)
    tracked = {p: (course.root / p).read_bytes() for p in git(course.root, "ls-files").split()}
    course.submit("ada", A, course.solved(A))
    course.submit("bo", A, without_pair(course))
    course.submit("cy", A, course.release_nb(A))
    assert not (course.root / "gradebook.db").exists()  # a fresh gradebook
    outcomes = course.grade(A, progress=False)
    return course, outcomes, tracked


def test_grading_against_a_new_gradebook_changes_no_tracked_file(term):
    """Is every git-tracked file (release/ among them) byte-identical after grading, and
    is everything grading wrote ignored by the project's .gitignore?"""
    course, outcomes, tracked = term
    assert {o.status for o in outcomes.values()} == {"graded"}
    for path, data in tracked.items():
        assert (course.root / path).read_bytes() == data, path
    assert git(course.root, "status", "--porcelain") == ""
    ignored = git(course.root, "status", "--porcelain", "--ignored")
    assert ".autograder/" in ignored and "gradebook.db.lock" in ignored
    # the gradebook knows the assignment's cells all the same
    api = nbgrader_api(course.root)
    with in_dir(course.root), api.gradebook as gb:
        names = {c.name for c in gb.find_notebook(A, A).grade_cells}
    assert set(course.auto_cells(A)) <= names


def test_a_deleted_answer_and_test_cell_pair_is_restored_and_graded(term):
    """Is the submission without an answer cell and its test cell graded (not
    ungradable, no traceback in the CSV), the restored test cell scoring 0 and the others
    as they should, with the deletion named?"""
    course, outcomes, _ = term
    ada, bo = outcomes["ada"], outcomes["bo"]
    assert bo.status == "graded", bo.reason
    assert bo.max_score == ada.max_score
    assert bo.cells["q1-1-forward"][0] == 0
    # the deleted answer also held central_difference, which q1-2 and q1-4 call
    auto = course.auto_cells(A)
    lost = {gid for gid, (score, top) in bo.cells.items() if gid in auto and score < top}
    assert lost == {"q1-1-forward", "q1-2-central", "q1-4-errors"}, bo.cells
    assert bo.score == ada.score - 3
    assert "q1-1-forward deleted" in bo.reason
    nb = course.autograded_nb("bo", A)
    assert [notebooks.grade_id(c) for c in nb.cells] == [
        notebooks.grade_id(c) for c in course.autograded_nb("ada", A).cells
    ]
    with (course.root / "grades.csv").open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    assert rows["bo"]["status"] == "graded" and "traceback" not in rows["bo"]["reason"]


def test_explain_names_each_question_its_message_and_a_blank_notebook(term):
    """Does `explain` give per question the points and the check's message, say that a
    blank notebook is blank, and point at logs kept per student and per run?"""
    course, outcomes, _ = term
    said = explain(course_dir=course.root, student="bo", assignment=A)
    assert "score 10 / 14" in said or f"score {outcomes['bo'].score:g} /" in said
    assert "Q1.1 forward_difference: 0 / 1" in said
    assert "not answered yet" in said
    assert "FLAG: tampered" in said and "restored unanswered: q1-differences-answer" in said
    assert "BLANK" not in said
    blank = explain(course_dir=course.root, student="cy", assignment=A)
    assert "BLANK: no answer cell differs from the released notebook" in blank
    assert "BLANK" not in explain(course_dir=course.root, student="ada", assignment=A)
    log = store.student_log(course.root, "cy", A)
    assert log.exists() and "graded 0/" in log.read_text()
    runs = [p for p in (course.root / ".autograder" / "logs").iterdir() if p.name[:1].isdigit()]
    assert len(runs) == 1 and any(runs[0].glob("worker-*.log"))
    worker_logs = "".join(p.read_text() for p in runs[0].glob("worker-*.log"))
    assert "Attribute 'checksum'" not in worker_logs


def test_cli_explain(term):
    course, _, _ = term
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "autograder"), "--course-dir", str(course.root)]
        + ["explain", "cy", A],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "BLANK" in proc.stdout


def test_feedback_pages_read_offline(term):
    """Math drawn without network (MathML, no MathJax script), messages that wrap, the
    contents list naming each question, the tamper banner, and nbgrader's flagged field."""
    course, _, _ = term
    page = course.feedback_html("bo", A)
    assert "<math" in page
    assert "cdnjs" not in page and "MathJax.Hub" not in page
    assert "white-space: pre-wrap" in page
    assert '<a href="#q1-1-forward">Q1.1 forward_difference</a>' in page
    assert ">Test cell</a>" not in page
    assert tamper.BANNER_CLASS in page
    assert tamper.BANNER_CLASS not in course.feedback_html("ada", A)
    api = nbgrader_api(course.root)
    with in_dir(course.root), api.gradebook as gb:
        flagged = {s: gb.find_submission_notebook(A, A, s).flagged for s in ("ada", "bo", "cy")}
    assert flagged == {"ada": False, "bo": True, "cy": False}
