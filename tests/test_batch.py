"""Grading a whole class: every submission gets an outcome, whatever it does, and grading
it again changes nothing. Real nbgrader, real kernels, real gradebook."""

from __future__ import annotations

import csv
import time

import nbformat
import pytest

from tests import batch_support as bs
from tests.conftest import Course

A = bs.A
pytestmark = pytest.mark.slow

TIMEOUT = 3.0  # CPU seconds per cell
WALL = 8.0  # wall seconds per cell


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One class with every kind of submission, graded once (two workers)."""
    course = Course.create(tmp_path_factory.mktemp("mixed"), [A])
    other = nbformat.read(str(bs.other_assignment_source(course)), as_version=4)
    for name, nb in {
        "correct": course.solved(A),
        "wrong": bs.wrong(course),
        "blank": course.release_nb(A),
        "blank_plus_cell": blank_plus_cell(course),
        "dying": bs.dying(course),
        "looping": bs.looping(course),
        "deaf_loop": bs.deaf_loop(course),
        "deaf_sleep": bs.deaf_sleep(course),
        "other_cells": other,
    }.items():
        course.submit(name, A, nb)
    course.submit("invalid_json", A, raw=b'{"cells": [')
    course.submit("empty", A, raw=b"")
    course.submit("other_name", A, other, name="02_other.ipynb")
    (course.root / "submitted" / "no_notebook" / A).mkdir(parents=True)
    (course.root / "submitted" / "no_notebook" / A / "answers.txt").write_text("42")
    started = time.monotonic()
    outcomes = course.grade(A, jobs=2, timeout=TIMEOUT, wall_timeout=WALL, progress=False)
    return course, outcomes, time.monotonic() - started


def blank_plus_cell(course):
    """The release notebook, unanswered, with one code cell of the student's own."""
    nb = course.release_nb(A)
    nb.cells.append(nbformat.v4.new_code_cell("seen = True"))
    return nb


def _test_cell_errors(course, student):
    nb = course.autograded_nb(student, A)
    return {
        c.metadata.nbgrader["grade_id"]: [
            o.get("ename") for o in c.outputs if o.output_type == "error"
        ]
        for c in nb.cells
        if c.cell_type == "code"
        and c.metadata.get("nbgrader", {}).get("grade")
        and not c.metadata.nbgrader.get("solution")
    }


def test_only_the_course_code_ran_so_failures_are_not_judged_again(mixed):
    """A notebook that runs nothing but the released code (no answer written, no cell
    added) keeps the kernel's own failure of each test cell: there is no student code to
    distrust. One added cell is enough for every test cell to be judged again here."""
    course, outcomes, _ = mixed
    points = bs.auto_points(course)
    for student in ("blank", "blank_plus_cell"):
        assert outcomes[student].status == "graded" and outcomes[student].score == 0
        assert {g: outcomes[student].cells[g][0] for g in points} == dict.fromkeys(points, 0.0)
    kernel_own = _test_cell_errors(course, "blank")
    judged = _test_cell_errors(course, "blank_plus_cell")
    assert set(kernel_own) == set(judged) == set(points)
    assert all(names and "CheckFailed" not in names for names in kernel_own.values())
    assert all(names == ["CheckFailed"] for names in judged.values())
    assert course.messages("blank", A) == course.messages("blank_plus_cell", A)


def test_every_submission_gets_one_outcome(mixed):
    """Does the batch finish with exactly one recorded outcome per submission?"""
    course, outcomes, _ = mixed
    submitted = {p.name for p in (course.root / "submitted").iterdir()}
    assert set(outcomes) == submitted
    assert all(o.status in {"graded", "ungradable"} for o in outcomes.values())
    assert all(o.status == "graded" or o.code for o in outcomes.values())


def test_correct_submission_gets_every_automatic_point(mixed):
    """Does the instructor's solution score full marks through the forked kernels?"""
    course, outcomes, _ = mixed
    o = outcomes["correct"]
    assert (o.status, o.code) == ("graded", "")
    assert o.score == sum(bs.auto_points(course).values())
    assert o.score + o.needs_manual == o.max_score


def test_wrong_and_blank_submissions_lose_their_points(mixed):
    """Does a wrong Q2 lose exactly Q2's points, and a blank notebook everything?"""
    course, outcomes, _ = mixed
    points = bs.auto_points(course)
    wrong = outcomes["wrong"]
    assert wrong.status == "graded"
    assert {g: wrong.cells[g][0] for g in points} == {
        g: 0.0 if g == "q2-gradient" else p for g, p in points.items()
    }
    assert outcomes["blank"].status == "graded" and outcomes["blank"].score == 0


@pytest.mark.parametrize(
    ("student", "code", "words"),
    [
        ("invalid_json", "invalid_json", "invalid JSON"),
        ("empty", "empty_file", "empty file"),
        ("other_name", "wrong_assignment", "02_other"),
        ("other_cells", "wrong_assignment", "02_other's cells"),
        ("no_notebook", "missing_notebook", "no .ipynb"),
    ],
)
def test_malformed_submission_is_ungradable_with_the_reason(mixed, student, code, words):
    """Is a file that is not this assignment's notebook recorded with what is wrong, and
    kept out of the gradebook?"""
    course, outcomes, _ = mixed
    o = outcomes[student]
    assert (o.status, o.code) == ("ungradable", code)
    assert words in o.reason
    assert student not in bs.gradebook_snapshot(course.root)["submissions"]


