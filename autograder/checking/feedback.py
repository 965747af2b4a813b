"""What a check tells the student, and how it reaches the notebook.

A failed check raises :class:`CheckFailed`. In a notebook, IPython shows it as a short
error (question, diagnosis, expected-vs-got) instead of a traceback, and the error output
is what makes nbgrader score the test cell 0. A passed check prints one line on stdout
(nbgrader ignores stdout for scoring). Nothing here ever writes to stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

RED = "\x1b[0;31m"
GREEN = "\x1b[0;32m"
YELLOW = "\x1b[0;33m"
RESET = "\x1b[0m"


@dataclass
class Finding:
    """One named diagnosis: a stable code for tests and tools, and a sentence for people."""

    code: str
    message: str


class CheckFailed(AssertionError):
    """A check decided the answer is wrong.

    Subclasses AssertionError so plain `pytest`/`assert` tooling treats it as a failure.
    """

    def __init__(
        self,
        question: str,
        summary: str,
        details: list[str] | None = None,
        diagnoses: list[Finding] | None = None,
    ):
        self.question = question
        self.summary = summary
        self.details = list(details or [])
        self.diagnoses = list(diagnoses or [])
        super().__init__(summary)
        # The short display must be registered in the shell that will catch this; a kernel
        # forked from a process that imported this package before IPython started has none.
        install_notebook_display()

    def __str__(self) -> str:
        # Rendered when asked, so findings added after construction are never lost.
        return self.render(color=False)

    def _render_traceback_(self) -> list[str]:
        # IPython's hook for exceptions that format themselves. IPython also formats every
        # error of a stored cell for its history, with the whole stack through pygments
        # (~50 ms a time): a failed check is its own message there too.
        return self.render(color=True).splitlines()

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnoses]

    def render(self, color: bool = True) -> str:
        red, yellow, reset = (RED, YELLOW, RESET) if color else ("", "", "")
        lines = [f"{red}✗ {self.question}: {self.summary}{reset}"]
        # Diagnosis first: it is the part a student can act on.
        for d in self.diagnoses:
            lines.append(f"  {yellow}Likely cause [{d.code}]:{reset} {d.message}")
        lines += [f"  {line}" for line in self.details]
        return "\n".join(lines)


class NotAnswered(CheckFailed):
    """The student's stub still raises NotImplementedError."""

    def __init__(self, question: str, name: str | None = None):
        what = f"`{name}`" if name else "this answer"
        super().__init__(
            question,
            "not answered yet",
            [f"{what} still raises NotImplementedError: replace the stub with your code."],
        )


@dataclass
class Passed:
    question: str
    note: str = ""
    notes: list[str] = field(default_factory=list)

    def show(self) -> None:
        extra = f" ({self.note})" if self.note else ""
        print(f"{GREEN}✓ {self.question}: passed{extra}{RESET}", file=sys.stdout)
        for n in self.notes:
            print(f"  {n}", file=sys.stdout)


def _short_traceback(shell, etype, value, tb, tb_offset=None):
    """IPython custom-exception handler: show a CheckFailed as its own short text.

    It still goes out as an `error` output (so nbgrader scores the cell 0), but the
    'traceback' is the check's message, not a wall of frames.
    """
    stb = value.render(color=True).splitlines()
    shell._showtraceback(etype, value, stb)
    return stb


def install_notebook_display() -> bool:
    """Register the short display for failed checks in the running IPython, if any.

    Idempotent and cheap: called on import and again whenever a check fails.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    if CheckFailed not in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((CheckFailed,), _short_traceback)
    return True
