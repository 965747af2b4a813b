"""A grading run leaves nothing in the temporary directory, and the next run clears what a
killed run left (autograder/batch/litter.py); the directory's own mode is untouched."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest

from tests import batch_support as bs

pytestmark = pytest.mark.slow


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
