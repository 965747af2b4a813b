"""Do the analytic questions ask for a derivative without stating it?

A question that asks for a formula ("work out f'(x) by hand") teaches nothing if its text
prints the formula: the student copies it, and the checks' diagnoses of wrong formulas
never fire. This test reads what a student sees of each analytic question in the released
notebook (its section's markdown, the stub's docstring, the demo cells), cuts the text into
candidate expressions (each side of every `=`, every entry of a list, tuple or matrix, in
LaTeX, in Unicode and in Python), evaluates each candidate it can parse at random points and
compares it with the answer. A question passes when no candidate equals its answer, and the
reading is shown to work: the function the question gives must be found the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_application,
    implicit_multiplication,
    parse_expr,
    standard_transformations,
)

from autograder import notebooks

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = ("x", "x0", "x1", "x2", "h", "y", "a", "b", "c", "d", "e")
_F = sympy.Function("f")
_TRANSFORMS = (
    *standard_transformations,
    implicit_multiplication,
    implicit_application,
    convert_xor,
)
_NAMES = {name: sympy.Symbol(name) for name in VARIABLES} | {
    "f": _F,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "log": sympy.log,
    "exp": sympy.exp,
    "sqrt": sympy.sqrt,
    "tanh": sympy.tanh,
    "pi": sympy.pi,
}


@dataclass(frozen=True)
class Question:
    """An analytic question: where its text is, and what it must state and must not."""

    assignment: str
    section: str  # the heading that opens the question's section, e.g. "## Q3 ·"
    answers: dict[str, Callable]  # what the student derives: name -> numpy function
    stated: dict[str, Callable]  # what the text must give (the function to differentiate)
    domain: dict[str, tuple[float, float]]  # variable -> sampling interval
    # Names the text may use for intermediate values (y = x³ + 4, a = x², …), as numpy
    # functions of the variables, so that "cos(y)·3x²" is read as the answer it is.
    aliases: dict[str, Callable] = field(default_factory=dict)
    f: Callable | None = None  # the function `f` stands for, where `f` is an argument
    first_index: int = 0  # the maths' index of code's x[..., 0] (x₁ where the text counts from 1)


def _cos_x2(v):
    return np.cos(v["x"] ** 2)


QUESTIONS: dict[str, Question] = {
    "01 Q1 finite differences": Question(
        "01_derivatives",
        "## Q1 ·",
        answers={
            "forward difference": lambda v: (np.exp(v["x"] + v["h"]) - np.exp(v["x"])) / v["h"],
            "central difference": lambda v: (
                (np.exp(v["x"] + v["h"]) - np.exp(v["x"] - v["h"])) / (2 * v["h"])
            ),
        },
        stated={"f(x) = 3x² − 4x": lambda v: 3 * v["x"] ** 2 - 4 * v["x"]},
        domain={"x": (0.5, 2.0), "h": (0.1, 0.5)},
        f=np.exp,
    ),
    "01 Q3.1 f_prime": Question(
        "01_derivatives",
        "## Q3 ·",
        answers={
            "f'(x)": lambda v: 2 * v["x"] + 2 * v["x"] * _cos_x2(v),
            "the derivative of sin(x²)": lambda v: 2 * v["x"] * _cos_x2(v),
        },
        stated={"f(x) = x² + sin(x²)": lambda v: v["x"] ** 2 + np.sin(v["x"] ** 2)},
        domain={"x": (0.3, 2.0)},
    ),
    "02 Q1.1 dz_dx": Question(
        "02_chain_rule",
        "## Q1 ·",
        answers={"dz/dx": lambda v: 3 * v["x"] ** 2 * np.cos(v["x"] ** 3 + 4)},
        stated={"y = x³ + 4": lambda v: v["x"] ** 3 + 4},
        domain={"x": (0.3, 2.0)},
        aliases={"y": lambda v: v["x"] ** 3 + 4},
    ),
    "02 Q3.1 f_prime": Question(
        "02_chain_rule",
        "## Q3 ·",
        answers={
            "f'(x)": lambda v: (
                2 / v["x"] * np.sin(v["x"]) + np.log(v["x"] ** 2) * np.cos(v["x"]) - 1 / v["x"] ** 2
            )
        },
        stated={"x²": lambda v: v["x"] ** 2, "1/x": lambda v: 1 / v["x"]},
        domain={"x": (0.3, 2.0)},
        aliases={
            "a": lambda v: v["x"] ** 2,
            "b": lambda v: np.log(v["x"] ** 2),
            "c": lambda v: np.sin(v["x"]),
            "d": lambda v: np.log(v["x"] ** 2) * np.sin(v["x"]),
            "e": lambda v: 1 / v["x"],
        },
    ),
    "03 Q2.3 jacobian_example": Question(
        "03_vector_jacobian",
        "## Q2 ·",
        # The entries of J that are not constants (a 0 or 10 in the text says nothing).
        answers={
            "∂y₁/∂x₁ = 6x₁": lambda v: 6 * v["x1"],
            "∂y₂/∂x₁ = 2x₁": lambda v: 2 * v["x1"],
            "∂y₂/∂x₂ = 6x₂²": lambda v: 6 * v["x2"] ** 2,
        },
        stated={
            "y₁ = 3x₁²": lambda v: 3 * v["x1"] ** 2,
            "y₂ = x₁² + 2x₂³": lambda v: v["x1"] ** 2 + 2 * v["x2"] ** 3,
        },
        domain={"x1": (0.3, 2.0), "x2": (0.3, 2.0)},
        first_index=1,
    ),
    "03 Q5.1 grad_g": Question(
        "03_vector_jacobian",
        "## Q5 ·",
        answers={
            "∂g/∂x₀": lambda v: v["x1"] + v["x1"] ** 2 * np.cos(v["x0"] * v["x1"] ** 2),
            "∂g/∂x₁": lambda v: v["x0"] + 2 * v["x0"] * v["x1"] * np.cos(v["x0"] * v["x1"] ** 2),
        },
        stated={"g(x)": lambda v: v["x0"] * v["x1"] + np.sin(v["x0"] * v["x1"] ** 2)},
        domain={"x0": (0.3, 2.0), "x1": (0.3, 2.0)},
    ),
    "03 Q6.1 jacobian_f": Question(
        "03_vector_jacobian",
        "## Q6 ·",
        answers={
            "∂f₂/∂x₁": lambda v: np.cos(v["x1"] + v["x2"] ** 2),
            "∂f₂/∂x₂": lambda v: 2 * v["x2"] * np.cos(v["x1"] + v["x2"] ** 2),
            "∂f₃/∂x₁": lambda v: 2 * v["x1"],
        },
        stated={
            "f₂ = sin(x₁ + x₂²)": lambda v: np.sin(v["x1"] + v["x2"] ** 2),
            "f₃ = x₁² − 3x₂": lambda v: v["x1"] ** 2 - 3 * v["x2"],
        },
        domain={"x1": (0.3, 2.0), "x2": (0.3, 2.0)},
        first_index=1,
    ),
}


# --- reading the text ----------------------------------------------------------------------


@cache
def _release(assignment: str):
    return notebooks.read(ROOT / "release" / assignment / f"{assignment}.ipynb")


def section_text(assignment: str, heading: str) -> str:
    """Every cell a student sees from `heading` up to the next question's heading."""
    cells, inside = [], False
    for cell in _release(assignment).cells:
        first = cell.source.lstrip()
        if cell.cell_type == "markdown" and first.startswith("## "):
            inside = first.startswith(heading)
        if inside:
            cells.append(cell.source)
    assert cells, f"{assignment}: no section starting {heading!r}"
    return "\n\n".join(cells)


