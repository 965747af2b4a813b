"""Grading under stress: a saturated machine cannot cost points, and a run killed half-way
resumes to the gradebook an uninterrupted run gives. Real nbgrader, kernels, gradebook."""

from __future__ import annotations

import time

import pytest

from autograder.batch import coordinator
from autograder.batch.executor import LocalExecutor
from autograder.core.request import GradeRequest
from tests import batch_support as bs
from tests.conftest import Course

A = bs.A
pytestmark = pytest.mark.slow


def test_correct_submission_keeps_full_marks_on_a_saturated_machine(make_course):
    """With every core kept busy by two busy loops, and the kernels getting the CPU only a
    small share of the time (lower priority, and stopped most of the time as a starving
    scheduler would), cells take far longer than the time limit in wall time: do they
    keep their points, because the limit counts the kernel's CPU time?"""
    course = make_course(A)
    for name in ("first", "second"):
        course.submit(name, A, course.solved(A))
    bs.in_gradebook(course, A)
    timeout = 1.0
    request = GradeRequest(
        course_dir=course.root, assignments=(A,), timeout=timeout, wall_timeout=600, progress=False
    )
    with LocalExecutor(2, log_dir=course.root / "logs", kernel_nice=5) as executor:
        executor.start(coordinator.settings_for(request), 2)
        assert executor.wait_ready()  # warm before the machine gets busy
        with (
            bs.saturated(per_core=2),
            bs.starved(
                executor.forkserver.proc.pid,
                spare=[w.pid for w in executor.workers.values()],
                stopped=0.5,
                running=0.05,
            ),
        ):
            outcomes = coordinator.grade(request, executor=executor)
    full = sum(bs.auto_points(course).values())
    for o in outcomes:
        assert (o.status, o.code, o.score) == ("graded", "", full), o.reason
    slowest = max(o.slowest_cell for o in outcomes)
    assert slowest > timeout, f"not saturated enough: slowest cell took {slowest:.2f} s"


def test_killed_run_resumes_to_the_same_gradebook(tmp_path):
    """Killing the grading run half-way (SIGKILL, no clean-up) and running it again: is
    the gradebook the same as after an uninterrupted run, with nothing duplicated and the
    finished work not redone?"""
    classes = {}
    for label in ("whole", "killed"):
        course = Course.create(tmp_path / label, [A])
        for name in ("a_correct", "b_correct"):
            course.submit(name, A, course.solved(A))
        course.submit("c_wrong", A, bs.wrong(course))
        course.submit("d_blank", A, course.release_nb(A))
        course.submit("e_invalid", A, raw=b"not json")
        classes[label] = course
    whole, killed = classes["whole"], classes["killed"]
    reference = whole.grade(A, jobs=2, progress=False)

    run = bs.grade_in_subprocess(killed.root, jobs=2, progress=False)
    deadline = time.monotonic() + 300
    while bs.outcomes_recorded(killed.root) < 3 and run.poll() is None:
        assert time.monotonic() < deadline, "the run recorded nothing in time"
        time.sleep(0.2)
    bs.kill_group(run)
    done_before_kill = bs.outcomes_recorded(killed.root)
    assert done_before_kill < len(reference), "the run finished before it could be killed"
    time.sleep(1.0)
    assert bs.processes_mentioning(str(killed.root)) == []  # workers, server, kernels gone

    resumed = killed.grade(A, jobs=2, progress=False)
    assert bs.gradebook_snapshot(killed.root) == bs.gradebook_snapshot(whole.root)
    assert {s: (o.status, o.score) for s, o in resumed.items()} == {
        s: (o.status, o.score) for s, o in reference.items()
    }
    assert sum(o.reused for o in resumed.values()) >= done_before_kill - 1
    for student, o in resumed.items():
        html = killed.root / "feedback" / student / A / f"{A}.html"
        assert html.exists() == (o.status == "graded"), student
