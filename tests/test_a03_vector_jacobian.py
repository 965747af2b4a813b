"""03_vector_jacobian's checks and the numbers of its notebook, without nbgrader.

The simulated students graded through nbgrader are in tests/students/a03_vector_jacobian.py.
"""

from __future__ import annotations

import re

import pytest
import torch

from autograder import notebooks
from autograder.assignments import a03
from autograder.checking.jacobians import (
    batched_jacobian,
    jacobian_matrix,
    reference_vjp,
    reference_vjps,
)
from tests.conftest import ROOT
from tests.students import a03_vector_jacobian as corpus

A = "03_vector_jacobian"
RELEASE = ROOT / "release" / A / f"{A}.ipynb"
F64 = torch.float64


def test_each_q6_cell_is_answered_each_way():
    """Across the solution and the two rotated students, does every Q6 cell see all three
    ways (a backward loop, functional.jacobian, vmap(jacrev))?"""
    for column in zip(*corpus.ROTATIONS, strict=True):
        assert sorted(column) == sorted(corpus.WAYS)
    assert corpus.STUDENTS["rotated_1"].answers.keys() == corpus.Q6_CELLS.keys()


# --- the curriculum's numbers ---------------------------------------------------------------

# Curriculum section 03, as written there; spaces, $ and the minus sign normalised.
CURRICULUM_NUMBERS = [
    "(6, 12)",
    "(6, 120)",
    "200",
    "2222",
    "(100, 100)",
    "(26, 1240)",
    "2, 22, 222, 2222",
    "(36, 81)",
    "(−12, −8)",
]


def _normal(text: str) -> str:
    return re.sub(r"[\s$]", "", text.replace("−", "-"))


@pytest.mark.parametrize("number", CURRICULUM_NUMBERS)
def test_every_curriculum_number_is_in_the_notebook(number):
    """Does each number of curriculum section 03 appear in the student's notebook?"""
    text = _normal("\n".join(c.source for c in notebooks.read(RELEASE).cells))
    assert _normal(number) in text


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def test_visible_numbers_are_what_torch_computes():
    """Are the numbers the visible tests compare with exactly what torch computes at the
    curriculum's inputs (so the visible tests check the curriculum, and it is right)?"""
    x = _t(a03.Y3X2_X)
    assert [(v, e) for v, e in a03.Y3X2_CASES] == [((1, 1), (6, 12)), ((1, 10), (6, 120))]
    for v, expected in a03.Y3X2_CASES:
        torch.testing.assert_close(reference_vjp(a03.y3x2, x, _t(v)), _t(expected))
    expected_cases = [200, 2222, (100, 100), (6, 120), (26, 1240)]
    assert [c[-1] for c in a03.WORKED_CASES] == expected_cases
    for _, fn, x0, v, expected in a03.WORKED_CASES:
        torch.testing.assert_close(reference_vjp(fn, _t(x0), _t(v)), _t(expected))
    torch.testing.assert_close(jacobian_matrix(a03.example, _t(a03.EXAMPLE_X)), _t(a03.EXAMPLE_J))
    torch.testing.assert_close(_t(a03.EXAMPLE_V) @ _t(a03.EXAMPLE_J), _t(a03.EXAMPLE_VJP))
    x1 = _t(a03.ACCUMULATION_X)
    per_call = [reference_vjp(a03.square, x1, _t(v)) for v in a03.ACCUMULATION_VS]
    torch.testing.assert_close(torch.stack(per_call).cumsum(0), _t(a03.ACCUMULATION_GRADS))
    assert a03.ACCUMULATION_GRADS == (2, 22, 222, 2222)
    ga, gb = reference_vjps(a03.q_function, (_t(a03.Q_A), _t(a03.Q_B)), _t(a03.Q_V))
    torch.testing.assert_close(ga, _t((36, 81)))
    torch.testing.assert_close(gb, _t((-12, -8)))
    assert (a03.Q_A_GRAD, a03.Q_B_GRAD) == ((36, 81), (-12, -8))


def test_analytic_jacobians_of_the_notebook_match_torch():
    """Do the analytic ∇g and J_f used by the checks equal torch's, on a batch in [−1, 1]²?"""
    x = a03.large_batch(3, n=50)
    torch.testing.assert_close(a03.jacobian_f(x), batched_jacobian(a03.f, x))
    grad = torch.func.vmap(torch.func.grad(a03.g))(x)
    torch.testing.assert_close(a03.grad_g(x), grad)
