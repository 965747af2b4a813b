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

from . import methods
from .diagnose import copy_then_requires_grad, explain_exception, warning_findings
from .feedback import CheckFailed, Finding, NotAnswered, Passed
from .forbid import watch


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


# Questions whose check has already called the student's function twice in this run of
# the check (see :func:`begin_check`).
_REPEATED: set[str] = set()


_REPEATING = [True]  # whether this run of a check repeats its first call


def begin_check(*, hidden: bool = True) -> None:
    """A check starts. In its hidden run, its first call of the student's function is
    made twice (the visible run need not pay twice). A visible run starts a test cell:
    the count of the student's calls (evidence for state kept between calls) starts anew
    there and goes on through the hidden run."""
    _REPEATED.clear()
    if not hidden:
        methods.CALLS.clear()
    _REPEATING[0] = hidden


def call(
    question: str,
    fn: Any,
    *args: Any,
    name: str | None = None,
    rule: methods.Rule | None = None,
    keeps_inputs: bool = True,
    again: bool = True,
    **kwargs: Any,
):
    """Call the student's `fn(*args, **kwargs)`; return (result, warnings caught).

    While it runs, what it does is recorded (:mod:`.methods`): the call fails if it
    breaks the question's `rule` (the method asked for), or, unless `keeps_inputs` is
    False, if it changed a tensor it was given. The first call of each check is made a
    second time with the same inputs (unless `again` is False), and the two results must
    agree.
    Raises CheckFailed (with diagnoses) if it cannot be called or raises.
    """
    name = name or getattr(fn, "__name__", "your function")
    options = methods.options_for(rule, args)
    result, caught, hits = _recorded(question, fn, args, kwargs, name, options)
    methods.LAST_CALL[question] = (fn, caught, hits)
    methods.CALLS[question] = methods.CALLS.get(question, 0) + 1
    _judge_record(question, hits, name, rule, keeps_inputs)
    if again and _REPEATING[0] and question not in _REPEATED and _comparable(result):
        _REPEATED.add(question)
        first = _copied(result)  # the values now: a second call may write into them
        again, _, hits2 = _recorded(question, fn, args, kwargs, name, options)
        _judge_record(question, hits2, name, rule, keeps_inputs)
        _agree(question, name, first, again, hits, hits2)
    return result, caught


def _recorded(question: str, fn: Any, args: tuple, kwargs: dict, name: str, options):
    hits: list[str] = []
    with watch(methods.KIND, options, hits):
        if _in_kernel(fn):  # the kernel records, and hands the hits back
            result, caught = _call(question, fn, lambda: fn(*args, **kwargs), name)
        else:
            with methods.recording(args, hits, options) as watched:
                result, caught = _call(question, fn, lambda: fn(*watched, **kwargs), name)
    return result, caught, hits


def _in_kernel(fn: Any) -> bool:
    """Whether `fn` stands for a function in the student's kernel (trusted grading)."""
    return getattr(type(fn), "_autograder_each", None) is not None


def _judge_record(question, hits, name, rule, keeps_inputs) -> None:
    if keeps_inputs:
        methods.check_inputs(question, hits, name)
    if rule is not None:
        methods.enforce(question, rule, hits, name)


