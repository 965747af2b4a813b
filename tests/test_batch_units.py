"""Batch grading, piece by piece: submission checks, the outcome store, gradebook locking,
progress and the run's summary. No kernels here."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rich.console import Console

from autograder import report
from autograder.batch import gradebook, progress, store
from autograder.core.nbgrader_io import tools_on_path
from autograder.core.outcome import Outcome
from autograder.core.submissions import submission_problem
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
    problem = submission_problem(course.root, A, "s")
    assert problem is not None and problem[0] == code
    assert words in problem[1]


def test_another_assignments_notebook_under_this_name_is_caught(course):
    """Is a notebook named like this assignment's, but holding another's cells, refused?"""
    other = nbformat.read(str(course.root / "source" / "02_other" / "02_other.ipynb"), 4)
    course.submit("s", A, other)
    code, reason = submission_problem(course.root, A, "s")
    assert code == "wrong_assignment" and "02_other's cells" in reason


def test_a_valid_submission_passes_the_checks(course):
    """Does the release notebook, blank or answered, pass?"""
    course.submit("blank", A, course.release_nb(A))
    course.submit("solved", A, course.solved(A))
    assert submission_problem(course.root, A, "blank") is None
    assert submission_problem(course.root, A, "solved") is None


def test_outcome_store_keeps_one_row_per_submission(tmp_path):
    """Does recording a student's outcome twice keep one row, the latest?"""
    s = store.OutcomeStore(tmp_path / "o.sqlite")
    first = Outcome("ann", A, "graded", score=3, max_score=4, cells={"q": (3.0, 4.0)})
    s.put(first, "fp1")
    s.put(Outcome("ann", A, "ungradable", "kernel died", code="kernel_died"), "fp2")
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
    src.write_bytes(src.read_bytes() + b"\n")  # not what grading reads: the same
    assert store.fingerprint(course.root, A, "s", "cpu=1") == changed
    nb = json.loads(src.read_text())
    test = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("points"))
    test["metadata"]["nbgrader"]["points"] += 1  # a test cell's points: graded again
    src.write_text(json.dumps(nb))
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

    tools_on_path()  # a new gradebook runs alembic
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
        Outcome("ann", A, "graded", score=13, max_score=14, needs_manual=1),
        Outcome(
            "bob", A, "graded", "timed out: q3-answer used more than 3 s of CPU", 11, 14,
            code="timed_out",
        ),
        Outcome("cy", A, "ungradable", "f.ipynb: invalid JSON (x)", code="invalid_json"),
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
    """Does the summary (the command line's) give every score and say who could not be
    graded and why, and the exit status reflect it?"""
    outcomes = _outcomes()
    out = io.StringIO()
    report.print_summary(outcomes, Console(file=out, width=200))
    text = out.getvalue()
    assert "13 / 14" in text and "11 / 14" in text and "1 pt to grade by hand" in text
    assert "timed out: q3-answer used more than 3 s of CPU" in text
    last = text.strip().splitlines()[-1]
    assert last == "2 graded, 1 ungradable: cy (f.ipynb: invalid JSON (x))"
    assert report.exit_status(outcomes) == 1
    assert report.exit_status(outcomes[:2]) == 0


# --- speed-ups that must not change results ----------------------------------------------


def _page_notebook() -> nbformat.NotebookNode:
    """A notebook with what feedback pages hold: code, markdown, an image, an error."""
    import base64

    png = base64.b64encode(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
        )
    ).decode()
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    nb.cells = [
        v4.new_markdown_cell("# Title\n\nSome *text* and `<img>` in code; <b>html</b>."),
        v4.new_code_cell(
            "x = 1 < 2",
            outputs=[
                v4.new_output("display_data", data={"image/png": png, "text/plain": "fig"}),
                v4.new_output(
                    "display_data",
                    data={"text/html": '<div class="x"><img src="a.png" alt="given"></div>'},
                ),
                v4.new_output("stream", name="stdout", text="<img src=nope> as text\n"),
                v4.new_output("error", ename="E", evalue="v", traceback=["\x1b[31mE: v\x1b[0m"]),
            ],
        ),
    ]
    return nb


