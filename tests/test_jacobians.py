"""Jacobian and VJP checks: references against torch, and each named mistake recognised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.assignments import a03
from autograder.checking import jacobians as jac
from autograder.checking.feedback import CheckFailed

F64 = torch.float64

# Coordinates away from 0, so no row of the test Jacobians vanishes (a vanishing row would
# make e.g. accumulated rows equal to the true ones).
coordinate = st.floats(0.1, 2.0).flatmap(lambda v: st.sampled_from([v, -v]))


@st.composite
def batches(draw, min_size=4, max_size=12):
    """A batch of N points in R², N ≥ 4 so that N never equals m = 3 or n = 2."""
    n = draw(st.integers(min_size, max_size))
    return torch.tensor(
        draw(st.lists(st.tuples(coordinate, coordinate), min_size=n, max_size=n)), dtype=F64
    )


FUNCTIONS = [fn for _, fn in a03.JACOBIAN_FUNCTIONS]


def loop_jacobian(f, x):
    """One backward per output component, .grad cleared between rows."""
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    rows = []
    for k in range(y.shape[1]):
        v = torch.zeros_like(y)
        v[:, k] = 1
        x.grad = None
        y.backward(v, retain_graph=True)
        rows.append(x.grad)
    return torch.stack(rows, dim=1)


def failure(fn, *args, **kwargs) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    return info.value


# --- references ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(x=batches(), which=st.integers(0, len(FUNCTIONS) - 1))
def test_batched_reference_matches_backward_loop_and_functional(x, which):
    """Does vmap(jacrev(f)) agree with a backward loop and with the diagonal blocks of
    torch.autograd.functional.jacobian, on any batch?"""
    f = FUNCTIONS[which]
    ref = jac.batched_jacobian(f, x)
    full = torch.autograd.functional.jacobian(f, x)
    i = torch.arange(x.shape[0])
    torch.testing.assert_close(ref, loop_jacobian(f, x))
    torch.testing.assert_close(ref, full[i, :, i, :])


@settings(max_examples=25, deadline=None)
@given(x=st.lists(coordinate, min_size=1, max_size=4), data=st.data())
def test_reference_vjp_is_v_times_jacobian(x, data):
    """Is reference_vjp vᵀJ with J from jacobian_matrix (outputs × inputs)?"""
    x = torch.tensor(x, dtype=F64)
    A = torch.tensor(
        data.draw(st.lists(coordinate, min_size=3 * len(x), max_size=3 * len(x))), dtype=F64
    ).reshape(3, len(x))

    def fn(t):
        return torch.sin(A @ t)

    v = torch.tensor(data.draw(st.lists(coordinate, min_size=3, max_size=3)), dtype=F64)
    J = jac.jacobian_matrix(fn, x)
    assert J.shape == (3, len(x))
    torch.testing.assert_close(J, torch.cos(A @ x)[:, None] * A)
    torch.testing.assert_close(jac.reference_vjp(fn, x, v), v @ J)


# --- check_jacobian: right answers pass, each mistake is named ---------------------------


@settings(max_examples=20, deadline=None)
@given(x=batches(), which=st.integers(0, len(FUNCTIONS) - 1))
def test_correct_jacobians_pass_in_float64_and_float32(x, which):
    """Does a right batched Jacobian pass, built any way, also in float32?"""
    f = FUNCTIONS[which]
    ref = jac.batched_jacobian(f, x)
    jac.check_jacobian("Q", "J", loop_jacobian(f, x), ref, batch=x.shape[0])
    jac.check_jacobian("Q", "J", loop_jacobian(f, x.float()), ref, batch=x.shape[0])
    jac.check_jacobian("Q", "J", ref.numpy(), ref, batch=x.shape[0])


@settings(max_examples=15, deadline=None)
@given(x=batches(), which=st.integers(0, len(FUNCTIONS) - 1))
def test_each_layout_mistake_is_named(x, which):
    """Are transposed, block-diagonal, batch-axis, flattened, accumulated-rows and
    aliased-.grad Jacobians each failed with their own finding?"""
    f = FUNCTIONS[which]
    ref = jac.batched_jacobian(f, x)
    n = x.shape[0]
    full = torch.autograd.functional.jacobian(f, x)
    cases = {
        "transposed": ref.transpose(1, 2),
        "block_diagonal": full,
        "flattened": ref.reshape(n * 3, 2),
        "accumulated_rows": ref.cumsum(dim=1),
        "grad_aliased": ref[:, -1:, :].expand_as(ref).clone(),
    }
    for p in [(1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]:
        cases[f"batch_axis {p}"] = ref.permute(*p)
    for name, wrong in cases.items():
        exc = failure(jac.check_jacobian, "Q6", "J", wrong, ref, batch=n)
        code = name.split()[0]
        assert code in exc.codes, (name, exc.codes)
        assert "wrong_layout" not in exc.codes
        assert f"[{code}]" in str(exc)


def test_aliased_rows_after_accumulation_name_the_sum():
    """Rows that all equal the sum of the true rows (x.grad stored, never cleared): named?"""
    x = a03.large_batch(1, n=6)
    ref = jac.batched_jacobian(a03.f, x)
    wrong = ref.sum(1, keepdim=True).expand_as(ref)
    exc = failure(jac.check_jacobian, "Q", "J", wrong, ref, batch=6)
    assert exc.codes == ["grad_aliased"]
    assert "sum of all true rows" in str(exc)


def test_single_point_transposed_jacobian():
    """A (2, 3) answer for a (3, 2) Jacobian at one point is called transposed."""
    ref = torch.tensor(a03.EXAMPLE_J)
    exc = failure(jac.check_jacobian, "Q2.3", "J", np.array(a03.EXAMPLE_J).T, ref)
    assert exc.codes == ["transposed"]


# --- check_vjp -----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(data=st.data(), m=st.integers(2, 4))
def test_vjp_mistakes_are_named(data, m):
    """Do a right VJP pass (float64 and float32), and J·v, 1ᵀJ, v·(vᵀJ) and J itself
    fail with v_and_j_swapped, ignored_v, v_applied_twice and returned_jacobian?"""
    J = torch.tensor(data.draw(st.lists(coordinate, min_size=m * m, max_size=m * m)), dtype=F64)
    J = J.reshape(m, m)
    v = torch.tensor(data.draw(st.lists(coordinate, min_size=m, max_size=m)), dtype=F64)
    right = v @ J
    jac.check_vjp("Q", "vjp", right, J=J, v=v, expected=right)
    jac.check_vjp("Q", "vjp", right.float(), J=J, v=v, expected=right)
    mistakes = {
        "ignored_v": torch.ones(m, dtype=F64) @ J,
        "v_applied_twice": right * v,
        "returned_jacobian": J,
    }
    if not torch.allclose(J, J.T, rtol=1e-3, atol=1e-3):
        mistakes["v_and_j_swapped"] = J @ v
    for code, wrong in mistakes.items():
        if torch.allclose(wrong.reshape(-1)[:m], right, rtol=1e-3, atol=1e-3):
            continue  # this draw makes the mistake indistinguishable from the answer
        exc = failure(jac.check_vjp, "Q", "vjp", wrong, J=J, v=v, expected=right)
        assert code in exc.codes, (code, exc.codes)
        if code != "returned_jacobian":
            # "100× the reference: accumulated" would send the student the wrong way.
            assert "accumulated" not in exc.codes


def test_swapped_product_that_cannot_be_formed_is_named():
    """J @ v with a non-square J raises: is that named as v and J swapped?"""
    J, v = np.array(a03.EXAMPLE_J), np.array(a03.EXAMPLE_V)

    def swapped(J, v):
        return J @ v

    exc = failure(jac.call_student, "Q2.1", swapped, J, v, jacobian_shape=J.shape)
    assert exc.codes == ["v_and_j_swapped"]
    assert "J has shape (3, 2)" in str(exc)


def test_batch_gradient_of_wrong_shape_is_explained():
    """A one-hot of shape (3,) for a batch output (N, 3): a hint, not a bare torch error."""
    x = a03.large_batch(2, n=5)

    def rows(f, x):
        x = x.clone().requires_grad_(True)
        f(x).backward(torch.tensor([1.0, 0.0, 0.0], dtype=F64))

    exc = failure(jac.call_student, "Q6.2", rows, a03.f, x)
    assert "gradient_shape" in exc.codes
    assert "v[:, k] = 1" in str(exc)


# --- require_vjp: how a vector-Jacobian product was computed --------------------------------


def _y(t):
    return torch.stack([t[0] * t[1], torch.sin(t[1]) + t[0], t[0] ** 2])


def _vjp_by_backward(x, v):
    x = x.detach().clone().requires_grad_(True)
    _y(x).backward(v)
    return x.grad


def _vjp_by_grad(x, v):
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(_y(x), x, grad_outputs=v)[0]


def _vjp_by_func(x, v):
    _, pullback = torch.func.vjp(_y, x)
    return pullback(v)[0]


def _vjp_by_functional(x, v):
    return torch.autograd.functional.vjp(_y, x, v)[1]


def _vjp_of_jacrev(x, v):
    return v @ torch.func.jacrev(_y)(x)


def _vjp_of_jacfwd(x, v):
    return v @ torch.func.jacfwd(_y)(x)


def _vjp_of_functional_jacobian(x, v):
    return v @ torch.autograd.functional.jacobian(_y, x)


def _vjp_of_rows(x, v):
    x = x.detach().clone().requires_grad_(True)
    y = _y(x)
    rows = [torch.autograd.grad(y[i], x, retain_graph=True)[0] for i in range(3)]
    return v @ torch.stack(rows)


def _vjp_by_formula(x, v):
    x0, x1 = x
    J = torch.stack(
        [
            torch.stack([x1, x0]),
            torch.stack([torch.ones(()), torch.cos(x1)]),
            torch.stack([2 * x0, torch.zeros(())]),
        ]
    )
    return v @ J


def _judge_vjp(fn):
    from autograder.checking import checks, methods, params

    checks.begin_check()
    x = torch.tensor([0.7, -1.3], dtype=F64)
    v = torch.tensor([1.5, -0.5, 2.0], dtype=F64)
    with params.autograd_apis(fn) as apis:
        got, _ = checks.call("Q", fn, x, v)
    torch.testing.assert_close(got, jac.reference_vjp(_y, x, v))
    jac.require_vjp("Q", fn.__name__, methods.LAST_CALL["Q"][2], apis, outputs=3)


@pytest.mark.parametrize("fn", [_vjp_by_backward, _vjp_by_grad, _vjp_by_func, _vjp_by_functional])
def test_every_reverse_vjp_api_is_a_vjp(fn):
    """backward(v), autograd.grad, torch.func.vjp and functional.vjp: each one reverse pass."""
    _judge_vjp(fn)


@pytest.mark.parametrize(
    ("fn", "evidence"),
    [
        (_vjp_of_jacrev, "torch.func.jacrev"),
        (_vjp_of_jacfwd, "torch.func.jacfwd"),
        (_vjp_of_functional_jacobian, "torch.autograd.functional.jacobian"),
        (_vjp_of_rows, "once per output (m = 3)"),
    ],
)
def test_a_jacobian_built_then_multiplied_is_not_a_vjp(fn, evidence):
    """Right values from a Jacobian built first: named not_a_vjp, with the evidence."""
    exc = failure(_judge_vjp, fn)
    assert exc.codes == ["not_a_vjp"]
    assert evidence in str(exc)


def test_a_formula_is_not_a_vjp_either():
    """The closed formula runs no autograd: named as a missing method, not guessed."""
    exc = failure(_judge_vjp, _vjp_by_formula)
    assert exc.codes == ["method_missing"]