def test_dying_kernel_is_recorded_with_where_it_died(mixed):
    """Does os._exit in an answer cell give 'kernel died' naming the cell and status?"""
    course, outcomes, _ = mixed
    o = outcomes["dying"]
    assert (o.status, o.code) == ("ungradable", "kernel_died")
    assert "q2-answer" in o.reason and "exit status 3" in o.reason
    assert "dying" not in bs.gradebook_snapshot(course.root)["submissions"]
    assert not (course.root / "feedback" / "dying").exists()


def test_interruptible_loop_is_stopped_and_the_rest_graded(mixed):
    """Does an infinite loop cost only its own question, and say it timed out?"""
    course, outcomes, _ = mixed
    o = outcomes["looping"]
    assert (o.status, o.code) == ("graded", "timed_out")
    # Whichever limit is reached first ends it: CPU time normally, wall time on a machine
    # so loaded that the loop gets less than TIMEOUT/WALL of a core.
    assert "q3-answer" in o.reason and (
        f"{TIMEOUT:g} s of CPU" in o.reason or f"more than {WALL:g} s" in o.reason
    )
    points = bs.auto_points(course)
    assert {g: o.cells[g][0] for g in points} == {
        g: 0.0 if g.startswith("q3-") else p for g, p in points.items()
    }


@pytest.mark.parametrize(
    ("student", "words"),
    [("deaf_loop", f"more than {TIMEOUT:g} s of CPU"), ("deaf_sleep", f"more than {WALL:g} s")],
)
def test_kernel_ignoring_interrupts_is_killed_and_recorded(mixed, student, words):
    """Does a loop that ignores SIGINT (computing, or just waiting) still end, recorded as
    timed out, with no grade left behind?"""
    course, outcomes, _ = mixed
    o = outcomes[student]
    assert (o.status, o.code) == ("ungradable", "timed_out")
    # A computing loop normally hits the CPU limit; on a machine loaded enough that it gets
    # less than TIMEOUT/WALL of a core, the wall limit ends it first. Either is right.
    assert "q4-answer" in o.reason and "killed" in o.reason
    assert words in o.reason or f"more than {WALL:g} s" in o.reason
    assert student not in bs.gradebook_snapshot(course.root)["submissions"]


def test_feedback_and_csv_for_the_class(mixed):
    """Is there feedback HTML for every graded student, and a CSV row for everyone?"""
    course, outcomes, _ = mixed
    for student, o in outcomes.items():
        html = course.root / "feedback" / student / A / f"{A}.html"
        assert html.exists() == (o.status == "graded"), student
    with (course.root / "grades.csv").open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(outcomes)
    assert {s: r["status"] for s, r in rows.items()} == {s: o.status for s, o in outcomes.items()}
    assert rows["dying"]["reason"].startswith("kernel died")


def test_no_process_outlives_the_run(mixed):
    """Are the workers, the fork server and every kernel gone when grading returns?"""
    course, _, _ = mixed
    time.sleep(0.5)
    assert bs.processes_mentioning(str(course.root)) == []


def test_rerun_is_idempotent(mixed):
    """Does grading the same class again change nothing, duplicate nothing, and reuse
    every earlier outcome?"""
    course, first, _ = mixed
    before = bs.gradebook_snapshot(course.root)
    started = time.monotonic()
    again = course.grade(A, jobs=2, timeout=TIMEOUT, wall_timeout=WALL, progress=False)
    elapsed = time.monotonic() - started
    assert bs.gradebook_snapshot(course.root) == before
    assert all(o.reused for o in again.values())
    assert {s: (o.status, o.code, o.score) for s, o in again.items()} == {
        s: (o.status, o.code, o.score) for s, o in first.items()
    }
    assert elapsed < 30, f"a re-run with nothing to grade took {elapsed:.0f} s"


def test_the_command_grades_every_assignment_in_one_run(tmp_path):
    """Does `autograder grade` with no assignment grade each assignment that has
    submissions, in one run, into one gradebook and one CSV?"""
    import subprocess
    import sys

    two = ["01_derivatives", "04_parametrized"]
    course = Course.create(tmp_path, two)
    for a in two:
        course.submit("ada", a, course.solved(a))
        course.submit("bo", a, course.release_nb(a))
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.cli", "--course-dir", str(course.root), "grade"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 graded, 0 ungradable" in proc.stdout
    with (course.root / "grades.csv").open() as fh:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(fh)}
    assert set(rows) == {(s, a) for s in ("ada", "bo") for a in two}
    assert float(rows["ada", "04_parametrized"]["score"]) == 13
    assert float(rows["bo", "01_derivatives"]["score"]) == 0
    assert list((course.root / ".autograder" / "logs").glob("*-all"))  # one run for both
    for a in two:
        assert (course.root / "feedback" / "ada" / a / f"{a}.html").exists()
