"""Process helpers shared by the fork server and the grading workers.

Standard library only: the fork server, which runs as a plain script, loads this file
on its own, as it does sandbox.py and audit.py; the workers import it
as ``autograder.batch.processes``.
"""

from __future__ import annotations

import contextlib
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent exits."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def threads() -> int:
    """How many threads this process runs (forking a threaded process is unsafe)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - not Linux
        return 1
