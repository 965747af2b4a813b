"""The checks of each assignment (``aNN``): ``check_*(answer, ..., hidden=False)``.

A test cell calls a check twice: as the student sees it, then with ``hidden=True``
(fresh random inputs, between nbgrader's hidden-test markers). During grading the hidden
checks are decided by the grader itself (:mod:`autograder.judge.trusted`), in its own process;
the grader tells the student's kernel so through :data:`HIDDEN_BY_GRADER`, and there
:func:`defer_hidden` makes the hidden calls return at once instead of computing a result
nobody reads.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

HIDDEN_BY_GRADER = "AUTOGRADER_HIDDEN_BY_GRADER"


def defer_hidden(namespace: dict[str, Any]) -> None:
    """In a grading kernel, make each ``check_*`` of `namespace` skip ``hidden=True`` calls."""
    if os.environ.get(HIDDEN_BY_GRADER) != "1":
        return
    for name, fn in list(namespace.items()):
        if name.startswith("check_") and inspect.isfunction(fn):
            if "hidden" in inspect.signature(fn).parameters:
                namespace[name] = _deferred(fn)


def _deferred(check: Callable) -> Callable:
    @functools.wraps(check)
    def deferred(*args: Any, hidden: bool = False, **kwargs: Any) -> None:
        if hidden:
            return None
        return check(*args, **kwargs)

    return deferred
