"""The instructor edits after release, on real nbgrader: what changed is regraded (and
nothing else), edits are not the students' tampering, a question added after release
scores 0 with a note, hand grades survive regrading, and release refuses a solution that
loses points or a notebook whose stated points disagree with its cells."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import subprocess

import nbformat
import pytest
from rich.console import Console

from autograder import course as course_mod
from autograder import lint, notebooks
from autograder.batch import store
from autograder.batch.gradebook import hand_grade_digests, hand_grades, refresh_feedback
from autograder.core.nbgrader_io import hand_grades_file, in_dir, nbgrader_api
from autograder.report import print_summary
from tests.conftest import ROOT, Course

A = "01_derivatives"


# --- helpers ---------------------------------------------------------------------------


def source_path(course: Course):
    return course.root / "source" / A / f"{A}.ipynb"


def edit_source(course: Course, change) -> bytes:
    """Apply `change(nb)` to the instructor notebook; returns its bytes before."""
    path = source_path(course)
    before = path.read_bytes()
    nb = notebooks.read(path)
    change(nb)
    notebooks.write(nb, path)
    return before


def cell(nb, gid: str):
    return notebooks.cell_by_id(nb, gid)


def set_points(gid: str, points: float):
    def change(nb):
        cell(nb, gid).metadata.nbgrader.points = points

    return change


def restate(nb, more: float, heading: tuple[str, str] | None = None) -> None:
    """What the instructor writes with a change of points: the "Total: N points" line
    (`more` points, all automatic) and a section heading's "(N points)"."""

    def bump(match, by=more):
        return match.group(0).replace(match.group(1), f"{float(match.group(1)) + by:g}")

    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        c.source = re.sub(r"Total: (\d+) points", bump, c.source)
        c.source = re.sub(r"(\d+) checked automatically", bump, c.source)
        if heading:
            c.source = c.source.replace(*heading)


def more_points(nb) -> None:
    """Q1.1 worth 2 points instead of 1, and the text saying so."""
    cell(nb, "q1-1-forward").metadata.nbgrader.points = 2
    restate(
        nb, 1, ("## Q1 · Finite differences (4 points)", "## Q1 · Finite differences (5 points)")
    )


def add_question(nb) -> None:
    """A question added at the end, under a heading of its own: an answer cell and its
    test cell."""
    heading = nbformat.v4.new_markdown_cell("## Q6 · The gradient, again (1 point)")
    answer = copy.deepcopy(cell(nb, "q2-answer"))
    answer.metadata.nbgrader.grade_id = "q6-answer"
    answer.source = answer.source.replace("def gradient(", "def gradient_again(")
    test = copy.deepcopy(cell(nb, "q2-gradient"))
    test.metadata.nbgrader.grade_id = "q6-gradient"
    test.metadata.nbgrader.points = 1
    test.source = test.source.replace("(gradient", "(gradient_again")
    for c in (answer, test):
        c.id = c.metadata.nbgrader.grade_id
    nb.cells += [heading, answer, test]
    restate(nb, 1)


def release(course: Course) -> None:
    """`autograder release` of the course's source (solutions checked elsewhere)."""
    course_mod.release(course_dir=course.root, assignments=[A], check_solutions=False)


def released(course: Course):
    return notebooks.read(course.root / "release" / A / f"{A}.ipynb")


def solved(course: Course):
    """Today's release answered with the instructor's solutions."""
    return notebooks.fill(
        released(course), notebooks.solutions(notebooks.read(source_path(course)))
    )


def gradebook_grades(course: Course, student: str) -> dict[str, tuple]:
    api = nbgrader_api(course.root)
    with in_dir(course.root), api.gradebook as gb:
        nb = gb.find_submission_notebook(A, A, student)
        return {
            g.name: (g.auto_score, g.manual_score, g.needs_manual_grade, g.max_score)
            for g in nb.grades
        } | {"flagged": nb.flagged}


def give_by_hand(course: Course, student: str, scores: dict, comments: dict) -> None:
    """What an instructor does in formgrader: scores and comments, the cells then graded."""
    api = nbgrader_api(course.root)
    with in_dir(course.root), api.gradebook as gb:
        for gid, score in scores.items():
            g = gb.find_grade(gid, A, A, student)
            g.manual_score = score
            g.needs_manual_grade = False
        for gid, text in comments.items():
            gb.find_comment(gid, A, A, student).manual_comment = text
        gb.db.commit()


def summary(outcomes) -> str:
    out = io.StringIO()
    print_summary(list(outcomes), Console(file=out, width=200))
    return out.getvalue()


# --- the store's key ---------------------------------------------------------------------


