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


def describe(event: CellEvent, settings: Settings, stall_limit: float | None = None) -> str:
    """A cell that ran out of time, in words: which limit it went over."""
    if event.limit == "cpu":
        return f"{event.label} used more than {settings.cpu_limit:g} s of CPU"
    if event.limit == "stall":
        after = f" for more than {stall_limit:g} s" if stall_limit else ""
        return (
            f"{event.label} was asleep or blocked (neither running nor waiting for a "
            f"CPU){after}, {event.cpu:g} s of CPU used in {event.wall:g} s"
        )
    return f"{event.label} ran for more than {settings.wall_limit:g} s"


def code_for(events: Sequence[CellEvent]) -> str:
    """The outcome code of cells stopped for time: "stalled" when the first was stopped
    for stalling, else "timed_out"."""
    return "stalled" if events and events[0].limit == "stall" else "timed_out"


def classify(
    result: dict,
    runs: Sequence[NotebookRun] = (),
    settings: Settings | None = None,
    *,
    limits: Sequence[str] = (),
    evidence: str = "",
    stall_limit: float | None = None,
) -> tuple[str, str]:
    """(code, reason) for a submission nbgrader could not grade (or whose feedback it
    could not write: `result` is then generate_feedback's and `runs` empty).

    A kernel killed for ignoring an interrupt or for staying stalled (`settings` gives
    the limits it went over), or a kernel that died, as the runs recorded them, come
    first; otherwise nbgrader's error and log say what happened, or their last line does.
    `limits`: the sandbox limits the kernel reached, in words (they name the reason:
    code ``limit_exceeded``); `evidence`: what the sandbox measured, quoted when nothing
    else explains a signal."""
    killed = [e for r in runs for e in r.events if e.action == "killed"]
    if killed and settings is not None:
        e = killed[-1]
        why = describe(e, settings, stall_limit)
        code = code_for([e])
        word = "stalled" if code == "stalled" else "timed out"
        return code, f"{word}: {why} and ignored the interrupt (kernel killed)"
    died = next((r for r in runs if r.died_in), None)
    if died is not None:
        reason = f"kernel died in {died.died_in}{_how(died.exit_status, limits, evidence)}"
        if limits:
            return "limit_exceeded", f"{reason}: {'; '.join(limits)}"
        return "kernel_died", reason
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for needle, code, reason in _IN_LOG:
        if needle in text:
            if limits:
                return "limit_exceeded", f"{reason}: {'; '.join(limits)}"
            return code, reason
    lines = [line for line in text.strip().splitlines() if line.strip()]
    reason = ("autograde failed: " + lines[-1][:200]) if lines else "autograde failed"
    if limits:
        return "limit_exceeded", f"{reason}: {'; '.join(limits)}"
    return "autograde_failed", reason


def _how(status: int | None, limits: Sequence[str] = (), evidence: str = "") -> str:
    """How a kernel ended, from its exit status (minus the signal number if killed).

    A signal is named as it was; when no limit the sandbox measured explains it (the
    grader itself only ever interrupts and kills a cell it records as timed out or
    stalled), it was the kernel's own doing, and the evidence says so."""
    if status is None:
        return ""
    if status >= 0:
        return f": it exited by itself, exit status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    how = f": killed by {name} (signal {-status})"
    if limits:
        return how
    own = ", sent by the kernel or a process of its own: the grader sent none"
    own += " and no limit was reached" + (f" ({evidence})" if evidence else "")
    return how + own
