"""The trusted judge (autograder/judge/) and the tamper evidence it leaves.

- A test cell is judged right after it runs in the kernel: what a later cell does to the
  notebook's objects (the model of 04, a function redefined) cannot change its verdict.
- A submission that disables the kernel side of trusted grading is graded: the checks it
  blocked score nothing, and it is flagged with what was disabled.
- The transport, the verdicts and the feedback banner, unit by unit.
"""

from __future__ import annotations

import html
import json
import socket

import nbformat
import pytest

from autograder import notebooks
from autograder.judge.transport import (
    Channel,
    HelperBlocked,
    RemoteError,
    RemoteObject,
    Session,
)
from autograder.judge.verdict import TAMPER_MIME
from tests.conftest import Course
from tests.hostile import ASSIGNMENT, HOSTILE, SABOTAGE, notebook

# --- a later cell cannot change an earlier verdict ------------------------------------------

A04 = "04_parametrized"
Q3 = ("q3-1-loop", "q3-2-vectorized")  # the test cells that take the notebook's model

# Code put at the end of the q4 answer cell, after Q3's test cells have run.
LATER = {
    "float_later": "model.float()\n",
    "mutated_later": "model.weight.data = torch.zeros(1, 3)\n",
    "rebound_later": "model = None\n",
    "redefined_later": "def per_sample_grads(model, x):\n    return {}\n",
}


