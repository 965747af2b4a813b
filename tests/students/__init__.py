"""Simulated students: realistic submissions with their expected scores and diagnoses.

Each assignment module defines `ASSIGNMENT` and `STUDENTS`, a dict of name -> Student.
A Student replaces some answer cells of the release notebook (the rest keep the
instructor's solution), lists the test cells it must lose (all others keep full
points), and the diagnosis code each lost cell's message must name.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Student:
    answers: dict[str, str]
    lost: set[str] = field(default_factory=set)
    diagnoses: dict[str, str] = field(default_factory=dict)
    about: str = ""
    # Replace the whole notebook by the unmodified release (a blank submission).
    blank: bool = False
