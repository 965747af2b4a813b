"""Why nbgrader could not grade a submission: one classifier, from nbgrader's result (its
error and log) and what happened while the notebooks ran, to a (code, reason) pair."""

from __future__ import annotations

import signal
from collections.abc import Sequence

from .request import Settings
from .runs import CellEvent, NotebookRun

# Words in nbgrader's error or log, the failure's code and its reason; the first that
# appears wins.
_IN_LOG = (
    ("Kernel died", "kernel_died", "kernel died"),
    ("DeadKernelError", "kernel_died", "kernel died"),
    ("CellTimeoutError", "timed_out", "timed out"),
    ("TimeoutError", "timed_out", "timed out"),
    ("Inconsistent checksums", "changed_cells", "locked or test cells changed"),
    ("wrong assignment", "wrong_assignment", "wrong assignment"),
)


def describe(event: CellEvent, settings: Settings) -> str:
    """A cell that ran out of time, in words: which limit it went over."""
    if event.limit == "cpu":
        return f"{event.label} used more than {settings.cpu_limit:g} s of CPU"
    return f"{event.label} ran for more than {settings.wall_limit:g} s"


def classify(
    result: dict, runs: Sequence[NotebookRun] = (), settings: Settings | None = None
) -> tuple[str, str]:
    """(code, reason) for a submission nbgrader could not grade (or whose feedback it
    could not write: `result` is then generate_feedback's and `runs` empty).

    A kernel killed for ignoring an interrupt (`settings` gives the limits it went over)
    or a kernel that died, as the runs recorded them, come first; otherwise nbgrader's
    error and log say what happened, or their last line does."""
    killed = [e for r in runs for e in r.events if e.action == "killed"]
    if killed and settings is not None:
        e = killed[-1]
        why = describe(e, settings)
        return "timed_out", f"timed out: {why} and ignored the interrupt (kernel killed)"
    died = next((r for r in runs if r.died_in), None)
    if died is not None:
        return "kernel_died", f"kernel died in {died.died_in}{_how(died.exit_status)}"
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for needle, code, reason in _IN_LOG:
        if needle in text:
            return code, reason
    lines = [line for line in text.strip().splitlines() if line.strip()]
    reason = ("autograde failed: " + lines[-1][:200]) if lines else "autograde failed"
    return "autograde_failed", reason


def _how(status: int | None) -> str:
    """How a kernel ended, from its exit status (minus the signal number if killed)."""
    if status is None:
        return ""
    if status >= 0:
        return f", exit status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f", killed by {name}" + (" (out of memory?)" if -status == 9 else "")
