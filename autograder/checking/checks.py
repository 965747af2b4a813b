"""The harness every question's check is built from.

- `call` runs a student's function: warnings and stray stderr are captured (a test
  cell must never write to stderr, or nbgrader scores it 0 whatever the check decided),
  a stub's NotImplementedError becomes "not answered yet", and torch errors become
  plain-language diagnoses.
- `passed` prints the one-line success message.
"""

from __future__ import annotations

import contextlib
import functools
import io
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from .diagnose import copy_then_requires_grad, explain_exception
from .feedback import CheckFailed, Finding, NotAnswered, Passed

NONLEAF_GRAD_WARNING = "is not a leaf Tensor is being accessed"

# question -> (function, warnings) of its last student call, so that a comparison that
# finds None can say why (see diagnose.none_causes).
LAST_CALL: dict[str, tuple[Any, list]] = {}


def _where(exc: BaseException) -> str:
    """The last frame of the student's own code (a notebook cell), if any."""
    if isinstance(getattr(exc, "where", None), str):  # raised in the student's kernel
        return exc.where
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "autograder" not in frame.filename.replace("\\", "/").split("/")[-2:-1] and (
            "ipykernel" in frame.filename or frame.filename.startswith("<")
        ):
            return f" (in `{frame.name}`, line {frame.lineno}: {frame.line})"
    return ""


def warning_findings(caught: list[warnings.WarningMessage]) -> list[Finding]:
    findings = []
    for w in caught:
        if NONLEAF_GRAD_WARNING in str(w.message):
            findings.append(
                Finding(
                    "nonleaf_grad",
                    "you read .grad of a non-leaf tensor (an intermediate result). torch keeps "
                    "gradients only for leaves unless you call .retain_grad() on that tensor "
                    "before backward().",
                )
            )
    return findings


def call(question: str, fn: Any, *args: Any, name: str | None = None, **kwargs: Any):
    """Call the student's `fn(*args, **kwargs)`; return (result, warnings caught).

    Raises CheckFailed (with diagnoses) if it cannot be called or raises.
    """
    return _call(question, fn, lambda: fn(*args, **kwargs), name)


def call_each(question: str, fn: Any, arg_lists: list[tuple], *, name: str | None = None):
    """`call(question, fn, *args)` for each `args` of `arg_lists`, in order, stopping at
    the first that fails; return the list of (result, warnings caught).

    The same results, failures and warnings as calling one by one. When `fn` lives in
    the student's kernel (the grader's re-check), the calls travel there as one request
    and come back as one reply: dozens of small calls cost one round trip, not dozens.
    """
    each = getattr(type(fn), "_autograder_each", None)  # (the type's: not the student's)
    if each is None:
        return [call(question, fn, *args, name=name) for args in arg_lists]
    try:
        made = each(fn, arg_lists)
    except Exception as exc:  # no result at all: the first call's failure
        made = [functools.partial(_reraise, exc)]
    return [_call(question, fn, done, name) for done in made]


def _reraise(exc: BaseException):
    raise exc


def _call(question: str, fn: Any, invoke: Callable[[], Any], name: str | None):
    name = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        raise CheckFailed(question, f"`{name}` is not a function", [f"got {type(fn).__name__}"])
    sink = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(sink):
        warnings.simplefilter("always")
        try:
            result = invoke()
        except NotImplementedError as exc:
            raise NotAnswered(question, name) from exc
        except CheckFailed:
            raise
        except Exception as exc:  # the student's error, reported as a failed check
            findings = explain_exception(exc) + warning_findings(caught)
            if any(f.code == "no_grad_fn" for f in findings):
                findings = copy_then_requires_grad(fn) + findings
            kind = getattr(exc, "type_name", None) or type(exc).__name__
            raise CheckFailed(
                question,
                f"`{name}` raised {kind}",
                [f"{kind}: {_first_line(exc)}{_where(exc)}"],
                findings,
            ) from None
    LAST_CALL[question] = (fn, list(caught))
    return result, list(caught)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def passed(question: str, note: str = "") -> None:
    Passed(question, note).show()


def require(
    question: str,
    condition: bool,
    summary: str,
    details: list[str] | None = None,
    findings: list[Finding] | None = None,
) -> None:
    if not condition:
        raise CheckFailed(question, summary, details, findings)


def run(question: str, check: Callable[[], str | None]) -> None:
    """Run a check body; print the pass line with whatever note it returns."""
    note = check()
    passed(question, note or "")