@pytest.mark.parametrize("template", ["classic", "lab"])
def test_feedback_pages_are_the_same_document_as_nbconverts(template):
    from bs4 import BeautifulSoup
    from nbconvert.exporters import HTMLExporter

    from autograder.batch.speedups import NO_ALT, CachedHTMLExporter

    nb = _page_notebook()
    theirs, _ = HTMLExporter(template_name=template).from_notebook_node(nb)
    ours, _ = CachedHTMLExporter(template_name=template).from_notebook_node(nb)
    assert NO_ALT in ours and 'alt="given"' in ours
    assert str(BeautifulSoup(ours, "html.parser")) == str(BeautifulSoup(theirs, "html.parser"))


def test_remembered_markdown_is_what_nbconvert_renders_and_follows_attachments():
    """Is a Markdown cell rendered once per class still the page nbconvert would write,
    and does a cell with the same text but other attachments get its own rendering?"""
    from bs4 import BeautifulSoup
    from nbconvert.exporters import HTMLExporter

    from autograder.batch import speedups

    v4 = nbformat.v4

    def page(attachment: str) -> nbformat.NotebookNode:
        nb = _page_notebook()
        cell = v4.new_markdown_cell("Look: ![pic](attachment:p.png) and $x^2$.")
        cell.attachments = {"p.png": {"image/png": attachment}}
        nb.cells.append(cell)
        return nb

    speedups.clear_caches()
    for data in ("QUFBQQ==", "QUFBQQ==", "QkJCQg=="):
        nb = page(data)
        theirs, _ = HTMLExporter().from_notebook_node(nb)
        ours, _ = speedups.CachedHTMLExporter().from_notebook_node(nb)
        assert f"data:image/png;base64,{data}" in ours
        assert str(BeautifulSoup(ours, "html.parser")) == str(BeautifulSoup(theirs, "html.parser"))
    # two Markdown cells, the second in two versions: three renderings remembered
    assert speedups.cache_sizes()["markdown"] == 3


SCHEMA_WHERE_MISSING = """
import os, sys
from pathlib import Path
from nbgrader.api import Gradebook
from sqlalchemy import MetaData
from autograder.batch import speedups
from autograder.core.nbgrader_io import tools_on_path

tools_on_path()  # nbgrader asks `alembic` for the version of a new file
speedups.install()
calls = []
real = MetaData.create_all
def counting(self, *args, **kwargs):
    calls.append(1)
    return real(self, *args, **kwargs)
MetaData.create_all = counting
top = Path(sys.argv[1])
def open_and_add(name, student):
    with Gradebook(f"sqlite:///{top / name}") as gb:
        gb.add_student(student)
        return len(gb.students)
assert [open_and_add("one.db", s) for s in "abc"] == [1, 2, 3]
assert open_and_add("two.db", "a") == 1
assert len(calls) == 2, calls  # once for one.db, once for two.db
os.remove(top / "one.db")  # made again: the new file gets its schema
assert open_and_add("one.db", "z") == 1
assert len(calls) == 3, calls
print("ok")
"""


