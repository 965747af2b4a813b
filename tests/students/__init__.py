"""Simulated students: realistic submissions, and what grading must make of each.

Every module of this package is one assignment's corpus, found by
:func:`corpora` and graded through nbgrader by ``tests/test_corpus.py``. A module defines

- ``ASSIGNMENT``: the assignment's folder under ``source/`` and ``release/``;
- ``POINTS``: the automatic points of its notebook (the instructor's solution scores
  them all);
- ``STUDENTS``: name -> :class:`Student`, with at least ``perfect`` (no answer replaced),
  ``blank`` (the unmodified release) and ``alt_float32`` (a correct answer in float32).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Student:
    """One simulated submission and what grading must make of it.

    `answers` replaces answer cells of the release notebook (grade id -> code); every
    other answer cell keeps the instructor's solution. `lost` lists the test cells that
    must score 0, each with the diagnosis code its message must name (``None``: no
    cause may be named, the message must not guess); every other test cell must score
    full points. `says` holds text a test cell's message must contain (passed or failed),
    `prints` text (or patterns) the notebook must print somewhere. A `blank` student
    hands in the unmodified release: every test cell scores 0 and says "not answered yet".
    """

    about: str
    answers: dict[str, str] = field(default_factory=dict)
    lost: dict[str, str | None] = field(default_factory=dict)
    says: dict[str, tuple[str, ...]] = field(default_factory=dict)
    prints: tuple[str | re.Pattern, ...] = ()
    blank: bool = False

    @property
    def causes(self) -> dict[str, str]:
        """Test cell -> the diagnosis code its message must name."""
        return {gid: code for gid, code in self.lost.items() if code}


def corpora() -> dict[str, ModuleType]:
    """Assignment -> its corpus module: every module of this package."""
    modules = [
        importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
    ]
    return {m.ASSIGNMENT: m for m in sorted(modules, key=lambda m: m.ASSIGNMENT)}
