"""A test cell's verdict: its checks run here, and what the cell then shows.

:func:`judge` runs a cell's planned check calls in this process; :func:`verdict_outputs`
turns the verdict into the cell's outputs, which nbgrader's own scoring (SaveAutoGrades)
then reads. A test cell whose verdict carries a tamper mark gets a display output of
:data:`TAMPER_MIME` (read back by :mod:`autograder.batch.tamper`).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output

from ..checking.feedback import CheckFailed, Finding
from .planning import PlannedCall
from .transport import RemoteNotImplemented

TAMPER_MIME = "application/vnd.autograder.tamper+json"

CHANGED = (
    "the checks inside the notebook passed but the grader's own re-check "
    "failed: code in this submission changed how checks behave"
)


@dataclass
class Verdict:
    passed: bool
    stdout: str
    failure: CheckFailed | None = None
    in_hidden: bool = False  # the failing call was a hidden test (`hidden=True`)


def judge(calls: list[PlannedCall], question_hint: str = "") -> Verdict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for pc in calls:
            hidden = bool(pc.kwargs.get("hidden"))
            try:
                pc.function(*pc.args, **pc.kwargs)
            except CheckFailed as exc:
                return Verdict(False, out.getvalue(), exc, hidden)
            except RemoteNotImplemented:
                return Verdict(
                    False,
                    out.getvalue(),
                    CheckFailed(
                        question_hint or "this question",
                        "not answered yet",
                        ["your function still raises NotImplementedError"],
                    ),
                    hidden,
                )
            except (DeadKernelError, KeyboardInterrupt):
                raise
            except Exception as exc:  # anything else: the answer could not be checked
                return Verdict(
                    False,
                    out.getvalue(),
                    CheckFailed(
                        question_hint or "this question",
                        "could not be checked",
                        [f"{type(exc).__name__}: {str(exc)[:300]}"],
                    ),
                    hidden,
                )
    return Verdict(True, out.getvalue())


def in_kernel_passed(cell: NotebookNode) -> bool:
    """Whether the test cell's own run in the kernel passed (no error, nothing on stderr)."""
    return not any(
        o.get("output_type") == "error"
        or (o.get("output_type") == "stream" and o.get("name") == "stderr")
        for o in cell.outputs
    )


def blocked_flag(blocked: list[str]) -> str:
    """The tamper flag of a test cell whose re-check the kernel blocked."""
    return (
        "the grader's re-check was blocked: code in this submission disabled the "
        "kernel-side helper the grader calls the student's functions through ("
        + "; ".join(blocked)
        + "), so the checks it blocked score nothing"
    )


def assess(
    verdict: Verdict, *, passed_in_kernel: bool, blocked: list[str], question_hint: str = ""
) -> list[str]:
    """The tamper flags of a judged test cell; a flagged verdict fails and its failure
    says why first (the verdict is changed in place).

    `blocked`: what was found disabled in the kernel while the cell was judged: the
    checks it blocked score nothing. Otherwise the kernel ran the visible checks only
    (hidden ones are decided here): a visible check that passed there and fails here
    was changed there.
    """
    if blocked:
        if verdict.failure is None:  # the checks passed without reaching the kernel
            verdict.failure = CheckFailed(
                question_hint or "this question",
                "could not be checked",
                ["the grader could not reach your functions in the kernel"],
            )
        verdict.passed = False
        verdict.failure.diagnoses.insert(
            0,
            Finding(
                "tampered",
                "code in your notebook disabled what the grader calls your functions "
                "through; the checks it blocked count as failed.",
            ),
        )
        return [blocked_flag(blocked)]
    if passed_in_kernel and not verdict.passed and not verdict.in_hidden:
        verdict.failure.diagnoses.insert(
            0,
            Finding(
                "tampered",
                "the checks in your notebook were changed at run time; only "
                "the grader's independent re-check counts.",
            ),
        )
        return [CHANGED]
    return []


def verdict_outputs(
    verdict: Verdict, tamper: list[str], blocked: list[str] | None = None
) -> list[NotebookNode]:
    outputs = []
    if verdict.stdout:
        outputs.append(new_output("stream", name="stdout", text=verdict.stdout))
    if tamper:
        mark: dict = {"flags": tamper}
        if blocked:
            mark["blocked"] = blocked
        outputs.append(
            new_output(
                "display_data",
                data={TAMPER_MIME: mark, "text/plain": "⚠ " + "; ".join(tamper)},
            )
        )
    if verdict.failure is not None:
        text = verdict.failure.render(color=True)
        outputs.append(
            new_output(
                "error",
                ename="CheckFailed",
                evalue=verdict.failure.summary,
                traceback=text.splitlines(),
            )
        )
    return outputs