def _braced(text: str, start: int) -> int:
    """Index just past the brace group opening at text[start] == '{'."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return len(text)


def _fracs(text: str) -> str:
    r"""\frac{A}{B} -> ((A)/(B)), innermost groups handled by recursion."""
    while (i := text.find("\\frac")) >= 0:
        j = i + len("\\frac")
        if j >= len(text) or text[j] != "{":
            return text.replace("\\frac", "", 1)
        k = _braced(text, j)
        if k >= len(text) or text[k] != "{":
            return text[:i] + text[j:]
        m = _braced(text, k)
        num, den = _fracs(text[j + 1 : k - 1]), _fracs(text[k + 1 : m - 1])
        text = text[:i] + f"(({num})/({den}))" + text[m:]
    return text


_SUPERSCRIPTS = {"²": "**2", "³": "**3", "⁻¹": "**(-1)", "⁻²": "**(-2)"}
_SUBSCRIPTS = str.maketrans("₀₁₂₃", "0123")


def normalise(text: str, first_index: int = 0) -> str:
    """LaTeX, Unicode maths and torch code as one plain syntax sympy reads."""
    text = text.replace("\\\\", " & ")  # a matrix's row break is a cell break
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = _fracs(text)
    for word in ("left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "displaystyle"):
        text = text.replace("\\" + word, " ")
    text = re.sub(r"\\(begin|end)\{[a-z]*\}", " ", text)
    text = re.sub(r"\\(sin|cos|tan|tanh|log|exp|sqrt)\b", r" \1", text)
    text = re.sub(r"\\(cdot|times|odot)", "*", text)
    text = re.sub(r"\\[,;:! ]", " ", text)
    for sup, power in _SUPERSCRIPTS.items():
        text = text.replace(sup, power)
    text = text.translate(_SUBSCRIPTS)
    text = text.replace("·", "*").replace("−", "-").replace("×", "*")
    text = re.sub(r"\b(torch|np|numpy|math)\.", "", text)
    # Indexing: x[..., 0], x[:, 0], x[0] -> x0
    text = re.sub(
        r"\b([a-z])\[(?:\.\.\.,\s*|:,\s*)?(\d)\]",
        lambda m: f"{m[1]}{int(m[2]) + first_index}",
        text,
    )
    text = re.sub(r"_\{(\w+)\}", r"\1", text)
    text = re.sub(r"_(\w)", r"\1", text)
    text = text.replace("^", "**").replace("{", "(").replace("}", ")")
    # Separate x0x1 -> x0 x1 (implicit multiplication of indexed names).
    text = re.sub(r"([a-z]\d)(?=[a-z])", r"\1 ", text)
    return text


# Where a candidate ends: relations, list separators, LaTeX spacing and matrix cells, prose.
_CUTS = re.compile(r"==|=|≈|,|;|:|\n|\$|&|\\q?quad|`|\||\"|'|#|\bgives\b|\bis\b|\band\b|\bof\b")
# A word no expression of these questions holds: the piece is prose.
_PROSE = re.compile(r"\b(?!(?:sin|cos|tan|tanh|log|exp|sqrt)\b)[A-Za-z]{4,}\b")


def _balanced(piece: str) -> str:
    """The piece with unmatched leading '(' or trailing ')' removed."""
    piece = piece.strip().strip("\"'").strip().rstrip(".")
    for _ in range(4):
        depth, low = 0, 0
        for ch in piece:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            low = min(low, depth)
        if low < 0 and piece.endswith(")"):
            piece = piece[:-1].strip()
        elif depth > 0 and piece.startswith("("):
            piece = piece[1:].strip()
        else:
            break
    return piece


def candidates(text: str, first_index: int = 0) -> list[str]:
    """Every piece of the text that could be an expression."""
    pieces = []
    for piece in _CUTS.split(normalise(text, first_index)):
        piece = _balanced(piece)
        if piece and len(piece) < 200 and re.search(r"[a-z]", piece) and not _PROSE.search(piece):
            pieces.append(piece)
    return pieces


@cache
def _parse(piece: str):
    try:
        expr = parse_expr(piece, local_dict=dict(_NAMES), transformations=_TRANSFORMS)
    except BaseException:  # sympy's parser raises anything on prose
        return None
    return expr if isinstance(expr, sympy.Expr) else None


def _samples(question: Question, n: int = 5) -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    points = []
    for _ in range(n):
        v = {name: float(rng.uniform(*span)) for name, span in question.domain.items()}
        v |= {name: float(fn(v)) for name, fn in question.aliases.items()}
        points.append(v)
    return points


def _value(expr, point: dict[str, float], f: Callable | None):
    free = {s.name for s in expr.free_symbols}
    if not free or not free <= set(point):
        return None  # a constant, or names this question does not define
    if any(isinstance(fn, sympy.core.function.AppliedUndef) for fn in expr.atoms(sympy.Function)):
        if f is None:
            return None
    names = sorted(free)
    try:
        fn = sympy.lambdify(
            [sympy.Symbol(n) for n in names], expr, modules=[{"f": f or np.sin}, "numpy"]
        )
        with np.errstate(all="ignore"):
            value = complex(fn(*(point[n] for n in names)))
    except Exception:
        return None
    return value if np.isfinite(value) else None


def found(question: Question, text: str, targets: dict[str, Callable]) -> dict[str, str]:
    """{target name: the candidate of the text equal to it} for every target the text holds."""
    points = _samples(question)
    expected = {name: [fn(p) for p in points] for name, fn in targets.items()}
    hits: dict[str, str] = {}
    for piece in dict.fromkeys(candidates(text, question.first_index)):
        expr = _parse(piece)
        if expr is None:
            continue
        values = [_value(expr, p, question.f) for p in points]
        if any(v is None for v in values):
            continue
        for name, want in expected.items():
            if name not in hits and all(
                abs(v.imag) < 1e-9 and np.isclose(v.real, w, rtol=1e-9, atol=1e-9)
                for v, w in zip(values, want, strict=True)
            ):
                hits[name] = piece
    return hits


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_analytic_question_does_not_state_its_answer(name):
    """Does the question give the function and leave its derivative to the student?"""
    question = QUESTIONS[name]
    text = section_text(question.assignment, question.section)
    stated = found(question, text, question.stated)
    assert set(stated) == set(question.stated), (
        f"{name}: the text was not read: the function it gives was not found "
        f"({sorted(set(question.stated) - set(stated))})"
    )
    leaked = found(question, text, question.answers)
    assert not leaked, f"{name}: the text states its answer: {leaked}"


# Sentences the notebooks used to print, each stating the answer of its question: the
# reading must find every one of them.
STATED_ANSWERS = [
    ("01 Q1 finite differences", '"""Forward-difference approximation: (f(x + h) - f(x)) / h."""'),
    (
        "01 Q1 finite differences",
        r"the **central difference** $\dfrac{f(x+h) - f(x-h)}{2h}$, whose error shrinks like $h^2$",
    ),
    ("01 Q3.1 f_prime", r"By the chain rule, $f'(x) = 2x + 2x\cos(x^2)$."),
    ("01 Q3.1 f_prime", '"""f\'(x) = 2x + 2x·cos(x²), element-wise, written as a formula."""'),
    (
        "02 Q1.1 dz_dx",
        r"$$\frac{dz}{dx} = \frac{dz}{dy}\cdot\frac{dy}{dx} = \cos(y)\cdot 3x^2 = 3x^2\cos(x^3 + 4).$$",
    ),
    ("02 Q1.1 dz_dx", 'print("3x²·cos(x³ + 4) =", (3 * 7**2 * math.cos(7**3 + 4)))'),
    (
        "02 Q3.1 f_prime",
        r"$$f'(x) = \frac{2}{x}\sin x + \log(x^2)\cos x - \frac{1}{x^2}.$$",
    ),
    (
        "02 Q3.1 f_prime",
        r"$$\bar x = \bar a\cdot 2x + \bar c\cdot\cos x + \bar e\cdot\left(-\frac{1}{x^2}\right)$$"
        r" with $\bar a = \frac{c}{a}$, $\bar c = b$, $\bar e = 1$ … $$\bar x = \frac{c}{a}\cdot 2x"
        r" + b\cos x - \frac{1}{x^2}$$",
    ),
    (
        "03 Q2.3 jacobian_example",
        r"J = \begin{pmatrix} 6x_1 & 0 \\ 2x_1 & 6x_2^2 \\ 0 & 10 \end{pmatrix}.$$",
    ),
    (
        "03 Q5.1 grad_g",
        r"$$\nabla g = \bigl(x_1 + x_1^2 \cos(x_0 x_1^2),\;\; x_0 + 2 x_0 x_1 \cos(x_0 x_1^2)\bigr).$$",
    ),
    (
        "03 Q6.1 jacobian_f",
        r"J = \begin{pmatrix} x_2 & x_1 \\ \cos(x_1 + x_2^2) & 2x_2 \cos(x_1 + x_2^2) \\ 2x_1"
        r" & -3 \end{pmatrix}.$$",
    ),
    ("03 Q6.1 jacobian_f", "c = torch.cos(x[:, 0] + x[:, 1]**2)  # ∂f₂/∂x₁"),
]


@pytest.mark.parametrize(("name", "sentence"), STATED_ANSWERS)
def test_the_reading_finds_a_stated_answer(name, sentence):
    """Would a sentence that states the answer be caught (in LaTeX, Unicode or code)?"""
    assert found(QUESTIONS[name], sentence, QUESTIONS[name].answers)


def test_the_reading_ignores_other_functions():
    """Is a worked example on another function, or a value at a point, left alone?"""
    question = QUESTIONS["01 Q3.1 f_prime"]
    text = (
        r"For example, $h(x) = \cos(3x)$ has $h'(x) = -\sin(3x)\cdot 3 = -3\sin(3x)$."
        r" At $x = 1$, $f'(1) = 2 + 2\cos 1 \approx 3.08$."
    )
    assert not found(question, text, question.answers)
