"""Telling a stalled kernel from a slow one.

A cell that computes is stopped by its CPU time (:class:`~.execution.CellWatch`), so a
loaded machine, which only slows it down, costs it nothing. A cell that sleeps or waits
(``time.sleep``, a lock nobody releases, a read from a pipe nobody writes) uses no CPU
and would hold its worker until the generous wall-clock limit. This module tells the
two apart the scheduler's way, reading every thread of the kernel's process tree in
/proc twice a second:

- a thread in state ``R`` (``/proc/<pid>/task/<tid>/stat``) is running or waiting for
  a CPU: a kernel starved by load is found so at nearly every look;
- the time a thread ran (``schedstat``, in nanoseconds; CPU ticks where that is
  missing) shows work done between two looks, however briefly the thread ran.

A kernel is **stalled** once, for :attr:`Meter.limit` seconds in a row, none of its
threads was found runnable and together they ran less than :data:`ACTIVE_SHARE` of the
time that passed (a loop of short sleeps runs far less). A kernel stopped by a signal
(state ``T``) that runs between stops, as a starving scheduler's would, keeps running
more than that.

The grading process's own threads count too, with a higher bar (:data:`HELPER_SHARE`):
while a test cell is re-checked the kernel rightly waits for the grader's questions, and
the grader is then the one computing, whereas waiting for a kernel costs it little.

The limit is ``AUTOGRADER_STALL`` seconds (default :data:`DEFAULT_LIMIT`; 0 turns the
rule off).
"""

from __future__ import annotations

import os
import threading
import time

DEFAULT_LIMIT = 10.0
ENV = "AUTOGRADER_STALL"
# Share of the time passed the kernel's threads must run, together, to count as working.
ACTIVE_SHARE = 0.003
# The same for the grading process's threads (which poll while they wait for a kernel).
HELPER_SHARE = 0.1
SAMPLE_EVERY = 0.5  # seconds between readings of /proc
# Seconds an interrupted kernel may stay stalled before it is killed.
GRACE = 3.0
TICK = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def limit_from_env(environ=None) -> float:
    """The stall limit in seconds (0: no stall rule)."""
    raw = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: expected seconds, e.g. {ENV}=10") from None
    return max(0.0, value)


def _tids(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _progress(pid: int, tid: str) -> tuple[float, bool]:
    """(seconds run, runnable now) for one thread."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/stat") as fh:
            text = fh.read()
    except OSError:
        return 0.0, False
    fields = text[text.rfind(")") + 2 :].split()
    runnable = bool(fields) and fields[0] == "R"
    try:
        with open(f"{base}/schedstat") as fh:
            return int(fh.read().split()[0]) / 1e9, runnable
    except (OSError, ValueError, IndexError):
        pass
    try:  # utime and stime: stat's 14th and 15th fields
        return (int(fields[11]) + int(fields[12])) * TICK, runnable
    except (IndexError, ValueError):
        return 0.0, runnable


class Meter:
    """Whether a kernel has been stalled for `limit` seconds (see the module doc)."""

    def __init__(self, limit: float = DEFAULT_LIMIT):
        self.limit = float(limit)
        self._total: dict[tuple[int, str], float] = {}
        self._last_sample = 0.0
        self.quiet_since: float | None = None

    def reset(self) -> None:
        """A new cell (or an interrupt) starts the count again."""
        self._total = {}
        self._last_sample = 0.0
        self.quiet_since = None

    def _sample(self, pids: list[int]) -> tuple[float, float, bool]:
        """(the kernel's threads' run time since the last sample, the grading process's,
        whether any is runnable now). A thread or process started since the last sample
        counts with all it ran."""
        me, own = os.getpid(), str(threading.get_native_id())  # (the watch is not work)
        ran = {True: 0.0, False: 0.0}
        runnable, seen = False, {}
        for pid in [*pids, me]:
            helper = pid == me
            for tid in _tids(pid):
                if helper and tid == own:
                    continue
                total, ready = _progress(pid, tid)
                runnable = runnable or ready
                key = (pid, tid)
                seen[key] = total
                if key in self._total:
                    ran[helper] += max(0.0, total - self._total[key])
                elif self._total:
                    ran[helper] += total
        self._total = seen
        return ran[False], ran[True], runnable

    def stalled(self, pids, *, limit: float | None = None, now: float | None = None) -> float:
        """Seconds the kernel has been stalled for, once that is more than the limit
        (`limit`: another, such as :data:`GRACE` after an interrupt); 0.0 before, and
        always with no limit. `pids`: a function giving the kernel's processes (called
        only when /proc is read)."""
        if self.limit <= 0:
            return 0.0
        limit = self.limit if limit is None else limit
        now = time.monotonic() if now is None else now
        if self._last_sample and now - self._last_sample < SAMPLE_EVERY:
            return self._over(now, limit)
        first = not self._total
        kernel, helper, runnable = self._sample(pids())
        elapsed = now - self._last_sample if self._last_sample else 0.0
        self._last_sample = now
        if first or runnable or kernel > ACTIVE_SHARE * elapsed or helper > HELPER_SHARE * elapsed:
            self.quiet_since = now
        return self._over(now, limit)

    def _over(self, now: float, limit: float) -> float:
        if self.quiet_since is None:
            return 0.0
        quiet = now - self.quiet_since
        return quiet if quiet > limit else 0.0
