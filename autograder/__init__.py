"""Checking helpers and command line for the autograd course.

Importing the package in a notebook makes failed checks show as short messages
(question, likely cause, expected vs got) instead of tracebacks.
"""

from .compare import Tolerance, check_close, tolerance_for
from .diagnose import Context, explain_exception
from .feedback import CheckFailed, Finding, NotAnswered, install_notebook_display

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

install_notebook_display()
