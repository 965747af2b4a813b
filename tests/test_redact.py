"""Course secrets kept out of feedback (autograder/batch/redact.py), on this course's own
instructor notebooks; the end-to-end case (a kernel printing a solution line, graded) is
in tests/test_sandbox.py."""

from __future__ import annotations

import json

import nbformat
import pytest

from autograder import notebooks
from autograder.batch import redact
from autograder.core.failures import classify, code_for, describe
from autograder.core.request import Settings
from autograder.core.runs import CellEvent, NotebookRun
from tests.conftest import ROOT, Course

A, LATER = "01_derivatives", "02_chain_rule"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return Course.create(tmp_path_factory.mktemp("redact"), [A, LATER])


@pytest.fixture(scope="module")
def secrets(course):
    return redact.Secrets(course.root)


def _block_lines(course, assignment: str, marker: str) -> list[str]:
    """Lines inside `marker` blocks of the assignment's instructor notebook."""
    out = []
    for cell in course.source_nb(assignment).cells:
        inside = False
        for line in cell.source.splitlines():
            if line.strip().startswith(f"### BEGIN {marker}"):
                inside = True
            elif line.strip().startswith(f"### END {marker}"):
                inside = False
            elif inside:
                out.append(line)
    return out


def test_solution_and_hidden_test_lines_of_every_assignment_are_secret(course, secrets):
    for assignment in (A, LATER):
        solution = [x for x in _block_lines(course, assignment, "SOLUTION") if len(x.strip()) > 30]
        hidden = _block_lines(course, assignment, "HIDDEN TESTS")
        assert solution and hidden
        assert any(" ".join(x.split()) in secrets.lines for x in solution)
        assert all(" ".join(x.split()) in secrets.lines for x in hidden)


def test_trivial_and_public_lines_are_not(course, secrets):
    released = "\n".join(c.source for c in course.release_nb(A).cells)
    for line in secrets.lines:
        assert len(line) >= redact.MIN_CHARS and any(ch.isalnum() for ch in line)
        assert line not in released.splitlines()
    assert "pass" not in secrets.lines and ")" not in secrets.lines


def test_a_line_is_found_as_printed_in_a_repr_or_inside_notebook_json(course, secrets):
    line = sorted(secrets.lines, key=len)[-1]
    own = frozenset()
    assert secrets.found_in(f"here: {line}  ", own)
    assert secrets.found_in(json.dumps({"source": [f"    {line}\n"]}), own)
    assert secrets.found_in(repr([line + "\n", "x"]), own)
    assert not secrets.found_in("nothing of the course here, just a long line", own)
    assert not secrets.found_in(line, frozenset({line}))  # the notebook's own code


def test_a_graded_notebook_is_scrubbed_in_place(course, secrets, tmp_path):
    later = [x for x in _block_lines(course, LATER, "SOLUTION") if len(x.strip()) > 30][0]
    nb = notebooks.read(ROOT / "release" / A / f"{A}.ipynb")
    cell = nb.cells[1]
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"before\n{later}\nafter\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(later)}),
        nbformat.v4.new_output("error", ename="E", evalue=later, traceback=[later]),
    ]
    path = tmp_path / f"{A}.ipynb"
    nbformat.write(nb, str(path))
    assert secrets.scrub_notebook(path) == 4
    text = path.read_text()
    assert later.strip() not in text
    assert "before" in text and "after" in text and redact.REDACTED in text
    nbformat.validate(nbformat.read(str(path), as_version=4))
    assert secrets.scrub_notebook(path) == 0  # nothing left to find
    assert redact.describe(4).startswith("its output reproduced the course's solutions")
    assert redact.describe(0) == ""


# --- the reasons given for how a kernel ended (no kernel needed) ---------------------------

SETTINGS = Settings(course_dir="/nowhere", assignment=A, cpu_limit=3, wall_limit=8)
FAILED = {"success": False, "error": "DeadKernelError: Kernel died", "log": ""}


def test_a_stall_is_named_as_such():
    stalled = CellEvent(2, "q2-answer", "interrupted", 0.01, 10.4, "stall")
    assert code_for([stalled]) == "stalled"
    assert code_for([CellEvent(2, "q2-answer", "interrupted", 3.1, 4.0, "cpu")]) == "timed_out"
    assert describe(stalled, SETTINGS, 10) == (
        "q2-answer was asleep or blocked (neither running nor waiting for a CPU) for more "
        "than 10 s, 0.01 s of CPU used in 10.4 s"
    )
    killed = NotebookRun(events=[CellEvent(4, "q4-answer", "killed", 0.0, 13.9, "stall")])
    code, reason = classify(FAILED, [killed], SETTINGS, stall_limit=10)
    assert code == "stalled" and reason.startswith("stalled: q4-answer was asleep")
    assert reason.endswith("and ignored the interrupt (kernel killed)")


def test_a_signal_is_the_kernels_own_unless_a_limit_explains_it():
    died = NotebookRun(died_in="q2-answer", exit_status=-9)
    evidence = "memory cgroup: 0 OOM kills, peak 300 MiB of 2 GiB"
    code, reason = classify(FAILED, [died], SETTINGS, evidence=evidence)
    assert code == "kernel_died"
    assert reason == (
        "kernel died in q2-answer: killed by SIGKILL (signal 9), sent by the kernel or a "
        f"process of its own: the grader sent none and no limit was reached ({evidence})"
    )
    hit = ["memory limit reached: used more than 2 GiB (killed)"]
    code, reason = classify(FAILED, [died], SETTINGS, limits=hit, evidence=evidence)
    assert code == "limit_exceeded"
    assert reason == f"kernel died in q2-answer: killed by SIGKILL (signal 9): {hit[0]}"
    xcpu = NotebookRun(died_in="q1-answer", exit_status=-24)
    code, reason = classify(FAILED, [xcpu], SETTINGS, limits=["CPU time limit reached"])
    assert (code, reason) == (
        "limit_exceeded",
        "kernel died in q1-answer: killed by SIGXCPU (signal 24): CPU time limit reached",
    )
    exited = NotebookRun(died_in="q3-answer", exit_status=3)
    assert classify(FAILED, [exited], SETTINGS) == (
        "kernel_died",
        "kernel died in q3-answer: it exited by itself, exit status 3",
    )