def test_the_key_follows_the_code_each_assignment_is_graded_with(tmp_path):
    """Editing a02.py changes 02's key only; the shared checking library changes every
    assignment's; the command line changes none; so do the source's graded cells and
    nbgrader_config.py, but not its prose."""
    package = tmp_path / "autograder"
    shutil.copytree(ROOT / "autograder", package, ignore=shutil.ignore_patterns("__pycache__"))
    course = Course.create(tmp_path / "c", ["01_derivatives", "02_chain_rule"])

    def keys():
        return {
            a: store.grading_key(course.root, a, package)
            for a in ("01_derivatives", "02_chain_rule")
        }

    def touch(path, text="\n# edited\n"):
        with path.open("a") as fh:
            fh.write(text)

    k0 = keys()
    touch(package / "assignments" / "a02.py")
    k1 = keys()
    assert k1["01_derivatives"] == k0["01_derivatives"]
    assert k1["02_chain_rule"] != k0["02_chain_rule"]
    touch(package / "checking" / "compare.py")
    k2 = keys()
    assert all(k2[a] != k1[a] for a in k2)
    touch(package / "cli.py")
    touch(package / "report.py")
    assert keys() == k2
    touch(course.root / "nbgrader_config.py")
    k3 = keys()
    assert all(k3[a] != k2[a] for a in k3)

    def prose(nb):
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        first.source += "\n\nA sentence added."

    edit_source(course, prose)
    assert keys() == k3
    edit_source(course, set_points("q1-1-forward", 2))
    k4 = keys()
    assert k4["01_derivatives"] != k3["01_derivatives"]
    assert k4["02_chain_rule"] == k3["02_chain_rule"]


# --- edits after release ---------------------------------------------------------------


@pytest.mark.slow
def test_edits_after_release_regrade_without_flagging_and_revert_cleanly(tmp_path):
    """Points changed and a question added in source/ after release (and released again):
    the older submission is regraded, not flagged, the new question scores 0 with a note;
    a student who edited a test cell is still flagged for that cell alone. Reverting the
    source regrades back to the first scores; an unchanged re-run skips and says so; an
    edit of nbgrader_config.py regrades."""
    course = Course.create(tmp_path, [A])
    release(course)
    first_release = solved(course)
    course.submit("ada", A, first_release)
    eve = copy.deepcopy(first_release)
    cell(eve, "q1-2-central").source += "\n# just looking"
    course.submit("eve", A, eve)

    first = course.grade(A, progress=False)
    assert first["ada"].code == "" and first["ada"].score == 13
    assert first["eve"].code == "tampered" and "q1-2-central edited" in first["eve"].reason

    original = edit_source(course, more_points)
    edit_source(course, add_question)
    assert lint.lint_source(course.root, [A]) == []
    release(course)
    second = course.grade(A, progress=False)
    ada = second["ada"]
    assert not ada.reused
    assert ada.code == "" and "tamper" not in ada.reason, ada.reason
    assert ada.max_score == first["ada"].max_score + 2
    assert ada.cells["q1-1-forward"] == (2.0, 2.0)
    assert ada.cells["q6-gradient"] == (0.0, 1.0)
    assert ada.score == 14
    assert "added after this notebook was released" in ada.reason and "q6-gradient" in ada.reason
    assert gradebook_grades(course, "ada")["flagged"] is False
    assert second["eve"].code == "tampered"
    assert "q1-2-central edited" in second["eve"].reason
    assert "q1-1-forward" not in second["eve"].reason
    page = course.feedback_html("ada", A)
    assert "autograder-tampered" not in page

    source_path(course).write_bytes(original)
    release(course)
    third = course.grade(A, progress=False)
    assert not third["ada"].reused
    assert (third["ada"].score, third["ada"].max_score) == (13, first["ada"].max_score)
    assert third["ada"].cells == first["ada"].cells
    assert third["ada"].code == ""

    fourth = course.grade(A, progress=False)
    assert all(o.reused for o in fourth.values())
    assert fourth["ada"].score == 13
    assert "2 not graded again" in summary(fourth.values())

    with (course.root / "nbgrader_config.py").open("a") as fh:
        fh.write("\n# a comment is a change too\n")
    fifth = course.grade(A, progress=False, students=["ada"])
    assert not fifth["ada"].reused and fifth["ada"].score == 13


@pytest.mark.slow
def test_a_broken_check_forced_then_reverted_leaves_no_wrong_zero(tmp_path):
    """A test cell broken in source/ zeroes it, with and without --force; reverting the
    source, a plain re-run gives the points back."""
    course = Course.create(tmp_path, [A])
    course.submit("ada", A, course.solved(A))
    assert course.grade(A, progress=False)["ada"].cells["q2-gradient"] == (2.0, 2.0)

    def break_test(nb):
        cell(nb, "q2-gradient").source = cell(nb, "q2-gradient").source.replace(
            "a01.check_gradient(gradient, hidden=True)", "assert False, 'broken on purpose'"
        )

    original = edit_source(course, break_test)
    broken = course.grade(A, progress=False)["ada"]
    assert not broken.reused and broken.cells["q2-gradient"] == (0.0, 2.0)
    forced = course.grade(A, progress=False, force=True)["ada"]
    assert forced.cells["q2-gradient"] == (0.0, 2.0)
    source_path(course).write_bytes(original)
    fixed = course.grade(A, progress=False)["ada"]
    assert not fixed.reused and fixed.cells["q2-gradient"] == (2.0, 2.0)
    assert fixed.score == 13


# --- hand grades -------------------------------------------------------------------------