def _marks(nb) -> dict[str, dict]:
    """grade id -> tamper mark of the autograded notebook's marked test cells."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if TAMPER_MIME in o.get("data", {}):
                out[cell.metadata["nbgrader"]["grade_id"]] = o["data"][TAMPER_MIME]
    return out


@pytest.fixture(scope="module")
def later(tmp_path_factory):
    course = Course.create(tmp_path_factory.mktemp("later"), [A04])
    q4 = notebooks.solutions(course.source_nb(A04))["q4-answer"]
    q3 = notebooks.solutions(course.source_nb(A04))["q3-answer"]
    for name, code in LATER.items():
        course.submit(name, A04, course.solved(A04, **{"q4-answer": q4 + "\n\n" + code}))
    # the same changes before Q3's tests: they see them
    for name in ("float", "mutated"):
        code = q3 + "\n\n" + LATER[f"{name}_later"]
        course.submit(f"{name}_before", A04, course.solved(A04, **{"q3-answer": code}))
    return course, course.grade(A04, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LATER))
def test_a_later_cell_cannot_change_an_earlier_verdict(later, name):
    """A correct notebook whose later cell converts, changes or rebinds the model that
    Q3's test cells were given (or redefines an answer they checked): do those cells keep
    their points, with no tamper flag?"""
    course, outcomes = later
    outcome = outcomes[name]
    full = course.auto_cells(A04)
    assert outcome.status == "graded", outcome.reason
    assert {k: v for k, v in outcome.cells.items() if k in Q3} == {
        k: (full[k], full[k]) for k in Q3
    }
    assert outcome.score == sum(full.values())
    assert outcome.code == "" and "tamper" not in outcome.reason
    assert _marks(course.autograded_nb(name, A04)) == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["float_before", "mutated_before"])
def test_a_change_before_a_test_cell_is_what_that_cell_judges(later, name):
    """The same changes before Q3's test cells: the cells judge the model as it was when
    they ran, in the kernel and in the grader alike (points lost, no flag; a model whose
    weight no longer fits its layer is graded, not a grading error)."""
    course, outcomes = later
    outcome = outcomes[name]
    assert outcome.status == "graded", outcome.reason
    assert [outcome.cells[k][0] for k in Q3] == [0.0, 0.0]
    assert outcome.code == "" and _marks(course.autograded_nb(name, A04)) == {}


# --- sabotage of the kernel side: graded, blocked checks zero, flagged ----------------------

# What the flag names, per technique.
DISABLED = {
    "delete_kernel_helper": "AttributeError",
    "break_kernel_helper": "its channel to the grader broke",
    "hide_kernel_module": "None in sys.modules",
    "fake_autograder_package": "'autograder' is not a package",
    "filter_run_cell": "returned without connecting",
    "drop_grader_input": "returned without connecting",
}
FROM = "q3-answer"  # the mid-notebook variants disable the helper in this answer cell


def _test_cells_after(course: Course, answer: str) -> list[str]:
    """The automatically graded cells that come after the answer cell `answer`."""
    ids = [
        c.metadata["nbgrader"]["grade_id"]
        for c in course.source_nb(ASSIGNMENT).cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    ]
    auto = course.auto_cells(ASSIGNMENT)
    return [g for g in ids[ids.index(answer) :] if g in auto]


@pytest.fixture(scope="module")
def sabotaged(tmp_path_factory):
    course = Course.create(tmp_path_factory.mktemp("sabotage"), [ASSIGNMENT])
    course.submit("victim", ASSIGNMENT, course.solved(ASSIGNMENT))
    solution = notebooks.solutions(course.source_nb(ASSIGNMENT))[FROM]
    for name in SABOTAGE:
        course.submit(name, ASSIGNMENT, notebook(course, name))  # wrong answers throughout
        code = HOSTILE[name].code + "\n\n" + solution
        course.submit(f"{name}-mid", ASSIGNMENT, course.solved(ASSIGNMENT, **{FROM: code}))
    return course, course.grade(ASSIGNMENT, progress=False)


def test_every_sabotage_kind_is_named_here():
    assert set(DISABLED) == set(SABOTAGE)


@pytest.mark.slow
@pytest.mark.parametrize("name", SABOTAGE)
def test_a_disabled_grading_helper_is_graded_and_flagged(sabotaged, name):
    """A wrong notebook that disables the kernel side of trusted grading: graded (not
    "ungradable"), nothing scored, flagged with what it disabled, on the page too."""
    course, outcomes = sabotaged
    outcome = outcomes[name]
    assert outcome.status == "graded", (HOSTILE[name].about, outcome.reason)
    assert outcome.score == 0
    assert outcome.code == "tampered"
    assert "grading helper was disabled" in outcome.reason, outcome.reason
    assert DISABLED[name] in outcome.reason, outcome.reason
    page = course.feedback_html(name, ASSIGNMENT)
    assert page.count('class="autograder-tampered"') == 1
    assert html.escape(outcome.reason) in page


@pytest.mark.slow
@pytest.mark.parametrize("name", SABOTAGE)
def test_only_the_checks_a_disabled_helper_blocked_score_nothing(sabotaged, name):
    """A correct notebook that disables the helper in Q3's answer cell: the test cells
    before keep their points (judged before it ran); every test cell after scores
    nothing, is marked blocked with what was disabled, and says why in its output."""
    course, outcomes = sabotaged
    outcome = outcomes[f"{name}-mid"]
    assert outcome.status == "graded", outcome.reason
    auto = course.auto_cells(ASSIGNMENT)
    blocked = _test_cells_after(course, FROM)
    assert {k: v[0] for k, v in outcome.cells.items() if k in auto} == {
        k: 0.0 if k in blocked else auto[k] for k in auto
    }
    assert outcome.code == "tampered" and DISABLED[name] in outcome.reason, outcome.reason
    assert "score nothing: " + ", ".join(blocked[:5]) in outcome.reason
    marks = _marks(course.autograded_nb(f"{name}-mid", ASSIGNMENT))
    assert sorted(marks) == sorted(blocked)
    assert all(any(DISABLED[name] in w for w in m["blocked"]) for m in marks.values())
    messages = course.messages(f"{name}-mid", ASSIGNMENT)
    assert "[tampered]" in messages[blocked[0]]
    assert outcomes["victim"].score == sum(auto.values()) and outcomes["victim"].code == ""


# --- the transport ----------------------------------------------------------------------------


def test_a_channel_the_kernel_closes_is_blocked_not_silence_or_size():
    """A line closed under the grader's request is the helper disabled; a kernel gone
    silent, or a reply too large, is no result without blame."""
    ours, kernel = socket.socketpair()
    kernel.close()
    with pytest.raises(HelperBlocked, match="no result") as closed:
        Channel(ours, timeout=5).request({"op": "getattr", "target": "x"})
    assert "channel to the grader broke" in closed.value.what
    ours2, kernel2 = socket.socketpair()
    silent = Channel(ours2, timeout=0.2)
    with pytest.raises(RemoteError, match="timed out") as quiet:
        silent.request({"op": "getattr", "target": "x"})
    assert not isinstance(quiet.value, HelperBlocked)
    ours3, kernel3 = socket.socketpair()
    big = Channel(ours3, timeout=5)
    big.MAX_REPLY = 100
    kernel3.sendall(b'{"id": 1, "ok": "' + b"x" * 500 + b'"}\n')
    with pytest.raises(RemoteError, match="too large") as large:
        big.request({"op": "getattr", "target": "x"})
    assert not isinstance(large.value, HelperBlocked)
    for s in (kernel2, kernel3):
        s.close()
    silent.close()
    big.close()


def _outputs(*outputs):
    return lambda code: [nbformat.from_dict(o) for o in outputs]


@pytest.mark.parametrize(
    ("outputs", "what"),
    [
        (
            [{"output_type": "error", "ename": "AttributeError", "evalue": "no serve"}],
            "its requests raised AttributeError: no serve",
        ),
        ([], "its requests ran without replying"),
        ([{"output_type": "stream", "name": "stdout", "text": "hi"}], "without replying"),
    ],
)
def test_a_request_the_kernel_does_not_answer_is_blocked(outputs, what):
    """Asked per request (no channel), a kernel execution that shows no reply is the
    helper disabled: the session keeps what was found, once."""
    session = Session(run=_outputs(*outputs))
    for _ in range(2):
        with pytest.raises(HelperBlocked, match="the kernel gave no result"):
            session.request({"op": "getattr", "target": "x"})
    assert len(session.blocked) == 1 and what in session.blocked[0]


def test_a_request_that_times_out_is_not_blocked():
    session = Session(run=_outputs({"output_type": "error", "ename": "CellTimeoutError"}))
    with pytest.raises(RemoteError, match="timed out") as err:
        session.request({"op": "getattr", "target": "x"})
    assert not isinstance(err.value, HelperBlocked) and session.blocked == []


def test_an_argument_the_kernel_cannot_give_becomes_a_stand_in():
    """A test cell's argument fetched from a kernel that gives no result is a stand-in
    (whose calls fail the same way), not an error that stops grading."""
    from autograder.judge.planning import fetch

    session = Session(run=_outputs())
    got = fetch(session, "model")
    assert isinstance(got, RemoteObject) and session.blocked


def test_the_sources_a_cell_is_judged_with_stop_at_that_cell():
    from autograder.judge.planning import defined_sources

    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [
        v4.new_code_cell("def f(x):\n    return x"),
        v4.new_code_cell("def f(x):\n    return 2 * x"),
    ]
    assert defined_sources(nb, 1)["f"].count("def f") == 1
    assert defined_sources(nb)["f"].count("def f") == 2


# --- verdicts ------------------------------------------------------------------------------------


def test_a_blocked_cell_fails_and_says_what_was_disabled():
    from autograder.judge.verdict import Verdict, assess, verdict_outputs

    verdict = Verdict(True, "")  # nothing reached the kernel, nothing failed
    flags = assess(verdict, passed_in_kernel=True, blocked=["X was deleted"], question_hint="q")
    assert not verdict.passed and verdict.failure.diagnoses[0].code == "tampered"
    assert len(flags) == 1 and "X was deleted" in flags[0] and "score nothing" in flags[0]
    outputs = verdict_outputs(verdict, flags, ["X was deleted"])
    mark = next(o for o in outputs if TAMPER_MIME in o.get("data", {}))["data"][TAMPER_MIME]
    assert mark == {"flags": flags, "blocked": ["X was deleted"]}
    assert outputs[-1]["output_type"] == "error"


def test_a_visible_check_that_passed_in_the_kernel_only_is_a_change():
    from autograder.checking.feedback import CheckFailed
    from autograder.judge.verdict import CHANGED, Verdict, assess

    def failed(hidden):
        return Verdict(False, "", CheckFailed("Q1", "differs", []), in_hidden=hidden)

    visible = failed(False)
    assert assess(visible, passed_in_kernel=True, blocked=[]) == [CHANGED]
    assert visible.failure.diagnoses[0].code == "tampered"
    assert assess(failed(True), passed_in_kernel=True, blocked=[]) == []
    assert assess(failed(False), passed_in_kernel=False, blocked=[]) == []
    assert assess(Verdict(True, ""), passed_in_kernel=True, blocked=[]) == []


# --- what the summary and the feedback say ---------------------------------------------------------


def _graded_cell(grade_id: str, outputs: list[dict]) -> dict:
    return {
        "cell_type": "code",
        "execution_count": 1,
        "id": grade_id,
        "metadata": {"nbgrader": {"grade": True, "grade_id": grade_id, "points": 1}},
        "outputs": outputs,
        "source": "a01.check(f)",
    }


def test_the_summary_names_changed_and_blocked_cells_apart(tmp_path):
    from autograder.batch import tamper

    nbformat.write(nbformat.v4.new_notebook(), str(_mkdir(tmp_path / "release" / "a" / "a.ipynb")))

    def marked(grade_id: str, mark: dict) -> dict:
        output = {"output_type": "display_data", "metadata": {}, "data": {TAMPER_MIME: mark}}
        return _graded_cell(grade_id, [output])

    blocked = {"flags": ["blocked"], "blocked": ["serve deleted"]}
    auto = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            marked("q1", {"flags": ["changed"]}),
            marked("q2", blocked),
            marked("q3", blocked),
            _graded_cell("q4", []),
        ],
    }
    path = _mkdir(tmp_path / "autograded" / "s" / "a" / "a.ipynb")
    path.write_text(json.dumps(auto))
    marks = tamper.runtime_marks(path)
    assert (marks.changed, marks.blocked, marks.what) == (["q1"], ["q2", "q3"], ["serve deleted"])
    said = tamper.describe(tmp_path, "a", "s")
    assert said.startswith("tampered: checks changed at run time (q1)")
    assert "grading helper was disabled (serve deleted)" in said
    assert said.endswith("score nothing: q2, q3")


def _mkdir(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _feedback_page(exporter_class, flags: str | None, nb) -> str:
    """A feedback page as the grading worker makes it: nbgrader's feedback converter's
    configuration, the flags set the way the worker sets them."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from autograder.batch import tamper

    cfg = Config()
    if flags is not None:
        tamper.flag_feedback(cfg, flags)
    converter = GenerateFeedback(coursedir=CourseDirectory(config=cfg), config=cfg)
    exporter = exporter_class(parent=converter, config=converter.config)
    resources = {"nbgrader": {"notebook": "nb", "score": 1, "max_score": 2, "late_penalty": 0}}
    return exporter.from_notebook_node(nb, resources=resources)[0]