def _leaves(value: Any) -> list | None:
    """The tensors and numbers of a result (tuples, lists, dicts), or None if it holds
    anything else (a figure, a module: not compared between calls)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, bool | int | float) or value is None:
        return [value]
    if isinstance(value, tuple | list):
        out = []
        for v in value:
            sub = _leaves(v)
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(value, dict):
        return _leaves([value[k] for k in sorted(value, key=str)])
    return None


def _copied(value: Any) -> list:
    import torch

    return [v.detach().clone() if isinstance(v, torch.Tensor) else v for v in _leaves(value) or []]


def _comparable(value: Any) -> bool:
    return _leaves(value) is not None


def _agree(
    question: str, name: str, first: Any, second: Any, first_hits: list, second_hits: list
) -> None:
    """Two calls with the same inputs must give the same result."""
    import torch

    a, b = _leaves(first), _leaves(second)
    same = a is not None and b is not None and len(a) == len(b)
    ratio = None
    if same:
        for x, y in zip(a, b, strict=True):
            if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
                x64, y64 = x.detach().to(torch.float64), y.detach().to(torch.float64)
                if x64.shape != y64.shape or not torch.allclose(
                    x64, y64, rtol=1e-6, atol=1e-9, equal_nan=True
                ):
                    same = False
                    mask = x64.abs() > 1e-9
                    if x64.shape == y64.shape and int(mask.sum()) >= 2:
                        r = y64[mask] / x64[mask]
                        if torch.allclose(r, r.median().expand_as(r), rtol=1e-6):
                            ratio = float(r.median())
                    break
            elif type(x) is not type(y) or (x != y and not (x != x and y != y)):
                same = False
                break
    if same:
        return
    findings = []
    if methods.engine_runs(first_hits) and methods.engine_runs(second_hits):
        exact = ratio is not None and abs(ratio - 2) < 1e-6
        findings.append(
            Finding(
                "accumulated_across_calls",
                (
                    "the second call returned exactly twice the first: "
                    if exact
                    else "both calls ran backward and returned different results: "
                )
                + "gradients kept between calls add up (a .grad of a tensor or model defined "
                "outside the function, never cleared). Start from a fresh tensor, or zero the "
                "gradient, inside the function.",
            )
        )
    raise CheckFailed(
        question,
        f"`{name}` gave different results for the same input on two calls in a row",
        ["a function of its inputs must return the same values each time it is called"],
        findings,
    )


def call_each(question: str, fn: Any, arg_lists: list[tuple], *, name: str | None = None):
    """`call(question, fn, *args)` for each `args` of `arg_lists`, in order, stopping at
    the first that fails; return the list of (result, warnings caught).

    The same results, failures and warnings as calling one by one. When `fn` lives in
    the student's kernel (the grader's re-check), the calls travel there as one request
    and come back as one reply: dozens of small calls cost one round trip, not dozens.
    """
    each = getattr(type(fn), "_autograder_each", None)  # (the type's: not the student's)
    if each is None:  # each call once, as the batch in the kernel makes them
        return [call(question, fn, *args, name=name, again=False) for args in arg_lists]
    name = name or getattr(fn, "__name__", "your function")
    hits: list[str] = []
    with watch(methods.KIND, frozenset(), hits):
        try:
            made = each(fn, arg_lists)
        except Exception as exc:  # no result at all: the first call's failure
            made = [functools.partial(_reraise, exc)]
    results = [_call(question, fn, done, name) for done in made]
    methods.LAST_CALL[question] = (fn, results[-1][1] if results else [], hits)
    methods.check_inputs(question, hits, name)
    return results


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


def returns_tensor(question: str, what: str, value: Any, *, dim: int | None = None) -> None:
    """Fail unless `value` is a tensor (of `dim` dimensions, if given), as promised."""
    import torch

    kind = "a 0-dimensional tensor" if dim == 0 else "a tensor"
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(
            question,
            f"{what} is not {kind}",
            [f"expected {kind}, got {type(value).__name__}: {str(value)[:60]}"],
            [
                Finding(
                    "wrong_type",
                    f"the question promises {kind}: return the tensor itself (not .item(), "
                    ".tolist(), a numpy array or a Python number).",
                )
            ],
        )
    if dim is not None and value.dim() != dim:
        raise CheckFailed(
            question,
            f"{what} is not {kind}",
            [f"expected {kind}, got shape {tuple(value.shape)}"],
            [
                Finding(
                    "wrong_type",
                    f"the question promises {kind}: "
                    + (
                        "x.grad of a 0-d x is 0-d; use a 0-d input (torch.tensor(x0))."
                        if dim == 0
                        else ""
                    ),
                )
            ],
        )
