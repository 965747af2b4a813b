"""Batch grading, piece by piece: submission checks, the outcome store, gradebook locking,
progress and summaries. No kernels here."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys

import nbformat
import pytest
from rich.console import Console

from autograder import course as course_mod
from autograder.batch import gradebook, progress, store
from tests import batch_support as bs

A = bs.A


@pytest.fixture
def course(make_course):
    c = make_course(A)
    bs.other_assignment_source(c)
    return c


@pytest.mark.parametrize(
    ("files", "code", "words"),
    [
        (None, "not_submitted", "nothing submitted"),
        ({}, "missing_notebook", "no .ipynb"),
        ({"notes.txt": b"hello"}, "missing_notebook", "no .ipynb"),
        ({f"{A}.ipynb": b""}, "empty_file", "empty file"),
        ({f"{A}.ipynb": b"  \n"}, "empty_file", "empty file"),
        ({f"{A}.ipynb": b'{"cells": ['}, "invalid_json", "invalid JSON"),
        ({f"{A}.ipynb": b"\xff\xfe"}, "invalid_json", "invalid JSON"),
        ({f"{A}.ipynb": b"[1, 2]"}, "not_a_notebook", "not a notebook"),
        ({f"{A}.ipynb": b'{"cells": 3}'}, "invalid_notebook", "not a valid notebook"),
        ({"mine.ipynb": None}, "wrong_assignment", "expected 01_derivatives.ipynb"),
        ({"02_other.ipynb": None}, "wrong_assignment", "(that is 02_other)"),
    ],
)
def test_a_submission_that_cannot_be_graded_says_why(course, files, code, words):
    """Is each kind of broken submission caught before anything runs, with its reason?"""
    folder = course.root / "submitted" / "s" / A
    if files is not None:
        folder.mkdir(parents=True)
        for name, data in files.items():
            if data is None:
                nbformat.write(course.release_nb(A), str(folder / name))
            else:
                (folder / name).write_bytes(data)
    problem = course_mod.submission_problem(course.root, A, "s")
    assert problem is not None and problem[0] == code
    assert words in problem[1]


def test_another_assignments_notebook_under_this_name_is_caught(course):
    """Is a notebook named like this assignment's, but holding another's cells, refused?"""
    other = nbformat.read(str(course.root / "source" / "02_other" / "02_other.ipynb"), 4)
    course.submit("s", A, other)
    code, reason = course_mod.submission_problem(course.root, A, "s")
    assert code == "wrong_assignment" and "02_other's cells" in reason


def test_a_valid_submission_passes_the_checks(course):
    """Does the release notebook, blank or answered, pass?"""
    course.submit("blank", A, course.release_nb(A))
    course.submit("solved", A, course.solved(A))
    assert course_mod.submission_problem(course.root, A, "blank") is None
    assert course_mod.submission_problem(course.root, A, "solved") is None
    assert course_mod.check_submission(course.root / "submitted" / "solved" / A, A) is None


def test_outcome_store_keeps_one_row_per_submission(tmp_path):
    """Does recording a student's outcome twice keep one row, the latest?"""
    s = store.OutcomeStore(tmp_path / "o.sqlite")
    first = course_mod.Outcome("ann", A, "graded", score=3, max_score=4, cells={"q": (3.0, 4.0)})
    s.put(first, "fp1")
    s.put(course_mod.Outcome("ann", A, "ungradable", "kernel died", code="kernel_died"), "fp2")
    fp, outcome = s.get(A, "ann")
    assert fp == "fp2" and outcome.code == "kernel_died"
    s.put(first, "fp1")
    assert s.get(A, "ann")[1].cells == {"q": (3.0, 4.0)}
    rows = sqlite3.connect(str(tmp_path / "o.sqlite")).execute("SELECT COUNT(*) FROM outcomes")
    assert rows.fetchone()[0] == 1
    s.close()


