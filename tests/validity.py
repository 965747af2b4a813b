"""Every simulated student's checks under many seeds, in-process (no nbgrader, no kernel).

Grading draws fresh hidden inputs on every run, so a wrong answer must fail on every
draw and a right one pass on every draw, not on most. For one student this runs the
solved notebook's code cells once (answers replaced as the student wrote them) in a
forked process, then each test cell of the instructor's notebook — its visible and its
hidden checks — under each seed (``AUTOGRADER_SEED``), and reports, per test cell and
seed, whether it passed and which causes its failure named.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import linecache
import multiprocessing
import os
import sys
from dataclasses import dataclass

from autograder import notebooks
from autograder.checking.sampling import SEED_ENV
from tests.conftest import ROOT
from tests.students import Student

STUDENT_SECONDS = 900  # one student, every seed: a few seconds on these machines


@dataclass(frozen=True)
class CellRun:
    """One test cell under one seed: passed, or the causes its failure named."""

    passed: bool
    codes: tuple[str, ...] = ()
    summary: str = ""


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def test_cells(assignment: str) -> dict[str, str]:
    """grade id -> source (visible and hidden checks) of every automatically graded test
    cell of the instructor's notebook."""
    source = notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")
    return {
        _nbgrader(c)["grade_id"]: c.source
        for c in source.cells
        if c.cell_type == "code" and _nbgrader(c).get("grade") and not _nbgrader(c).get("solution")
    }


def _solved(assignment: str, student: Student):
    source = notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")
    release = notebooks.read(ROOT / "release" / assignment / f"{assignment}.ipynb")
    answers = notebooks.solutions(source)
    answers.update(student.answers)
    return notebooks.fill(release, answers)


def _python(source: str) -> str:
    """A cell's code without IPython's magics and shell escapes."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _run_student(assignment: str, student: Student, seeds: tuple[int, ...], seconds: float):
    # A student that runs too long says where it stands, before run_corpus gives up on it.
    faulthandler.dump_traceback_later(seconds * 0.8, exit=False, file=sys.__stderr__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nb = _solved(assignment, student)
    namespace: dict = {"__name__": "__main__", "In": [""]}
    tests = test_cells(assignment)
    results: dict[str, list[CellRun]] = {}
    answers: list[tuple[str, str]] = []  # answer cells since the last test cell
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        # In notebook order, each test cell right after the cells above it, as the grader
        # judges it; cell sources registered as IPython does, so checks can read them.
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            gid = _nbgrader(cell).get("grade_id")
            if gid in tests:
                results[gid] = _judge_cell(gid, tests[gid], index, namespace, seeds, answers)
                answers = []
                continue
            code = _python(cell.source)
            name = f"<cell {index} {gid}>"
            namespace["In"].append(code)
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)
            if _nbgrader(cell).get("solution"):
                answers.append((code, name))
            with contextlib.suppress(BaseException):
                exec(compile(code, name, "exec"), namespace)
            plt.close("all")
    return results


def _judge_cell(
    gid: str, code: str, index: int, namespace: dict, seeds, answers: list[tuple[str, str]]
) -> list[CellRun]:
    """The test cell under each seed; before each seed but the first, the answer cells it
    tests run again, as in a fresh run of the notebook (state an answer keeps between
    calls starts anew, as it does when grading runs the notebook once)."""
    import matplotlib.pyplot as plt

    from autograder.checking.feedback import CheckFailed

    runs = []
    name = f"<test {index} {gid}>"
    code = _python(code)
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    for k, seed in enumerate(seeds):
        if k:
            for answer, answer_name in answers:
                with contextlib.suppress(BaseException):
                    exec(compile(answer, answer_name, "exec"), namespace)
        os.environ[SEED_ENV] = str(seed)
        try:
            exec(compile(code, name, "exec"), namespace)
            runs.append(CellRun(True))
        except CheckFailed as exc:
            runs.append(CellRun(False, tuple(exc.codes), exc.summary))
        except BaseException as exc:  # noqa: BLE001 - a test cell that errors scores 0
            runs.append(CellRun(False, (), f"{type(exc).__name__}: {exc}"[:200]))
        plt.close("all")
    return runs


def run_corpus(
    assignment: str,
    students: dict[str, Student],
    seeds: tuple[int, ...],
    seconds: float = STUDENT_SECONDS,
) -> dict[str, dict[str, list[CellRun]]]:
    """student -> grade id -> one CellRun per seed; each student in a process of its own.

    The processes are forked from multiprocessing's fork server, never from this one: a
    process whose torch has run a parallel operation (as another test in this pytest
    worker may have) cannot fork safely, for the child's first parallel operation (a
    matrix product, say) waits forever on OpenMP threads that were not copied.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "matplotlib.pyplot", __name__])
    names = [n for n, s in students.items() if not s.blank]
    with context.Pool(2, maxtasksperchild=1) as pool:
        pending = {
            n: pool.apply_async(_run_student, (assignment, students[n], seeds, seconds))
            for n in names
        }
        results = {}
        for name, result in pending.items():
            try:
                results[name] = result.get(timeout=seconds)
            except multiprocessing.TimeoutError:
                raise AssertionError(
                    f"{assignment}: student {name!r} was not done after {seconds:g} s "
                    "(its process printed where it stood to stderr)"
                ) from None
        return results
