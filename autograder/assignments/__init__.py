"""The checks of each assignment (``aNN``): ``check_*(answer, ..., hidden=False)``.

A test cell calls a check twice: as the student sees it, then with ``hidden=True``
(fresh random inputs, between nbgrader's hidden-test markers). During grading the hidden
checks are decided by the grader itself (:mod:`autograder.judge`), in its own process;
the grader tells the student's kernel so through :data:`HIDDEN_BY_GRADER`, and there
:func:`defer_hidden` makes the hidden calls return at once instead of computing a result
nobody reads. Each module ends with ``defer_hidden(globals())``, which also marks where
each run of a check begins (:func:`autograder.checking.checks.begin_check`).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

HIDDEN_BY_GRADER = "AUTOGRADER_HIDDEN_BY_GRADER"


def defer_hidden(namespace: dict[str, Any]) -> None:
    """Wrap each ``check_*`` of `namespace`: every run begins a fresh check
    (:func:`~autograder.checking.checks.begin_check`), and in a grading kernel the
    ``hidden=True`` calls return at once."""
    grading = os.environ.get(HIDDEN_BY_GRADER) == "1"
    for name, fn in list(namespace.items()):
        # the module's own checks, not the helpers it imports (check_close, check_curves)
        if (
            name.startswith("check_")
            and inspect.isfunction(fn)
            and fn.__module__ == namespace.get("__name__", fn.__module__)
        ):
            skip = grading and "hidden" in inspect.signature(fn).parameters
            namespace[name] = _wrapped(fn, skip)


def _wrapped(check: Callable, skip_hidden: bool) -> Callable:
    from ..checking.checks import begin_check

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> None:
        if skip_hidden and kwargs.get("hidden"):
            return None
        begin_check(hidden=bool(kwargs.get("hidden")))
        return check(*args, **kwargs)

    run.skips_hidden = skip_hidden  # whether the grader decides the hidden calls
    return run
