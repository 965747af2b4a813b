"""Helpers for the batch-grading tests: classes of submissions, gradebook snapshots, load.

Submissions are built from 01_derivatives' release notebook and the instructor's
solutions, with single answer cells replaced by what a wrong, dying, looping or
interrupt-ignoring student would write.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil

from autograder import notebooks
from autograder.core.nbgrader_io import ensure_assignment, in_dir, nbgrader_api
from tests.conftest import Course

A = "01_derivatives"
NB = f"{A}.ipynb"


def solution(course: Course, grade_id: str) -> str:
    return notebooks.solutions(course.source_nb(A))[grade_id]


def wrong(course: Course) -> nbformat.NotebookNode:
    """Q2's gradient is twice the right one."""
    code = solution(course, "q2-answer") + (
        "\n\n_right = gradient\n\ndef gradient(fn, x):\n    return 2 * _right(fn, x)\n"
    )
    return course.solved(A, **{"q2-answer": code})


def dying(course: Course) -> nbformat.NotebookNode:
    """The kernel exits in Q2's answer cell."""
    code = "import os\nos._exit(3)\n" + solution(course, "q2-answer")
    return course.solved(A, **{"q2-answer": code})


def looping(course: Course) -> nbformat.NotebookNode:
    """Q3's answer cell loops forever (interruptible): Q3's tests fail, the rest pass."""
    code = "while True:\n    pass\n\n" + solution(course, "q3-answer")
    return course.solved(A, **{"q3-answer": code})


def deaf_loop(course: Course) -> nbformat.NotebookNode:
    """Q4's answer cell ignores interrupts and loops, computing."""
    code = (
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    pass\n\n" + solution(course, "q4-answer")
    )
    return course.solved(A, **{"q4-answer": code})


def deaf_sleep(course: Course) -> nbformat.NotebookNode:
    """Q4's answer cell ignores interrupts and waits forever without computing."""
    code = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.2)\n\n" + solution(course, "q4-answer")
    )
    return course.solved(A, **{"q4-answer": code})


def other_assignment_source(course: Course) -> Path:
    """A second assignment in the course, so a notebook can belong to it."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("def chain(x):\n    return x")
    cell.metadata["nbgrader"] = {
        "grade": False,
        "grade_id": "chain-answer",
        "locked": False,
        "schema_version": 3,
        "solution": True,
        "task": False,
    }
    test = nbformat.v4.new_code_cell("assert chain(1) == 1")
    test.metadata["nbgrader"] = {
        "grade": True,
        "grade_id": "chain-test",
        "locked": True,
        "points": 1,
        "schema_version": 3,
        "solution": False,
        "task": False,
    }
    nb.cells = [cell, test]
    path = course.root / "source" / "02_other" / "02_other.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def auto_points(course: Course) -> dict[str, float]:
    """grade_id -> points of each automatically graded cell of 01_derivatives."""
    out = {}
    for cell in course.source_nb(A).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"]] = float(meta["points"])
    return out


def in_gradebook(course: Course, *assignments: str) -> None:
    """Let the gradebook know the assignments' cells, as a grading run does first."""
    api = nbgrader_api(course.root)
    with in_dir(course.root):
        for a in assignments:
            ensure_assignment(api, course.root, a)


# --- the gradebook, as data ------------------------------------------------------------


def gradebook_snapshot(root: Path) -> dict:
    """Everything the gradebook says about submissions, plus row counts per table (a
    duplicated row would change a count)."""
    db = sqlite3.connect(str(root / "gradebook.db"))
    try:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "alembic_version"
        ]
        counts = {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        grades = db.execute(
            "SELECT s.student_id, c.name, g.auto_score, g.manual_score, g.needs_manual_grade"
            " FROM grade g"
            " JOIN submitted_notebook sn ON g.notebook_id = sn.id"
            " JOIN submitted_assignment s ON sn.assignment_id = s.id"
            " JOIN base_cell c ON g.cell_id = c.id"
            " ORDER BY s.student_id, c.name"
        ).fetchall()
        students = sorted(r[0] for r in db.execute("SELECT student_id FROM submitted_assignment"))
    finally:
        db.close()
    return {"counts": counts, "grades": grades, "submissions": students}


# --- load and processes ----------------------------------------------------------------

BURN = "while True:\n    pass\n"


@contextlib.contextmanager
def saturated(per_core: int = 2):
    """Busy loops on every core, `per_core` of them each, for the duration."""
    n = per_core * (os.cpu_count() or 1)
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(n)]
    try:
        time.sleep(0.5)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


@contextlib.contextmanager
def starved(parent_pid: int, *, spare=(), stopped: float = 0.5, running: float = 0.07):
    """Keep every descendant of `parent_pid` (the fork server's kernels) stopped most of
    the time, as a scheduler starving them would: each gets the CPU only `running` out of
    every `stopped + running` seconds. The processes in `spare` and their parent (the
    grading workers, which the fork server starts too) run freely."""
    halt = threading.Event()
    keep = set(spare)
    for pid in spare:
        with contextlib.suppress(psutil.Error):
            keep.add(psutil.Process(pid).ppid())

    def kernels():
        with contextlib.suppress(psutil.Error):
            procs = psutil.Process(parent_pid).children(recursive=True)
            return [p for p in procs if p.pid not in keep]
        return []

    def cycle():
        while not halt.is_set():
            procs = kernels()
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGSTOP)
            halt.wait(stopped)
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGCONT)
            halt.wait(running)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        halt.set()
        thread.join()
        for p in kernels():
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGCONT)


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `text` (a course path, a socket)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(text in part for part in proc.info["cmdline"] or []):
                found.append(proc)
    return found


def grade_in_subprocess(root: Path, *, nice: int = 0, **kwargs) -> subprocess.Popen:
    """`course.grade` in a separate process group (so the test can kill the whole run)."""
    args = json.dumps({"course_dir": str(root), "assignment": A, **kwargs})
    code = (
        f"import json, sys\nfrom autograder import course\ncourse.grade(**json.loads({args!r}))\n"
    )
    cmd = [sys.executable, "-c", code]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    return subprocess.Popen(
        cmd,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def outcomes_recorded(root: Path) -> int:
    """How many finished outcomes the run's store holds so far."""
    path = root / ".autograder" / "outcomes.sqlite"
    if not path.exists():
        return 0
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(str(path), timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
        finally:
            db.close()
    return 0


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
