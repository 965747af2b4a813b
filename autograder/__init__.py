"""Checking helpers and command line for the autograd course.

Importing the package in a notebook makes failed checks show as short messages
(question, likely cause, expected vs got) instead of tracebacks. The helpers below are
imported when first used, so the command line and the grading coordinator, which never
compare tensors, do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .checking.feedback import CheckFailed, Finding, NotAnswered, install_notebook_display

_LAZY = {
    "Tolerance": "compare",
    "check_close": "compare",
    "tolerance_for": "compare",
    "Context": "diagnose",
    "explain_exception": "diagnose",
}

__all__ = [
    "CheckFailed",
    "Context",
    "Finding",
    "NotAnswered",
    "Tolerance",
    "check_close",
    "explain_exception",
    "tolerance_for",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".checking.{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


install_notebook_display()