@pytest.mark.slow
def test_hand_grades_survive_regrading_and_reach_the_feedback(tmp_path):
    """Scores and comments given by hand: kept, and not marked as needing grading again,
    by `grade --force`; a comment given later reaches the feedback pages on the next run;
    kept when a broken resubmission removes the submission, and back when the same
    answers are handed in again."""
    course = Course.create(tmp_path, [A])
    nb = course.solved(A)
    cell(nb, "q4-3-explain").source = "The branch taken decides which operations autograd sees."
    course.submit("ada", A, nb)
    assert course.grade(A, progress=False)["ada"].needs_manual == 1
    give_by_hand(
        course,
        "ada",
        scores={"q4-3-explain": 1.0, "q1-1-forward": 0.5},
        comments={"q4-3-explain": "Clear and right."},
    )

    forced = course.grade(A, progress=False, force=True)["ada"]
    grades = gradebook_grades(course, "ada")
    assert grades["q4-3-explain"][1:3] == (1.0, False)
    assert grades["q1-1-forward"][:3] == (1.0, 0.5, False)
    assert forced.score == 12.5 + 1 and forced.needs_manual == 0
    assert "Clear and right." in course.feedback_html("ada", A)

    # Later, in formgrader, a comment; the next run reuses the outcome (the submission and
    # everything grading depends on unchanged) and writes the pages again.
    give_by_hand(course, "ada", scores={}, comments={"q2-answer": "Nice use of detach."})
    assert "Nice use of detach." not in course.feedback_html("ada", A)
    forced.reused = True
    assert refresh_feedback(course.root, [forced]) == [f"ada/{A}"]
    assert "Nice use of detach." in course.feedback_html("ada", A)
    assert refresh_feedback(course.root, [forced]) == []  # nothing new by hand since
    # the digests read in bulk are those read one submission at a time, and they move
    # with what is given by hand
    with in_dir(course.root), nbgrader_api(course.root).gradebook as gb:
        bulk = hand_grade_digests(gb, [A])
        assert bulk == {(A, "ada"): hand_grades(gb, A, "ada")}
    give_by_hand(course, "ada", scores={"q4-3-explain": 0.5}, comments={})
    with in_dir(course.root), nbgrader_api(course.root).gradebook as gb:
        assert hand_grade_digests(gb, [A])[(A, "ada")] != bulk[(A, "ada")]
        assert hand_grade_digests(gb, ["no-such-assignment"]) == {}
    give_by_hand(course, "ada", scores={"q4-3-explain": 1.0}, comments={})

    path = course.submit("ada", A, raw=b"{ not json")
    assert course.grade(A, progress=False)["ada"].status == "ungradable"
    assert json.loads(hand_grades_file(course.root, A, "ada").read_text())[A]["q4-3-explain"]
    notebooks.write(nb, path)
    back = course.grade(A, progress=False)["ada"]
    grades = gradebook_grades(course, "ada")
    assert grades["q4-3-explain"][1:3] == (1.0, False)
    assert grades["q1-1-forward"][1] == 0.5
    assert back.score == 13.5
    assert not hand_grades_file(course.root, A, "ada").exists()


# --- release checks ----------------------------------------------------------------------


def test_lint_refuses_stated_points_that_disagree_with_the_cells():
    """A test cell's points changed without its "Total: N points" and heading: named."""
    nb = notebooks.read(ROOT / "source" / A / f"{A}.ipynb")
    assert lint.stated_points(nb, "nb") == []
    cell(nb, "q1-1-forward").metadata.nbgrader.points = 2
    said = [str(p) for p in lint.stated_points(nb, "nb")]
    assert any("Total: 14 points" in s and "cells give 15" in s for s in said), said
    assert any("13 checked automatically" in s for s in said), said
    assert any("Q1 · Finite differences (4 points)" in s and "give 5" in s for s in said), said


@pytest.mark.slow
def test_release_refuses_a_solution_that_loses_points(tmp_path):
    """The instructor's solution doubling the gradient: release refuses, naming the test
    cell, and release/ is left as it was."""
    course = Course.create(tmp_path, [A])
    before = (course.root / "release" / A / f"{A}.ipynb").read_bytes()

    def wrong(nb):
        c = cell(nb, "q2-answer")
        c.source = c.source.replace("return x.grad", "return 2 * x.grad")

    edit_source(course, wrong)
    with pytest.raises(lint.AuthoringError) as refused:
        course_mod.release(course_dir=course.root, assignments=[A])
    said = [str(p) for p in refused.value.problems]
    assert len(said) == 1 and "(q2-gradient)" in said[0], said
    assert "scores 0 of 2" in said[0]
    assert (course.root / "release" / A / f"{A}.ipynb").read_bytes() == before


def test_nbgrader_commands_do_not_warn_about_the_root(tmp_path):
    """The course's nbgrader_config.py leaves the root to nbgrader: no "not absolute"."""
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "nbgrader"), "db", "student", "list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        # nbgrader runs alembic (the gradebook's migrations) from PATH
        env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "not absolute" not in proc.stdout + proc.stderr
