"""The kernel sandbox, through the real batch pipeline: hostile submissions graded next to
a correct one in one run (see autograder/batch/sandbox.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket

import psutil
import pytest

from autograder import notebooks
from autograder.batch import sandbox

A = "01_derivatives"
FIRST = "q1-differences-answer"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (sandbox.available().root and sandbox.available().mountns),
        reason="needs root and mount namespaces",
    ),
]

PROBE = """
import glob as _glob, os as _os, socket as _socket
_found = []
for _p in ("../../../gradebook.db", {root!r} + "/gradebook.db",
           {root!r} + "/submitted/good/01_derivatives/01_derivatives.ipynb"):
    try:
        open(_p, "rb").read(1); _found.append("read " + _p)
    except OSError:
        pass
    try:
        open(_p, "ab").write(b"x"); _found.append("wrote " + _p)
    except OSError:
        pass
_found += _glob.glob("../../../source/*/*.ipynb") + _glob.glob({root!r} + "/source/*/*.ipynb")
_found += _glob.glob({root!r} + "/submitted/*")
try:
    _socket.create_connection(("127.0.0.1", {port}), timeout=2); _found.append("network")
except OSError:
    pass
print("PROBE", _os.getuid(), _os.getcwd(), _found)
"""

HOG = """
import torch as _torch
_hog = _torch.ones(2**30 // 8 * 2, dtype=_torch.float64)  # 2 GiB, every page touched
"""

FORKER = """
import os as _os, time as _time
_pid = _os.fork()
if _pid == 0:
    _os.setsid()
    _time.sleep(600)
    _os._exit(0)
print("SURVIVOR", _pid)
"""


def _hash(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _output(course, student: str, marker: str) -> str:
    nb = course.autograded_nb(student, A)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    found = re.search(marker + r" ([^\\]*)", text)
    assert found, f"no {marker} line in {student}'s notebook"
    return found.group(1)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from tests.conftest import Course

    course = Course.create(tmp_path_factory.mktemp("sandbox"), [A])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    sol = notebooks.solutions(course.source_nb(A))

    def with_code(code: str):
        return course.solved(A, **{FIRST: code + "\n" + sol[FIRST]})

    course.submit("good", A, course.solved(A))
    course.submit("probe", A, with_code(PROBE.format(root=str(course.root), port=port)))
    course.submit("hog", A, with_code(HOG))
    course.submit("forker", A, with_code(FORKER))
    (course.root / "submitted" / "probe" / A / "data.txt").write_text("mine")
    protected = [
        *course.root.glob("source/*/*.ipynb"),
        course.root / "submitted" / "good" / A / f"{A}.ipynb",
    ]
    before = _hash(protected)
    old = os.environ.get("AUTOGRADER_SANDBOX_MEMORY")
    os.environ["AUTOGRADER_SANDBOX_MEMORY"] = "1G"
    try:
        outcomes = course.grade(A)
    finally:
        listener.close()
        if old is None:
            os.environ.pop("AUTOGRADER_SANDBOX_MEMORY", None)
        else:
            os.environ["AUTOGRADER_SANDBOX_MEMORY"] = old
    return course, outcomes, before, _hash(protected)


def test_correct_student_keeps_full_marks(graded):
    _, outcomes, _, _ = graded
    good = outcomes["good"]
    assert good.status == "graded", good.reason
    short = {k for k, (s, m) in good.cells.items() if s != m}
    assert short <= {"q4-3-explain"}, good.cells  # a written answer, graded by hand
    assert outcomes["probe"].score == good.score  # confined, but its answers still count


def test_kernel_sees_nothing_of_the_course_and_has_no_network(graded):
    course, _, _, _ = graded
    line = _output(course, "probe", "PROBE")
    uid, cwd, found = line.split(" ", 2)
    assert int(uid) >= sandbox.UID_BASE
    assert not cwd.startswith(str(course.root))
    assert found.strip() == "[]", found


def test_reads_outside_the_kernels_directory_are_flagged(graded):
    """The probe found nothing, but its attempts are named in the summary and feedback;
    the other submissions (a fork, a memory hog, a correct one) are not flagged."""
    course, outcomes, _, _ = graded
    probe = outcomes["probe"]
    assert probe.code == "tampered", probe.reason
    assert "reached outside its directory" in probe.reason
    assert "gradebook.db" in probe.reason
    page = notebooks.plain(course.feedback_html("probe", A))
    assert "Flagged for review" in page and "reached outside its directory" in page
    for name in ("good", "forker"):
        assert "outside" not in (outcomes[name].reason or ""), outcomes[name].reason
        assert "Flagged for review" not in course.feedback_html(name, A)


def test_protected_files_unchanged(graded):
    _, _, before, after = graded
    assert before == after


def test_memory_hog_stopped_with_reason(graded):
    _, outcomes, _, _ = graded
    hog = outcomes["hog"]
    assert hog.status == "ungradable"
    assert hog.code == "limit_exceeded", hog.reason
    assert "memory limit" in hog.reason and "1 GiB" in hog.reason


def test_fork_survivor_killed(graded):
    course, outcomes, _, _ = graded
    assert outcomes["forker"].status == "graded"
    pid = int(_output(course, "forker", "SURVIVOR").split()[0])
    if psutil.pid_exists(pid):
        proc = psutil.Process(pid)
        assert proc.status() == psutil.STATUS_ZOMBIE or proc.uids().real < sandbox.UID_BASE


def test_missing_protections_listed():
    full = sandbox.Available(True, True, True, True, True)
    assert full.missing(sandbox.Limits()) == []
    bare = sandbox.Available(False, False, False, False, False)
    text = " ".join(bare.missing(sandbox.Limits()))
    assert "not root" in text and "network" in text and "memory" in text
    assert "turned off" in " ".join(bare.missing(sandbox.Limits(enabled=False)))
    assert sandbox.Limits.from_env({"AUTOGRADER_SANDBOX_MEMORY": "512M"}).memory_bytes == 512 << 20
    assert not sandbox.Limits.from_env({"AUTOGRADER_SANDBOX": "0"}).enabled


# --- the hostile submissions that reach outside the kernel, in one batch ------------------

OUTSIDE = [
    "exit_kernel",
    "ignore_interrupt_loop",
    "fork_survivor",
    "write_gradebook",
    "write_course_files",
    "read_solutions",
    "read_other_submissions",
    "flood_output",
    "exhaust_memory",
]


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """Each hostile submission of tests/hostile that reaches for files, processes, output
    or memory, graded in one run beside a correct and a blank submission."""
    import time

    from tests.conftest import Course
    from tests.hostile import ASSIGNMENT, notebook

    course = Course.create(tmp_path_factory.mktemp("outside"), [ASSIGNMENT])
    course.submit("victim", ASSIGNMENT, course.solved(ASSIGNMENT))
    course.submit("blank", ASSIGNMENT, course.release_nb(ASSIGNMENT))
    for name in OUTSIDE:
        course.submit(name, ASSIGNMENT, notebook(course, name))
    # (release/ is regenerated from source/ by the grader itself, so it is not hashed.)
    files = [
        *course.root.glob("source/*/*.ipynb"),
        *course.root.glob("submitted/*/*/*.ipynb"),
        course.root / "nbgrader_config.py",
    ]
    before = _hash(files)
    old = os.environ.get("AUTOGRADER_SANDBOX_MEMORY")
    os.environ["AUTOGRADER_SANDBOX_MEMORY"] = "1G"
    try:
        outcomes = course.grade(ASSIGNMENT, timeout=3.0, wall_timeout=8.0)
    finally:
        if old is None:
            os.environ.pop("AUTOGRADER_SANDBOX_MEMORY", None)
        else:
            os.environ["AUTOGRADER_SANDBOX_MEMORY"] = old
    time.sleep(10)  # what a surviving child would wait for before writing
    after = _hash(files)
    after["victim's score in the gradebook"] = _victim_score(course.root, ASSIGNMENT)
    before["victim's score in the gradebook"] = 13.0
    return course, outcomes, before, after


def _victim_score(root, assignment: str) -> float | None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return gb.find_submission(assignment, "victim").score


def test_the_outside_batch_completes_and_the_victim_keeps_full_marks(hostile_batch):
    course, outcomes, _, _ = hostile_batch
    assert set(outcomes) == {"victim", "blank", *OUTSIDE}
    assert outcomes["victim"].status == "graded" and outcomes["victim"].score == 13


@pytest.mark.parametrize("name", OUTSIDE)
def test_reaching_outside_scores_no_more_than_blank(hostile_batch, name):
    from tests.hostile import HOSTILE

    _, outcomes, _, _ = hostile_batch
    assert outcomes["blank"].score == 0
    assert outcomes[name].score <= outcomes["blank"].score, (HOSTILE[name].about, outcomes[name])


READERS = ["write_gradebook", "write_course_files", "read_solutions", "read_other_submissions"]


@pytest.mark.parametrize("name", READERS)
def test_reaching_for_course_files_is_flagged(hostile_batch, name):
    _, outcomes, _, _ = hostile_batch
    assert "reached outside its directory" in (outcomes[name].reason or ""), outcomes[name]


def test_honest_submissions_beside_them_are_not_flagged(hostile_batch):
    _, outcomes, _, _ = hostile_batch
    for name in ("victim", "blank"):
        assert not outcomes[name].reason, outcomes[name].reason


def test_no_course_file_or_other_grade_changed(hostile_batch):
    """Course files hashed before the run and after (and after a survivor's delay), and
    the correct student's score read back from the gradebook."""
    _, _, before, after = hostile_batch
    assert after == before