def _small_notebook():
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell("# Q1"), v4.new_code_cell("f(1)")]
    return nb


@pytest.mark.parametrize("flags", [None, ""])
def test_an_unflagged_feedback_page_is_the_plain_one(flags):
    from autograder.batch.speedups import CachedHTMLExporter
    from autograder.batch.tamper import BANNER_CLASS, FeedbackExporter, offline_page

    nb = _small_notebook()
    page = _feedback_page(FeedbackExporter, flags, nb)
    assert page == offline_page(_feedback_page(CachedHTMLExporter, None, nb), nb)
    assert BANNER_CLASS not in page


def test_a_flagged_feedback_page_opens_with_the_banner():
    """The conversion itself puts the banner first in the page's body, the flags escaped:
    the page is the plain one with the banner inserted right after <body>."""
    from autograder.batch.speedups import CachedHTMLExporter
    from autograder.batch.tamper import FeedbackExporter, banner_html, offline_page

    nb = _small_notebook()
    flags = "tampered: checks changed at run time (q1 <b>) & 'more'"
    page = _feedback_page(FeedbackExporter, flags, nb)
    plain = offline_page(_feedback_page(CachedHTMLExporter, None, nb), nb)
    at = plain.index("<body>") + len("<body>")
    assert page == plain[:at] + banner_html(flags) + plain[at:]
    assert "Flagged for review.</strong> " + html.escape(flags) + "</div>" in page
    assert "<b>)" not in page
