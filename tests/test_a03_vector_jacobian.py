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


# --- the methods the questions name -------------------------------------------------------


def _fails_with(check, fn, code, monkeypatch, seed="0"):
    from autograder.checking.feedback import CheckFailed

    monkeypatch.setenv("AUTOGRADER_SEED", seed)
    with pytest.raises(CheckFailed) as info:
        check(fn, hidden=True)
    assert info.value.codes == [code], str(info.value)


def _rows_loop(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    rows = []
    for k in range(y.shape[1]):
        v = torch.zeros_like(y)
        v[:, k] = 1.0
        rows.append(torch.autograd.grad(y, x, v, retain_graph=True)[0])
    return torch.stack(rows, dim=1)


def _rows_per_sample(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    J = torch.zeros(*y.shape, x.shape[1], dtype=x.dtype)
    for i in range(y.shape[0]):
        for k in range(y.shape[1]):
            J[i, k] = torch.autograd.grad(y[i, k], x, retain_graph=True)[0][i]
    return J


def _rows_batched(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    onehots = torch.zeros(y.shape[1], *y.shape, dtype=x.dtype)
    for k in range(y.shape[1]):
        onehots[k, :, k] = 1.0
    return torch.autograd.grad(y, x, onehots, is_grads_batched=True)[0].permute(1, 0, 2)


def test_rows_need_one_backward_per_output_component(monkeypatch):
    """Q6.2: m reverse passes pass; one per sample and output, or one batched pass, do not;
    nor do vmap(jacrev) and functional.jacobian (another way)."""
    monkeypatch.setenv("AUTOGRADER_SEED", "3")
    a03.check_jacobian_rows(_rows_loop, hidden=True)
    for wrong in (_rows_per_sample, _rows_batched):
        _fails_with(a03.check_jacobian_rows, wrong, "one_backward_per_row", monkeypatch)

    def by_vmap(f, x):
        return torch.func.vmap(torch.func.jacrev(f))(x)

    def by_functional(f, x):
        return torch.autograd.functional.jacobian(lambda t: f(t).sum(0), x).permute(1, 0, 2)

    for wrong in (by_vmap, by_functional):
        _fails_with(a03.check_jacobian_rows, wrong, "wrong_api", monkeypatch)


def test_functional_and_vmap_questions_need_their_api(monkeypatch):
    """Q6.3 and Q6.4: the row loop gets the values, not the point; vmap(jacfwd) is vmap."""
    _fails_with(a03.check_jacobian_functional, _rows_loop, "wrong_api", monkeypatch)
    _fails_with(a03.check_jacobian_vmap, _rows_loop, "wrong_api", monkeypatch)
    a03.check_jacobian_vmap(lambda f, x: torch.func.vmap(torch.func.jacfwd(f))(x), hidden=True)


def test_numpy_product_must_be_numpy(monkeypatch):
    """Q2.1: the product in torch fails, returned as a tensor or converted back."""
    _fails_with(
        a03.check_vjp_from_jacobian,
        lambda J, v: torch.as_tensor(v) @ torch.as_tensor(J),
        "not_numpy",
        monkeypatch,
    )
    _fails_with(
        a03.check_vjp_from_jacobian,
        lambda J, v: (torch.from_numpy(v) @ torch.from_numpy(J)).numpy(),
        "not_numpy",
        monkeypatch,
    )
    a03.check_vjp_from_jacobian(lambda J, v: J.T @ v, hidden=True)


def test_accumulation_must_happen_in_grad(monkeypatch):
    """Q3.2: summing separate gradients by hand, or rebuilding y per call, fails."""

    def by_hand(f, x, vs):
        x = x.detach().clone().requires_grad_(True)
        y = f(x)
        each = [torch.autograd.grad(y, x, v, retain_graph=True)[0] for v in vs]
        return torch.cumsum(torch.stack(each), dim=0)

    def rebuilt(f, x, vs):
        x = x.detach().clone().requires_grad_(True)
        out = []
        for v in vs:
            f(x).backward(v)
            out.append(x.grad.clone())
        return torch.stack(out)

    _fails_with(a03.check_accumulated_grads, by_hand, "summed_by_hand", monkeypatch)
    _fails_with(a03.check_accumulated_grads, rebuilt, "rebuilt_graph", monkeypatch)


def test_prediction_is_checked_for_a_scalar_and_a_vector_x(monkeypatch):
    """Q3.1: a formula written for a 0-d x only fails the hidden test."""
    from autograder.checking.feedback import CheckFailed

    monkeypatch.setenv("AUTOGRADER_SEED", "0")
    a03.check_predicted_grads(lambda x, vs: 2 * x * torch.cumsum(vs, dim=0), hidden=True)
    with pytest.raises(CheckFailed):
        a03.check_predicted_grads(lambda x, vs: 2 * x.item() * torch.cumsum(vs, dim=0), hidden=True)