def test_fingerprint_follows_the_files_and_settings(course):
    """Does a submission's fingerprint change with its content, the assignment's source or
    the settings, and only then?"""
    path = course.submit("s", A, course.release_nb(A))
    fp = store.fingerprint(course.root, A, "s", "cpu=1")
    assert store.fingerprint(course.root, A, "s", "cpu=1") == fp
    assert store.fingerprint(course.root, A, "s", "cpu=2") != fp
    path.write_bytes(path.read_bytes() + b"\n")
    changed = store.fingerprint(course.root, A, "s", "cpu=1")
    assert changed != fp
    src = course.root / "source" / A / f"{A}.ipynb"
    src.write_bytes(src.read_bytes() + b"\n")
    assert store.fingerprint(course.root, A, "s", "cpu=1") != changed


# Runs in separate interpreters: nbgrader's Gradebook, as nbgrader uses it, with the lock
# module loaded on its own (no torch import, so the processes start fast).
HAMMER = """
import importlib.util, sys
from nbgrader.api import Gradebook
spec = importlib.util.spec_from_file_location("gblock", sys.argv[1])
gblock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gblock)
gblock.serialize_sqlite()
db_url, prefix, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(n):
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(f"{prefix}{i}", first_name=prefix)
        gb.find_student(f"{prefix}{i}")
"""


@pytest.mark.slow
def test_concurrent_gradebook_writers_never_collide(tmp_path):
    """Do four processes writing the same SQLite gradebook through nbgrader, as fast as
    they can, all succeed (no 'database is locked')?"""
    from nbgrader.api import Gradebook

    course_mod._tools_on_path()  # a new gradebook runs alembic
    db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(db_url):
        pass
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, gradebook.__file__, db_url, f"p{k}-", "8"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with Gradebook(db_url) as gb:
        assert len(gb.students) == 32


def test_gradebook_lock_is_reentrant_and_released(tmp_path):
    """Can one process nest gradebook sessions, and is the lock free afterwards?"""
    import fcntl
    import os

    lock = gradebook.lock_for(tmp_path / "gb.db")
    lock.acquire()
    lock.acquire()
    lock.release()
    lock.release()
    fd = os.open(gradebook.lock_path(tmp_path / "gb.db"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if still held
    os.close(fd)


def _outcomes():
    return [
        course_mod.Outcome("ann", A, "graded", score=13, max_score=14, needs_manual=1),
        course_mod.Outcome(
            "bob", A, "graded", "timed out: q3-answer used more than 3 s of CPU", 11, 14,
            code="timed_out",
        ),
        course_mod.Outcome("cy", A, "ungradable", "f.ipynb: invalid JSON (x)", code="invalid_json"),
    ]  # fmt: skip


def test_progress_is_quiet_off_a_terminal():
    """In CI or a pipe, is there no progress output at all?"""
    out = io.StringIO()
    bar = progress.GradingProgress(A, 3, console=Console(file=out))
    with bar:
        for o in _outcomes():
            bar.advance(o)
    assert not bar.enabled and out.getvalue() == ""


def test_progress_on_a_terminal_counts_outcomes(monkeypatch):
    """On a terminal, does the bar show the counts by outcome?"""
    monkeypatch.delenv("CI", raising=False)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150)
    with progress.GradingProgress(A, 3, console=console) as bar:
        for o in _outcomes():
            bar.advance(o)
    text = out.getvalue()
    assert "3/3" in text and "2 graded" in text and "1 ungradable" in text
    assert "1 timed out" in text


def test_summary_names_what_went_wrong_and_for_whom():
    """Does the summary say who was not graded cleanly and why, and the exit status
    reflect it?"""
    outcomes = _outcomes()
    line = progress.summary_line(outcomes)
    assert line.startswith("2 graded, 1 ungradable")
    assert "bob/01_derivatives: timed out" in line and "cy/01_derivatives" in line
    assert "ann" not in line
    assert progress.exit_status(outcomes) == 1
    assert progress.exit_status(outcomes[:1]) == 0
    out = io.StringIO()
    progress.print_summary(outcomes, Console(file=out, width=200))
    assert "13 / 14" in out.getvalue() and "invalid json" in out.getvalue()