def test_a_gradebook_schema_is_created_only_where_it_is_missing(tmp_path):
    """Do openings of a gradebook that has nbgrader's schema skip re-creating it, while
    a new file (another, or one deleted and made again) still gets its tables? (In a
    fresh process: the shims are for grading workers only.)"""
    out = subprocess.run(
        [sys.executable, "-c", SCHEMA_WHERE_MISSING, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    for name in ("one.db", "two.db"):
        tables = sqlite3.connect(tmp_path / name).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        assert {"student", "grade", "assignment"} <= {t for (t,) in tables}


def test_accessible_leaves_scripts_and_existing_attributes_alone():
    from autograder.batch.speedups import NO_ALT, accessible

    page = (
        '<script>var s = "<img src=x>";</script><img src="a"><img alt="" src="b"/>'
        '<div class="jp-Cell-inputWrapper other">'
        '<div class="jp-OutputArea-output" tabindex="-1"><div class="jp-Cell">'
    )
    out, missing = accessible(page)
    assert missing == 1
    assert '<script>var s = "<img src=x>";</script>' in out
    assert f'<img alt="{NO_ALT}" src="a">' in out and '<img alt="" src="b"/>' in out
    assert '<div class="jp-Cell-inputWrapper other" tabindex="0">' in out
    assert 'tabindex="-1"' in out and '<div class="jp-Cell">' in out


def test_grading_kernels_skip_hidden_checks_only(monkeypatch):
    import importlib

    from autograder import assignments

    calls = []

    def check_thing(fn, *, hidden=False):
        calls.append(hidden)
        fn()

    def helper(x):
        return x

    ns = {"check_thing": check_thing, "helper": helper}
    assignments.defer_hidden(ns)  # not grading: every call runs
    ns["check_thing"](lambda: None, hidden=True)
    assert calls == [True]
    calls.clear()
    ns = {"check_thing": check_thing, "helper": helper}
    monkeypatch.setenv(assignments.HIDDEN_BY_GRADER, "1")
    assignments.defer_hidden(ns)
    ns["check_thing"](lambda: None)
    assert ns["check_thing"](lambda: 1 / 0, hidden=True) is None
    assert calls == [False] and ns["helper"] is helper
    # the course's own modules take the same road
    a01 = importlib.reload(importlib.import_module("autograder.assignments.a01"))
    try:
        assert a01.check_gradient(None, hidden=True) is None
        with pytest.raises(Exception, match="not a function"):
            a01.check_gradient(None)
    finally:
        monkeypatch.delenv(assignments.HIDDEN_BY_GRADER)
        importlib.reload(a01)


def test_a_failed_check_is_stored_in_history_as_its_own_message():
    from IPython.core.interactiveshell import InteractiveShell

    from autograder.checking.feedback import CheckFailed

    shell = InteractiveShell.instance()
    shell.history_manager.enabled = False
    result = shell.run_cell(
        "from autograder.checking.feedback import CheckFailed\n"
        "raise CheckFailed('Q1 thing', 'wrong values', ['detail'])",
        store_history=True,
    )
    assert isinstance(result.error_in_exec, CheckFailed)
    stored = shell.history_manager.exceptions[result.execution_count]
    assert stored["ename"] == "CheckFailed"
    text = "\n".join(stored["traceback"])
    assert "Q1 thing: wrong values" in text and "detail" in text
    assert "Traceback" not in text and "raise CheckFailed" not in text


def test_the_grading_channel_takes_only_answers_to_what_it_asked():
    import json
    import socket

    from autograder.judge.transport import Channel, RemoteError

    ours, kernel = socket.socketpair()
    kernel.sendall(b'{"id": 1, "ok": "forged ahead of time"}\n')  # before anything was asked
    channel = Channel(ours, timeout=5)
    channel.next_id = 1  # the forged line names id 1; the first request is id 2
    kernel.sendall(b'{"id": 2, "ok": 42}\n')
    assert channel.request({"op": "getattr", "target": "x"})["ok"] == 42
    sent = json.loads(kernel.makefile("rb").readline())
    assert sent["id"] == 2 and sent["target"] == "x"
    kernel.sendall(b"[1, 2]\n")  # not a reply at all
    with pytest.raises(RemoteError, match="no result"):
        channel.request({"op": "getattr", "target": "y"})
    with pytest.raises(RemoteError, match="no result"):  # broken for good
        channel.request({"op": "getattr", "target": "z"})
    kernel.close()
    channel.close()


def test_the_grading_channel_refuses_oversized_replies_and_silence():
    import socket

    from autograder.judge.transport import Channel, RemoteError

    ours, kernel = socket.socketpair()
    channel = Channel(ours, timeout=0.5)
    channel.MAX_REPLY = 1000
    kernel.sendall(b'{"id": 1, "ok": "' + b"x" * 5000 + b'"}\n')
    with pytest.raises(RemoteError, match="too large"):
        channel.request({"op": "getattr", "target": "x"})
    ours2, kernel2 = socket.socketpair()
    silent = Channel(ours2, timeout=0.3)
    with pytest.raises(RemoteError, match="timed out"):
        silent.request({"op": "getattr", "target": "x"})
    for s in (kernel, kernel2):
        s.close()
    channel.close()
    silent.close()


class _KernelInProcess:
    """A grading channel whose far end is the kernel side's own request handler, run
    here on a namespace of 'student' functions (replies JSON-encoded, as sent)."""

    def __init__(self, monkeypatch, namespace: dict):
        import json

        from autograder.kernel import remote

        monkeypatch.setattr(remote, "user_namespace", lambda: namespace)
        self.handle = lambda req: json.loads(json.dumps(remote.handle(json.loads(json.dumps(req)))))
        self.requests = 0

    def request(self, req: dict) -> dict:
        self.requests += 1
        return self.handle(req)


def _ratio_student(calls: list, *, raise_on: int | None = None, warn_on: int | None = None):
    import warnings

    import torch

    def matches_ratio(grad, a, fa):
        calls.append(len(calls))
        if len(calls) == raise_on:
            raise ValueError("shapes differ")
        if len(calls) == warn_on:
            warnings.warn("a warning of the second call", UserWarning, stacklevel=1)
        return bool(torch.allclose(grad, fa / a))

    return matches_ratio


def test_a_batch_of_calls_gives_what_calls_one_by_one_give_in_one_round_trip(monkeypatch):
    import torch

    from autograder.checking.checks import call, call_each
    from autograder.judge.transport import RemoteObject, Session

    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    triples = [(k * a / a, a, k * a) for k in (1.0, 2.0, 3.0)]
    triples[1] = (triples[1][0] + 1, a, triples[1][2])  # a wrong gradient
    results = {}
    for how in ("one by one", "batch", "in the kernel"):
        calls: list = []
        student = _ratio_student(calls, warn_on=2)
        channel = _KernelInProcess(monkeypatch, {"matches_ratio": student})
        fn = RemoteObject(Session(run=None, channel=channel), "matches_ratio")
        if how == "one by one":
            got = [call("Q", fn, *t, again=False) for t in triples]
        elif how == "batch":
            got = call_each("Q", fn, triples)
        else:  # the visible check: the student's own function, no grader in between
            got = call_each("Q", student, triples)
        results[how] = ([r for r, _ in got], [[str(w.message) for w in c] for _, c in got])
        assert len(calls) == 3
        if how == "batch":
            assert channel.requests == 1
    assert results["one by one"] == results["batch"] == results["in the kernel"]
    assert results["batch"] == ([True, False, True], [[], ["a warning of the second call"], []])


def test_a_batch_stops_where_a_call_raises_and_reports_that_call(monkeypatch):
    import torch

    from autograder.checking.checks import call_each
    from autograder.checking.feedback import CheckFailed
    from autograder.judge.transport import RemoteObject, Session

    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    calls: list = []
    channel = _KernelInProcess(monkeypatch, {"matches_ratio": _ratio_student(calls, raise_on=2)})
    fn = RemoteObject(Session(run=None, channel=channel), "matches_ratio")
    with pytest.raises(CheckFailed) as failed:
        call_each("Q4", fn, [(a, a, a)] * 5)
    assert len(calls) == 2  # the kernel made no call after the one that raised
    text = str(failed.value)
    assert "`matches_ratio` raised ValueError" in text and "shapes differ" in text


@pytest.mark.parametrize(
    "forged",
    [{"each": []}, {"each": [{"ok": True}]}, {"each": "x"}, {"ok": True}, {"each": [1, 2, 3]}],
)
def test_a_batch_answered_with_fewer_results_than_calls_is_no_result(monkeypatch, forged):
    """A kernel that answers a batch with fewer results (none raising) would otherwise
    have the checks count fewer rejections: it is a failed call, as a forged reply is."""
    import torch

    from autograder.checking.checks import call_each
    from autograder.checking.feedback import CheckFailed
    from autograder.judge.transport import RemoteObject, Session

    channel = _KernelInProcess(monkeypatch, {})
    channel.handle = lambda req: forged
    fn = RemoteObject(Session(run=None, channel=channel), "matches_ratio")
    a = torch.ones(2, dtype=torch.float64)
    with pytest.raises(CheckFailed, match="KernelError"):
        call_each("Q4", fn, [(a, a, a)] * 3)


def test_edited_locked_and_test_cells_are_named(tmp_path):
    from autograder.batch import tamper

    release = tmp_path / "release.ipynb"
    v4 = nbformat.v4

    def nb(cells):
        book = v4.new_notebook()
        book.cells = cells
        return book

    def cell(source, **meta):
        c = v4.new_code_cell(source)
        c.metadata["nbgrader"] = meta
        return c

    original = [
        cell("import torch", grade_id="setup", locked=True, grade=False, solution=False),
        cell("raise NotImplementedError", grade_id="a1", solution=True, grade=False),
        cell("check(f)", grade_id="t1", grade=True, points=2, locked=True, solution=False),
        cell("check(g)", grade_id="t2", grade=True, points=1, locked=True, solution=False),
        cell("check(h)", grade_id="t3", grade=True, points=1, locked=True, solution=False),
    ]
    nbformat.write(nb(original), release)
    honest = tmp_path / "honest.ipynb"
    answered = list(original)
    answered[1] = cell("def f(x):\n    return 2 * x", grade_id="a1", solution=True, grade=False)
    answered[2] = cell(
        "check(f)", grade_id="t1", grade=True, points=2.0, locked=True, solution=False
    )  # an editor wrote 2 back as 2.0
    nbformat.write(nb(answered), honest)
    assert tamper.edited_cells(release, honest) == []

    hostile = tmp_path / "hostile.ipynb"
    changed = list(original)
    changed[2] = cell("pass", grade_id="t1", grade=True, points=2, locked=True, solution=False)
    changed[3] = cell(
        "check(g)", grade_id="t2", grade=False, points=100, locked=True, solution=False
    )
    del changed[4]
    nbformat.write(nb(changed), hostile)
    assert tamper.edited_cells(release, hostile) == [
        "t1 edited",
        "t2 metadata changed",
        "t3 deleted",
    ]
    # A submission that cannot be read any more (another kernel wrote into it, say)
    # is not blamed for deleting every cell.
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    assert tamper.edited_cells(release, broken) == []


AUDITED = r"""
import os, subprocess, sys
sys.path.insert(0, {root!r})
from autograder.batch import audit

spec = {spec!r}
audit.install(spec, audit.open_fifo(spec))
import json as _json
os.write = lambda *a: 0          # patched after the hook was installed: no effect
_json.dumps = lambda *a, **k: "" # idem
open({outside!r} + "/before-first-cell", "a").close()  # the kernel starting: not reported
cell = f"/tmp/ipykernel_{{os.getpid()}}/123.py"
exec(compile("pass", cell, "exec"))               # the first notebook cell
try:
    open(cell)                                    # its code read back for a traceback
except OSError:
    pass
open("mine.txt", "w").write("x")                 # its own directory
open("/usr/lib/os-release").close() if os.path.exists("/usr/lib/os-release") else None
open("/proc/self/status").read()
open("/proc/cpuinfo").read()
for p in ({outside!r} + "/secret.txt", "../escape.txt"):
    try:
        open(p).read()
    except OSError:
        pass
os.listdir({outside!r})
os.listdir({outside!r})                           # once is enough
try:
    os.listdir("/proc/1/cwd")
except OSError:
    pass
subprocess.run(["cat", {outside!r} + "/secret.txt"], capture_output=True)
sys.path.insert(0, {outside!r})
try:
    import surely_not_a_module                    # importlib searching: not reported
except ImportError:
    pass
for i in range(50):                               # at most MAX_REPORTS distinct reports
    try:
        open({outside!r} + f"/many-{{i}}")
    except OSError:
        pass
"""


def test_the_audit_hook_reports_reads_outside_the_kernels_directory(tmp_path):
    """A real interpreter with the hook installed as a forked kernel gets it: reads and
    listings outside its directory, /proc of other processes and paths on a command line
    are reported once each, from the first cell on, whatever the code patches later."""
    import pathlib

    from autograder.batch import audit

    root = str(pathlib.Path(__file__).resolve().parent.parent)
    own = tmp_path / "kernel"
    own.mkdir()
    outside = tmp_path / "course"
    outside.mkdir()
    (outside / "secret.txt").write_text("answers")
    watch = audit.Watch()
    try:
        spec = watch.start(str(own))
        script = AUDITED.format(root=root, spec=spec, outside=str(outside))
        subprocess.run([sys.executable, "-c", script], cwd=own, check=True, timeout=60)
        reports = watch.finish()
        # A report written after finish (a surviving process) reaches nobody.
        assert watch.finish() == []
    finally:
        watch.close()
    secret = str(outside / "secret.txt")
    assert reports[:6] == [
        f"open {secret}",
        "open ../escape.txt",
        f"os.listdir {outside}",
        "os.listdir /proc/1/cwd",
        f"subprocess.Popen {secret}",
        f"open {outside}/many-0",
    ]
    assert len(reports) == audit.MAX_REPORTS
    assert not any("before-first-cell" in r or "mine.txt" in r for r in reports)
    assert not any("surely_not_a_module" in r for r in reports)


def test_audit_reports_are_read_as_untrusted_text():
    from autograder.batch import audit

    data = (
        b'{"event": "open", "path": "/x/\\u001b[31mred\\n"}\n'
        b"not json\n"
        b'{"event": "open"}\n'
        b'{"event": "open", "path": "' + b"a" * 500 + b'"}\n'
        b'{"event": "open", "path": "/x/\\u001b[31mred\\n"}\n'
    )
    reports = audit.parse(data)
    assert reports[0] == "open /x/\\u001b[31mred\\n"  # control characters escaped
    assert len(reports) == 2  # malformed lines skipped, repeats merged
    assert len(reports[1]) <= len("open ") + audit.MAX_PATH


def test_an_executor_that_grades_one_assignment_at_a_time_still_runs_mixed_jobs():
    """An executor that implements only `run` gets every (assignment, student) job of a
    multi-assignment run, one assignment at a time, with that assignment's settings."""
    from autograder.batch.executor import Executor
    from autograder.core.request import Settings

    class OneAtATime(Executor):
        def __init__(self):
            self.calls = []

        def run(self, settings, students):
            students = list(students)
            self.calls.append((settings.assignment, students))
            for s in students:
                yield Outcome(s, settings.assignment, "graded", "")

    ex = OneAtATime()
    settings = Settings(course_dir="/nowhere", assignment="a1")
    jobs = [("a2", "x"), ("a1", "y"), ("a2", "z")]
    outcomes = list(ex.run_jobs(settings, jobs))
    assert ex.calls == [("a2", ["x", "z"]), ("a1", ["y"])]
    assert sorted((o.assignment, o.student) for o in outcomes) == sorted(jobs)


def test_a_custom_executor_gets_every_assignment_in_one_queue(course):
    """Grading several assignments with an executor of one's own: does it get one queue of
    every (assignment, student) job, once, and each outcome come back under its own
    assignment, in roster order?"""
    from autograder.batch import coordinator
    from autograder.batch.executor import Executor
    from autograder.core.request import GradeRequest

    course.submit("ada", A, course.release_nb(A))
    course.submit("bo", A, raw=b"not json")
    other = nbformat.read(str(course.root / "source" / "02_other" / "02_other.ipynb"), 4)
    course.submit("ada", "02_other", other, name="02_other.ipynb")

    class Recording(Executor):
        def __init__(self):
            self.queues = []

        def run(self, settings, students):  # pragma: no cover - run_jobs is overridden
            raise AssertionError("one queue expected")

        def run_jobs(self, settings, jobs):
            jobs = list(jobs)
            self.queues.append(jobs)
            for assignment, student in jobs:
                yield Outcome(student, assignment, "graded", score=1, max_score=1)

    executor = Recording()
    request = GradeRequest(
        course_dir=course.root, assignments=(A, "02_other"), timeout=1.0, progress=False
    )
    outcomes = coordinator.grade(request, executor=executor)
    assert executor.queues == [[(A, "ada"), ("02_other", "ada")]]  # bo: invalid, not run
    assert [(o.assignment, o.student, o.status) for o in outcomes] == [
        (A, "ada", "graded"),
        (A, "bo", "ungradable"),
        ("02_other", "ada", "graded"),
    ]


def test_failures_are_classified_from_the_runs_then_the_log():
    """One classifier: a kernel killed after ignoring an interrupt, then a kernel that
    died, then what nbgrader's error and log say, then the log's last line."""
    from autograder.core.failures import classify
    from autograder.core.request import Settings
    from autograder.core.runs import CellEvent, NotebookRun

    settings = Settings(course_dir="/nowhere", assignment=A, cpu_limit=3, wall_limit=8)
    killed = NotebookRun(events=[CellEvent(4, "q4-answer", "killed", 5.0, 6.0, "cpu")])
    died = NotebookRun(died_in="q2-answer", exit_status=-9)
    failed = {"success": False, "error": "DeadKernelError: Kernel died", "log": ""}
    assert classify(failed, [killed, died], settings) == (
        "timed_out",
        "timed out: q4-answer used more than 3 s of CPU and ignored the interrupt (kernel killed)",
    )
    assert classify(failed, [died], settings) == (
        "kernel_died",
        "kernel died in q2-answer: killed by SIGKILL (signal 9), sent by the kernel or a "
        "process of its own: the grader sent none and no limit was reached",
    )
    assert classify(failed) == ("kernel_died", "kernel died")
    checksums = {"success": False, "log": "[AutogradeApp] Inconsistent checksums for cell"}
    assert classify(checksums) == ("changed_cells", "locked or test cells changed")
    other = {"success": False, "error": "Traceback ...\nValueError: bad thing\n\n"}
    assert classify(other) == ("autograde_failed", "autograde failed: ValueError: bad thing")
    assert classify({"success": False}) == ("autograde_failed", "autograde failed")


def test_kernel_clock_counts_live_descendants(tmp_path):
    """A cell's CPU time includes what processes it started are using before they end:
    a grandchild burning CPU while its parents wait counts, and the descendants found
    are the ones psutil finds by scanning every process."""
    import os
    import signal
    import time

    import psutil

    from autograder.batch.execution import KernelClock

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(60)"
    middle = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {burn!r}]).wait()"
    top = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {middle!r}])",
        ],
        start_new_session=True,
    )
    try:
        clock = KernelClock(top.pid)
        deadline = time.monotonic() + 30
        cpu = 0.0
        while time.monotonic() < deadline:
            cpu = clock.cpu()
            if cpu >= 0.6:
                break
            time.sleep(0.05)
        assert cpu >= 0.6, f"only {cpu:.2f} CPU-s seen"
        ours = sorted(p.pid for p in clock.descendants())
        theirs = sorted(p.pid for p in psutil.Process(top.pid).children(recursive=True))
        assert len(ours) == 2 and ours == theirs
    finally:
        os.killpg(top.pid, signal.SIGKILL)
        top.wait()


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    digits=st.integers(0, 6),
    offset=st.one_of(st.none(), st.integers(-14 * 60, 14 * 60)),
    colon=st.booleans(),
)
def test_message_timestamps_read_as_jupyter_client_reads_them(when, digits, offset, colon):
    """The worker's faster reading of kernel message timestamps gives the datetimes
    jupyter_client's own gives, for every form its pattern accepts, and leaves other
    strings alone."""
    import warnings

    from jupyter_client import jsonutil

    from autograder.batch import speedups

    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{when.microsecond:06d}"[:digits]
    if offset is None:
        text += "Z"
    else:
        sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
        text += f"{sign}{minutes // 60:02d}{':' if colon else ''}{minutes % 60:02d}"
    header = {"date": text, "msg_id": "abc", "nested": [{"date": text}], "n": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours, theirs = speedups.extract_dates(header), jsonutil.extract_dates(header)
    assert ours == theirs
    assert ours["date"].utcoffset() == theirs["date"].utcoffset()
    assert ours["date"].isoformat() == theirs["date"].isoformat()
    assert speedups.extract_dates({"date": "2026-11-30"}) == {"date": "2026-11-30"}


def _scored_gradebook(path, cells: int):
    """A gradebook with one notebook of `cells` grade cells (cell i: i + 1 points) and
    ada's submission of it, cell i scored i / 2 automatically, cell 0 by hand: 5."""
    from nbgrader.api import Gradebook

    gb = Gradebook(f"sqlite:///{path}")
    gb.add_assignment("a")
    gb.add_notebook("nb", "a")
    for i in range(cells):
        gb.add_grade_cell(f"c{i}", "nb", "a", max_score=i + 1, cell_type="code")
    gb.add_student("ada")
    gb.add_submission("a", "ada")
    for g in gb.find_submission_notebook("nb", "a", "ada").grades:
        i = int(g.cell.name[1:])
        g.auto_score = i / 2
        g.manual_score = 5.0 if i == 0 else None
    gb.db.commit()
    return gb


def test_read_scores_reads_every_cells_score_in_queries_that_do_not_grow_with_cells(
    tmp_path, monkeypatch
):
    """read_scores: each cell's score (by hand over automatic) and maximum, the total, and
    as many SQL statements for 12 cells as for 2 (no query per grade)."""
    import sqlalchemy

    from autograder.core.nbgrader_io import read_scores

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent), prepend=os.pathsep)  # alembic
    counted = {}
    for cells in (2, 12):
        gb = _scored_gradebook(tmp_path / f"{cells}.db", cells)
        statements: list[str] = []

        def note(conn, cursor, statement, *args, into=statements):
            into.append(statement)

        gb.db.expire_all()
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", note)
        try:
            outcome = read_scores(None, "a", "ada", gb)
        finally:
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", note)
            gb.close()
        expected = {f"c{i}": (5.0 if i == 0 else i / 2, float(i + 1)) for i in range(cells)}
        assert outcome.cells == expected
        assert outcome.score == sum(score for score, _ in expected.values())
        assert outcome.max_score == sum(top for _, top in expected.values())
        counted[cells] = len(statements)
    assert counted[12] == counted[2], counted
