"""Stalled kernels told apart from slow ones (autograder/batch/stall.py): real processes
measured from /proc, then a class graded with sleeping submissions in it."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

from autograder.batch import stall
from tests import batch_support as bs

BUSY = "while True:\n    pass\n"


@contextlib.contextmanager
def _process(*argv: str, nice: int = 0):
    proc = subprocess.Popen(list(argv), preexec_fn=(lambda: os.nice(nice)) if nice else None)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _watch(meter: stall.Meter, pid: int, seconds: float) -> float:
    """Sample `pid` for up to `seconds`; when it was first found stalled (0: never)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if meter.stalled(lambda: [pid]):
            return time.monotonic() - start
        time.sleep(0.1)
    return 0.0


def test_a_sleeping_process_is_stalled_within_the_limit_and_a_sample():
    with _process("sleep", "60") as proc:
        found = _watch(stall.Meter(1.0), proc.pid, 5.0)
    assert 1.0 < found < 1.0 + 2 * stall.SAMPLE_EVERY + 0.5, found


def test_a_computing_process_is_never_stalled():
    with _process(sys.executable, "-c", BUSY) as proc:
        assert _watch(stall.Meter(1.0), proc.pid, 3.0) == 0.0


def test_a_runnable_process_starved_of_cpu_is_never_stalled():
    """Busy loops on every core at normal priority, the watched one at the lowest: it
    gets almost no CPU, but it waits for it, runnable, all the time."""
    with (
        bs.saturated(per_core=2),
        _process(sys.executable, "-c", BUSY, nice=19) as proc,
    ):
        assert _watch(stall.Meter(1.0), proc.pid, 4.0) == 0.0


def test_a_process_stopped_most_of_the_time_but_computing_is_never_stalled():
    """As the saturated-machine test starves kernels: stopped 0.5 s, running 0.05 s."""
    halt = threading.Event()
    with _process(sys.executable, "-c", BUSY) as proc:

        def cycle():
            while not halt.is_set():
                proc.send_signal(signal.SIGSTOP)
                halt.wait(0.5)
                proc.send_signal(signal.SIGCONT)
                halt.wait(0.05)

        thread = threading.Thread(target=cycle, daemon=True)
        thread.start()
        try:
            assert _watch(stall.Meter(1.5), proc.pid, 4.0) == 0.0
        finally:
            halt.set()
            thread.join()


def test_a_process_waking_briefly_is_still_stalled():
    """Sleeping in a loop of short naps is sleeping."""
    code = "import time\nwhile True:\n    time.sleep(0.05)\n"
    with _process(sys.executable, "-c", code) as proc:
        time.sleep(0.5)  # past its start-up
        assert _watch(stall.Meter(1.0), proc.pid, 5.0) > 1.0


def test_limit_from_the_environment():
    assert stall.limit_from_env({}) == stall.DEFAULT_LIMIT
    assert stall.limit_from_env({stall.ENV: "4.5"}) == 4.5
    assert stall.limit_from_env({stall.ENV: "0"}) == 0.0
    with pytest.raises(ValueError, match="AUTOGRADER_STALL='soon'"):
        stall.limit_from_env({stall.ENV: "soon"})
    meter = stall.Meter(0)
    assert meter.stalled(lambda: [os.getpid()], now=1e9) == 0.0


# --- a class with sleepers ---------------------------------------------------------------


@pytest.mark.slow
def test_sleeping_submissions_cost_a_class_seconds_not_minutes(make_course):
    """A class of 20 (18 correct, one that sleeps in an answer cell, one that sleeps and
    ignores interrupts), graded with the default limits: each sleeper is recorded as
    stalled and takes at most 30 s more than a correct submission; the first keeps the
    points of every other cell."""
    course = make_course(bs.A)
    for i in range(18):
        course.submit(f"s{i:02d}", bs.A, course.solved(bs.A))
    sleep = "import time\ntime.sleep(600)\n\n" + bs.solution(course, "q2-answer")
    course.submit("sleeper", bs.A, course.solved(bs.A, **{"q2-answer": sleep}))
    course.submit("deaf_sleeper", bs.A, bs.deaf_sleep(course))
    assert stall.limit_from_env() == stall.DEFAULT_LIMIT == 10.0
    started = time.monotonic()
    outcomes = course.grade(bs.A, progress=False)
    wall = time.monotonic() - started
    correct = [o for s, o in outcomes.items() if "sleeper" not in s]
    full = sum(bs.auto_points(course).values())
    assert all((o.status, o.score) == ("graded", full) for o in correct)
    typical = statistics.median(o.seconds for o in correct)
    sleeper, deaf = outcomes["sleeper"], outcomes["deaf_sleeper"]
    print(
        f"class of 20 graded in {wall:.1f} s; a correct submission {typical:.1f} s, "
        f"the sleeper {sleeper.seconds:.1f} s, the deaf sleeper {deaf.seconds:.1f} s"
    )
    assert (sleeper.status, sleeper.code) == ("graded", "stalled"), sleeper.reason
    assert "stalled: q2-answer was asleep or blocked" in sleeper.reason
    lost = {k for k, (score, most) in sleeper.cells.items() if score != most} - {"q4-3-explain"}
    assert lost and all(k.startswith("q2-") for k in lost), sleeper.cells
    assert (deaf.status, deaf.code) == ("ungradable", "stalled"), deaf.reason
    assert "ignored the interrupt (kernel killed)" in deaf.reason
    for o in (sleeper, deaf):
        assert o.seconds - typical <= 30, (o.student, o.seconds, typical)
