"""A grading run leaves nothing in the temporary directory, and the next run clears what a
killed run left (autograder/batch/litter.py); the directory's own mode is untouched."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from autograder.batch import litter
from tests import batch_support as bs


@contextlib.contextmanager
def _tmpdir(path):
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


def _run(root, tmp, **kwargs):
    with _tmpdir(tmp):
        return bs.grade_in_subprocess(root, jobs=2, progress=False, **kwargs)


def _left(tmp) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, n), tmp)
        for d, dirs, files in os.walk(tmp)
        for n in dirs + files
    )


@pytest.mark.slow
def test_a_run_leaves_nothing_and_a_killed_runs_litter_is_cleared_by_the_next(make_course):
    course = make_course(bs.A)
    for name in ("a", "b", "c", "d"):
        course.submit(name, bs.A, course.solved(bs.A))
    # (short: the fork server's and kernels' Unix sockets live under it)
    tmp = Path(tempfile.mkdtemp(prefix="litter-test-", dir="/tmp"))
    try:
        _check(course, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check(course, tmp: Path) -> None:
    os.chmod(tmp, 0o755)  # not the usual 1777: a run must leave it as it is
    mode = stat.S_IMODE(os.stat(tmp).st_mode)

    run = _run(course.root, tmp)
    assert run.wait(timeout=600) == 0, run.stderr.read().decode()[-2000:]
    graded = sorted(p.parts[-3] for p in course.root.glob(f"feedback/*/{bs.A}/*.html"))
    assert graded == ["a", "b", "c", "d"], run.stderr.read().decode()[-2000:]
    assert _left(tmp) == []
    assert stat.S_IMODE(os.stat(tmp).st_mode) == mode

    run = _run(course.root, tmp, force=True)
    kernels = tmp / "autograder-kernels"
    deadline = time.monotonic() + 300
    while not (kernels.is_dir() and any(kernels.iterdir())) and run.poll() is None:
        assert time.monotonic() < deadline, "no kernel started in time"
        time.sleep(0.1)
    assert run.poll() is None, "the run ended before it could be killed"
    bs.kill_group(run)  # while a kernel runs
    time.sleep(1.0)
    left = _left(tmp)
    assert left, "the killed run left nothing: nothing to clear"

    run = _run(course.root, tmp, force=True)
    assert run.wait(timeout=600) == 0, run.stderr.read().decode()[-2000:]
    assert _left(tmp) == [], f"left by the killed run: {left}"
    assert stat.S_IMODE(os.stat(tmp).st_mode) == mode


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_sweep_removes_only_what_no_live_process_owns(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    made = {
        f"ag-probe-{dead}-x": True,
        f"ag-probe-{live}-x": False,
        f"autograder-audit-{dead}-x": True,
        f"autograder-audit-{live}-x": False,
        "ag-old-run": True,  # a fork server socket nobody listens on
        "ag-live-run": False,  # one that is listened on
        "ag-no-socket": False,  # a run that has not started its fork server yet
        "ag-probe-oldstyle": True,  # an earlier version's, empty, long unchanged
        "ag-probe-recent": False,
        "agenda": False,  # not ours
    }
    for name in made:
        (tmp_path / name).mkdir()
    gone = socket.socket(socket.AF_UNIX)
    gone.bind(str(tmp_path / "ag-old-run" / "forkserver.sock"))
    gone.close()
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "ag-live-run" / "forkserver.sock"))
    listening.listen(1)
    hour_ago = time.time() - 2 * litter.UNNAMED_AGE
    os.utime(tmp_path / "ag-probe-oldstyle", (hour_ago, hour_ago))
    mode = stat.S_IMODE(os.stat(tmp_path).st_mode)
    try:
        removed = {Path(p).name for p in litter.sweep(str(tmp_path))}
    finally:
        listening.close()
    assert removed == {name for name, stale in made.items() if stale}
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, stale in made.items() if not stale)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == mode
