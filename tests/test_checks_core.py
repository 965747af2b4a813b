"""The checking library on its own: comparisons, diagnoses, forbidden calls, plots."""

from __future__ import annotations

import math
import sys

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.checking import methods
from autograder.checking.checks import call
from autograder.checking.compare import check_close, check_outputs
from autograder.checking.diagnose import Context, explain_exception
from autograder.checking.feedback import CheckFailed
from autograder.checking.forbid import autograd_calls, bound_references, recording, source_mentions
from autograder.checking.plots import check_curves
from autograder.checking.sampling import generator, uniform

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

finite = st.floats(-50, 50, allow_nan=False).filter(lambda v: abs(v) > 1e-2)
vectors = st.lists(finite, min_size=1, max_size=8).map(
    lambda v: torch.tensor(v, dtype=torch.float64)
)


def _fail(*args, **kwargs) -> CheckFailed:
    methods.LAST_CALL.pop("Q9 demo", None)  # no student call recorded: no evidence
    with pytest.raises(CheckFailed) as info:
        check_close("Q9 demo", "the gradient", *args, **kwargs)
    return info.value


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=8))
def test_correct_float32_answer_passes_against_float64_reference(values):
    """Is a correct answer computed in float32 accepted against a float64 reference, even
    near zeros of the derivative (where float32 cancellation is largest)?"""
    x = torch.tensor(values, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (torch.sin(xr) * xr**2).sum().backward()
    x32 = x.float().requires_grad_(True)
    (torch.sin(x32) * x32**2).sum().backward()
    check_close("Q", "grad", x32.grad, xr.grad)


@given(vectors, st.integers(2, 5))
@settings(max_examples=25, deadline=None)
def test_k_times_reference_from_k_backward_calls_is_diagnosed_as_accumulation(x, k):
    """Is a gradient k times the reference named as accumulated over k backward calls,
    when the student's function did run backward k times?"""

    def accumulating(t):  # backward k times on one leaf, never zeroed between
        leaf = t.detach().clone().requires_grad_(True)
        for _ in range(k):
            (leaf**2).sum().backward()
        return leaf.grad

    got, _ = call("Q9 demo", accumulating, x.clone())
    with pytest.raises(CheckFailed) as info:
        check_close("Q9 demo", "the gradient", got, 2 * x)
    assert "accumulated" in info.value.codes
    assert f"exactly {k}×" in info.value.render(color=False)


@given(vectors, st.integers(2, 5))
@settings(max_examples=25, deadline=None)
def test_k_times_reference_without_backward_is_not_called_accumulation(x, k):
    """Is a k-fold answer from a function that never ran backward (a finite difference
    divided by h instead of 2h) kept from being called accumulation?"""

    def central_over_h(t):
        return ((t + 1e-3) ** 2 - (t - 1e-3) ** 2) / 1e-3 * (k / 2)

    got, _ = call("Q9 demo", central_over_h, x.clone())
    with pytest.raises(CheckFailed) as info:
        check_close("Q9 demo", "the gradient", got, 2 * x)
    assert "accumulated" not in info.value.codes
    if x.numel() >= 2:
        assert "constant_factor" in info.value.codes
    else:  # one number is a multiple of any other: no cause is guessed
        assert info.value.codes == []


@given(vectors)
def test_sign_flip_is_diagnosed(x):
    """Is a negated gradient named as a sign flip?"""
    assert "sign_flipped" in _fail(-3 * x, 3 * x).codes


def test_message_shows_worst_element_index_and_tolerance():
    """Does a failure name the question, the worst element with its index, and the tolerance?"""
    text = _fail(
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
        torch.tensor([1.0, 4.0, 3.5], dtype=torch.float64),
    ).render(color=False)
    assert text.startswith("✗ Q9 demo: the gradient differs from the reference")
    assert "Mismatched elements: 2 / 3 (66.7%)" in text
    assert "Greatest absolute difference: 2 at index (1,)" in text
    assert "allowed" in text and "rtol 1e-07" in text


def test_structure_is_checked_before_values():
    """Are None, wrong type, integer dtype and wrong shape reported before any value?"""
    ref = torch.ones(3, dtype=torch.float64)
    assert "none_grad" in _fail(None, ref).codes
    assert "wrong type" in _fail("abc", ref).summary
    assert "integer_dtype" in _fail(torch.ones(3, dtype=torch.int64), ref).codes
    assert "wrong shape" in _fail(torch.ones(4), ref).summary


def test_jacobian_layout_diagnoses():
    """Are a transposed, a block-diagonal and a batch-summed Jacobian told apart?"""
    g = generator("jac")
    J = uniform(g, (5, 3, 2), -1, 1)
    assert "transposed" in _fail(J.transpose(-1, -2), J, context=Context(jacobian=True)).codes
    full = torch.zeros(5, 3, 5, 2, dtype=torch.float64)
    for i in range(5):
        full[i, :, i, :] = J[i]
    assert "block_diagonal" in _fail(full, J, context=Context(jacobian=True, batch=5)).codes
    assert "summed_over_batch" in _fail(J.sum(0), J).codes
    rows = J.cumsum(dim=-2)
    assert "accumulated_rows" in _fail(rows, J, context=Context(jacobian=True)).codes


def test_missing_chain_rule_factor_is_named():
    """Is an answer missing a known inner derivative named with that factor?"""
    x = torch.linspace(0.5, 2, 7, dtype=torch.float64)
    err = _fail(torch.cos(x**2), 2 * x * torch.cos(x**2), context=Context(factors={"2x": 2 * x}))
    assert "missing_chain_factor" in err.codes and "2x" in err.render(color=False)


@pytest.mark.parametrize(
    "code, body",
    [
        ("nonscalar_backward", "y = x * 2; y.backward()"),
        ("graph_freed", "y = (x * x).sum(); y.backward(); y.backward()"),
        ("numpy_requires_grad", "x.numpy()"),
        ("no_grad_fn", "y = (x.detach() * 2).sum(); y.backward()"),
        ("integer_requires_grad", "torch.tensor([1, 2], requires_grad=True)"),
        ("inplace_modified", "y = x.sin(); z = y.cos(); y += 1; z.sum().backward()"),
    ],
)
def test_torch_errors_become_plain_hints(code, body):
    """Does each common torch error raised by student code get its plain-language hint?"""

    def student(x):
        exec(body, {"torch": torch, "x": x})

    with pytest.raises(CheckFailed) as info:
        call("Q", student, torch.ones(2, requires_grad=True))
    assert code in info.value.codes, info.value.render(color=False)


def test_stub_reports_not_answered():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(CheckFailed) as info:
        call("Q1", stub, 1)
    assert "not answered yet" in info.value.render(color=False)


def test_autograd_backward_of_sin_is_not_a_use_of_cos():
    """Does autograd's own backward of sin pass the no-cos recorder?"""
    with recording({"cos"}) as hits:
        x = torch.linspace(0, 1, 5, requires_grad=True)
        torch.sin(x).sum().backward()
    assert hits == []


@pytest.mark.parametrize(
    "expr",
    [
        "torch.cos(x)",
        "x.cos()",
        'getattr(torch, "co" + "s")(x)',
        "np.cos(x.numpy())",
        "[math.cos(v) for v in x.tolist()]",
        "torch.Tensor.cos(x)",
    ],
)
def test_cos_is_seen_at_run_time(expr):
    """Is every spelling of cos recorded while the answer runs?"""
    with recording({"cos"}) as hits:
        eval(expr, {"torch": torch, "np": np, "math": math, "x": torch.linspace(0, 1, 3)})
    assert hits


def test_cos_bound_before_the_check_and_in_source_is_found():
    """Are aliases bound earlier, and imports in the source, reported?"""
    scope = {"torch": torch, "_c": getattr(torch, "c" + "os")}
    exec("def f(x):\n    return _c(x)", scope)
    assert bound_references(scope["f"], {"cos"}) == ["`_c` is torch.cos"]
    assert source_mentions("from torch import cos as c\ny = c(x)", {"cos"})
    assert source_mentions("y = np.cos(x)", {"cos"})
    assert not source_mentions("# cos is forbidden\ny = 'cos'", {"cos"})


def test_autograd_engine_runs_are_recorded_however_imported():
    """Are backward, autograd.grad, functional.jacobian and torch.func all seen?"""
    from torch.autograd import grad as imported_grad

    x = torch.ones(2, requires_grad=True)
    with autograd_calls() as runs:
        imported_grad((x * x).sum(), x)
        torch.func.jacrev(torch.sin)(torch.ones(2))
        torch.autograd.functional.jacobian(torch.sin, torch.ones(2))
    assert len(runs) >= 3
    with autograd_calls() as runs:
        2 * torch.ones(2) + torch.cos(torch.ones(2))
    assert runs == []


def test_plot_curves_identified_by_data_not_order():
    """Are curves found by their data whatever their order, with labels required?"""
    x = np.linspace(-3, 3, 50)
    fig, ax = plt.subplots()
    ax.plot(x, np.cos(x))
    ax.plot(x, np.sin(x))
    with pytest.raises(CheckFailed, match="not labelled"):
        check_curves("Q5", fig, {"sin": np.sin, "cos": np.cos})
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    check_curves("Q5", fig, {"sin": np.sin, "cos": np.cos})
    with pytest.raises(CheckFailed, match="missing"):
        check_curves("Q5", fig, {"sin": np.sin, "tan": np.tan})
    plt.close(fig)


@settings(max_examples=30)
@given(st.floats(-5, 5), st.floats(0.1, 5))
def test_uniform_draws_avoid_the_excluded_interval(lo, width):
    """Do fresh draws stay inside the domain and out of the avoided interval?"""
    g = torch.Generator().manual_seed(0)
    x = uniform(g, 200, lo, lo + width + 1, avoid=((lo + 0.2, lo + 0.4),))
    assert bool(((x >= lo) & (x <= lo + width + 1)).all())
    assert not bool(((x > lo + 0.2) & (x < lo + 0.4)).any())


def test_draws_are_fresh_unless_seeded(monkeypatch):
    """Are hidden-test inputs new on every run, and reproducible only with a seed?"""
    monkeypatch.delenv("AUTOGRADER_SEED", raising=False)
    a = uniform(generator("q"), 4, 0, 1)
    b = uniform(generator("q"), 4, 0, 1)
    assert not torch.equal(a, b)
    monkeypatch.setenv("AUTOGRADER_SEED", "7")
    assert torch.equal(uniform(generator("q"), 4, 0, 1), uniform(generator("q"), 4, 0, 1))
    assert not torch.equal(uniform(generator("q"), 4, 0, 1), uniform(generator("r"), 4, 0, 1))


NONE_CASES = {
    "no_backward": """
def student(x):
    x = x.clone().requires_grad_(True)
    y = (x * x).sum()
    return x.grad
""",
    "nonleaf_grad": """
def student(x):
    x = torch.tensor(x.tolist(), requires_grad=True) * 1.0
    (x * x).sum().backward()
    return x.grad
""",
    "detached": """
def student(x):
    x = x.clone().requires_grad_(True)
    y = torch.tensor((x * x).sum().item(), requires_grad=True)
    y.backward()
    return x.grad
""",
    "requires_grad_after_copy": """
def student(x):
    leaf = x.clone()
    work = leaf.float()
    leaf.requires_grad_(True)
    y = (work * work).sum()
    y.backward()
    return leaf.grad
""",
}


@pytest.mark.parametrize("code", sorted(NONE_CASES))
def test_none_gradient_causes_are_told_apart(tmp_path, code):
    """Is a None gradient explained by its cause: no backward, a non-leaf read, a detached
    computation, requires_grad switched on after a copy?"""
    import importlib.util

    path = tmp_path / f"student_{code}.py"
    path.write_text("import torch\n" + NONE_CASES[code])
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(CheckFailed) as info:
        got, _ = call(f"Q none {code}", module.student, x)
        check_close(f"Q none {code}", "the gradient", got, 2 * x)
    assert info.value.codes[0] == code, info.value.render(color=False)


def test_unused_input_error_gets_its_hint():
    """Does torch's 'appears to not have been used in the graph' error get its hint?"""

    def student(x):
        y = torch.ones(2, requires_grad=True)
        return torch.autograd.grad((x * x).sum(), [x, y])

    with pytest.raises(CheckFailed) as info:
        call("Q", student, torch.ones(2, requires_grad=True))
    assert "unused_input" in info.value.codes


# --- what an answer did while it ran (autograder.checking.methods) -----------------------


def _record(fn, *args, options=frozenset({methods.SHIFTS})):
    hits: list[str] = []
    with methods.recording(args, hits, options) as watched:
        fn(*watched)
    return set(hits)


def _cube(x):
    return x**3 - x


def _by_backward(f, x):
    x = x.detach().clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


def _by_forward_mode(f, x):
    return torch.func.jvp(f, (x,), (torch.ones_like(x),))[1]


def _by_central_difference(f, x):
    return (f(x + 1e-6) - f(x - 1e-6)) / 2e-6


def _by_own_difference(f, x):
    return ((x + 1e-5) ** 3 - (x - 1e-5) ** 3) / 2e-5 - 1


def _by_complex_step(f, x):
    return (x.to(torch.complex128) + 1e-20j).pow(3).imag / 1e-20 - 1


def _by_formula_in_float32(f, x):
    x = x.float()
    return 3 * x**2 - 1


@pytest.mark.parametrize(
    "answer, used",
    [
        (_by_backward, {methods.REVERSE}),
        (_by_forward_mode, {methods.FORWARD}),
        (_by_central_difference, {methods.NUMERICAL}),
        (_by_own_difference, {methods.NUMERICAL}),
        (_by_complex_step, {methods.NUMERICAL}),
        (_by_formula_in_float32, set()),
    ],
)
def test_the_record_names_the_mechanism_an_answer_used(answer, used):
    """Is each way of reaching f'(x) recorded as what it is: the engine, forward mode, or
    a numerical difference (of the given function or of the answer's own formula) — and a
    formula computed in float32 as none of them?"""
    x = torch.linspace(-2, 2, 7, dtype=torch.float64)
    record = methods.Record.of(list(_record(answer, _cube, x)))
    assert record.used == used


def _own_numpy_difference(x):
    xn = x.numpy()
    return torch.from_numpy(((xn + 1e-5) ** 3 - (xn - 1e-5) ** 3) / 2e-5 - 1)


def _own_float_difference(x):
    return torch.tensor([((v + 1e-6) ** 3 - (v - 1e-6) ** 3) / 2e-6 - 1 for v in x.tolist()])


def _own_asarray_difference(x):
    xn = np.asarray(x)
    return torch.from_numpy(((xn + 1e-5) ** 3 - (xn - 1e-5) ** 3) / 2e-5 - 1)


def _own_array_difference(x):  # a copy, stepped in place one entry at a time
    out = []
    for i in range(len(x)):
        up, down = np.array(x), np.array(x, dtype=np.float64)
        up[i] += 1e-5
        down[i] -= 1e-5
        out.append(float(((up**3 - down**3) / 2e-5 - 1)[i]))
    return torch.tensor(out)


def _own_list_array_difference(x):
    xn = np.array(x.detach().tolist())
    return torch.from_numpy((np.sin(xn + 1e-6) - np.sin(xn)) / 1e-6)


def _formula_in_asarray(x):
    xn = np.asarray(x.detach())
    return torch.from_numpy(np.array(3 * xn**2 - 1) + np.asarray(x) * 0)


def _stable_softplus(x):  # an input plus a varying small term: not a step
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def _formula_in_numpy(x):
    xn = x.numpy()
    return torch.from_numpy(3 * xn**2 - 1 + np.zeros_like(xn))


@pytest.mark.parametrize(
    "answer, shifted",
    [
        (_own_numpy_difference, True),
        (_own_float_difference, True),
        (_own_asarray_difference, True),
        (_own_array_difference, True),
        (_own_list_array_difference, True),
        (_formula_in_asarray, False),
        (_stable_softplus, False),
        (_formula_in_numpy, False),
    ],
)
def test_a_shift_is_an_input_moved_by_a_step(answer, shifted):
    """Is an input moved by a step-sized number recorded as a difference, also once its
    values left torch (x.numpy(), np.asarray(x), np.array(x), x.tolist()), while adding a
    varying tensor, however small, or computing a formula in numpy is not?"""
    x = torch.tensor([-900.0, -1.5, 0.25, 2.0, 800.0], dtype=torch.float64)
    assert (methods.NUMERICAL in _record(answer, x)) is shifted


def test_a_reverse_pass_records_what_seeded_it():
    """Is a vector-Jacobian product's v found as the pass's starting gradient or inside its
    graph, and a pass from ones with v multiplied in afterwards told apart?"""
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    v = torch.tensor([0.5, 3.0, -1.0], dtype=torch.float64)

    def seeded(x, v):
        x = x.detach().clone().requires_grad_(True)
        (3 * x**2).backward(v)
        return x.grad

    def in_graph(x, v):
        x = x.detach().clone().requires_grad_(True)
        (3 * x**2 * v).sum().backward()
        return x.grad

    def afterwards(x, v):
        x = x.detach().clone().requires_grad_(True)
        (3 * x**2).sum().backward()
        return x.grad * v

    def record(fn):
        return list(_record(fn, x, v, options=frozenset({methods.SEEDS})))

    assert methods.seeded(record(seeded), 1) is True
    assert methods.seeded(record(in_graph), 1) is True
    assert methods.seeded(record(afterwards), 1) is False
    assert f"{methods.SEED}:ones" in record(afterwards)
    assert methods.seeded(list(_record(seeded, x, v, options=frozenset())), 1) is None


def test_changes_to_the_callers_tensor_and_model_are_recorded():
    """Are values changed in place, requires_grad switched on, a .grad left behind, and
    gradients left in a model's parameters all recorded?"""

    def in_place(x):
        x += 1

    def grad_on_caller(x):
        x.requires_grad_(True)
        (x**2).sum().backward()

    def model_grads(model, x):
        model(x).sum().backward()

    x = torch.ones(3, dtype=torch.float64)
    assert "input:0:values" in _record(in_place, x.clone())
    assert {"input:0:requires_grad", "input:0:grad"} <= _record(grad_on_caller, x.clone())
    model = torch.nn.Linear(1, 1)
    assert any(
        h.startswith("input:0:module_grad") for h in _record(model_grads, model, torch.ones(4, 1))
    )
    assert not any(h.startswith("input") for h in _record(_by_backward, _cube, x.clone()))


def test_a_rule_is_enforced_with_its_own_diagnosis():
    """Does an answer without autograd fail a question asking for it (method_missing), and
    a forward-mode answer fail a question asking for a formula (used_autograd)?"""
    x = torch.linspace(-2, 2, 7, dtype=torch.float64)
    with pytest.raises(CheckFailed) as info:
        call("Q9 demo", _by_central_difference, _cube, x, rule=methods.AUTOGRAD)
    assert info.value.codes == ["numerical_difference"]
    with pytest.raises(CheckFailed) as info:
        call("Q9 demo", lambda f, t: 3 * t**2 - 1, _cube, x, rule=methods.AUTOGRAD)
    assert info.value.codes == ["method_missing"]
    with pytest.raises(CheckFailed) as info:
        call("Q9 demo", _by_forward_mode, _cube, x, rule=methods.BY_FORMULA)
    assert info.value.codes == ["used_autograd"]
    got, _ = call("Q9 demo", _by_backward, _cube, x, rule=methods.AUTOGRAD)
    assert torch.allclose(got, 3 * x**2 - 1)


def test_one_term_with_its_sign_flipped_or_missing_is_named():
    """Is an answer off by one term of a sum (its sign flipped, or left out) named so, and
    a term too small to tell left unnamed?"""
    x = torch.linspace(0.5, 3, 6, dtype=torch.float64)
    a, b = 2 * x, 2 * x * torch.cos(x**2)
    terms = Context(terms={"2x": a, "2x·cos(x²)": b})
    assert "term_sign" in _fail(a - b, a + b, context=terms).codes
    assert "term_missing" in _fail(a, a + b, context=terms).codes
    tiny = Context(terms={"1e-12": torch.full_like(x, 1e-12)})
    assert "term_sign" not in _fail(a + 1, a + b, context=tiny).codes


def test_outputs_in_the_wrong_order_are_named():
    """Is a pair returned as (dy/dx, y) named as swapped before its values are compared?"""
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.raises(CheckFailed) as info:
        check_outputs(
            "Q9 demo", ["y", "dy/dx"], (torch.cos(x), torch.sin(x)), [torch.sin(x), torch.cos(x)]
        )
    assert info.value.codes == ["swapped_outputs"]


def test_a_vmap_in_dims_error_is_explained():
    """Is vmap's error for a shared input mapped like a batch named vmap_in_dims?"""
    xs, w = torch.randn(5, 2), torch.randn(3)
    with pytest.raises(ValueError) as info:
        torch.func.vmap(lambda a, b: a.sum() * b.sum(), in_dims=(0, 0))(xs, w)
    assert [f.code for f in explain_exception(info.value)] == ["vmap_in_dims"]


def test_numpy_conversions_are_restored_however_the_call_ends():
    """Are np.asarray and np.array numpy's own again after a watched call, also one that
    raised, and do they behave as numpy's for plain arrays while the call runs?"""
    originals = (np.asarray, np.array, np.asanyarray)
    seen = []

    def raises(x):
        plain = np.ones(3)
        seen.append(type(np.asarray(plain)) is np.ndarray and np.array(plain) is not plain)
        raise ValueError("the student's error")

    with pytest.raises(ValueError):
        _record(raises, torch.ones(3, dtype=torch.float64))
    assert seen == [True]
    assert (np.asarray, np.array, np.asanyarray) == originals


# --- where the returned value came from (methods.DERIVED) --------------------------------


def _leaf(x):
    return x.detach().clone().requires_grad_(True)


def _grad_of_leaf(f, x):
    x = _leaf(x)
    f(x).sum().backward()
    return x.grad


def _grad_cloned_float32(f, x):
    return _grad_of_leaf(f, x).detach().clone().float()


def _grad_through_item(f, x):
    out = []
    for v in x.tolist():
        t = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        f(t).backward()
        out.append(t.grad.item())
    return torch.tensor(out, dtype=torch.float64)


def _grad_through_numpy(f, x):
    return torch.from_numpy(np.asarray(_grad_of_leaf(f, x)) * 1.0)


def _stacked_autograd_grads(f, x):
    rows = []
    for i in range(len(x)):
        t = _leaf(x[i])
        rows.append(torch.autograd.grad(f(t), t)[0])
    return torch.stack(rows)


def _rows_written_in_place(f, x):
    out = torch.zeros_like(x)
    for i in range(len(x)):
        t = _leaf(x[i])
        f(t).backward()
        out[i] = t.grad
    return out


def _into_existing_grad(f, x):
    x = _leaf(x)
    x.grad = torch.zeros_like(x)
    f(x).sum().backward()  # accumulates into that tensor, in place
    return x.grad


def _grad_changed_in_place(f, x):
    g = _grad_of_leaf(f, x)
    g.mul_(2)
    g /= 2
    return g


def _by_func_grad(f, x):
    return torch.func.vmap(torch.func.grad(f))(x)


def _by_jacrev(f, x):
    return torch.func.jacrev(f)(x).diagonal()


def _by_functional_jacobian(f, x):
    return torch.autograd.functional.jacobian(lambda t: f(t).sum(), x)


def _by_dual_numbers(f, x):
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        return fwAD.unpack_dual(f(fwAD.make_dual(x, torch.ones_like(x)))).tangent


def _by_data(f, x):
    g = _grad_of_leaf(f, x)
    out = torch.zeros_like(x)
    out.data += g.data
    return out


def _formula_after_backward(f, x):
    _grad_of_leaf(f, x)
    return 3 * x**2 - 1


def _formula_after_dummy_backward(f, x):
    torch.ones(1, requires_grad=True).sum().backward()
    return 3 * x**2 - 1


def _formula_on_the_leaf(f, x):
    x = _leaf(x)
    f(x).sum().backward()
    return (3 * x**2 - 1).detach()


def _formula_on_data(f, x):
    x = _leaf(x)
    f(x).sum().backward()
    return 3 * x.data**2 - 1


def _formula_after_dual_numbers(f, x):
    _by_dual_numbers(f, x)
    return 3 * x**2 - 1


@pytest.mark.parametrize(
    "answer",
    [
        _by_backward,
        _grad_of_leaf,
        _grad_cloned_float32,
        _grad_through_item,
        _grad_through_numpy,
        _stacked_autograd_grads,
        _rows_written_in_place,
        _into_existing_grad,
        _grad_changed_in_place,
        _by_forward_mode,
        _by_func_grad,
        _by_jacrev,
        _by_functional_jacobian,
        _by_dual_numbers,
        _by_data,
    ],
)
def test_a_gradient_taken_from_autograd_keeps_its_points(answer):
    """Does a gradient autograd computed count as from autograd, however it is handed back:
    copied, cast, through .item() or numpy and back, stacked, written into a tensor, into an
    existing .grad, changed in place, or made by torch.func and forward mode?"""
    x = torch.linspace(-2, 2, 7, dtype=torch.float64)
    got, _ = call("Q9 demo", answer, _cube, x, rule=methods.AUTOGRAD)
    assert torch.allclose(got.double(), 3 * x**2 - 1, atol=1e-6)


@pytest.mark.parametrize(
    "answer",
    [
        _formula_after_backward,
        _formula_after_dummy_backward,
        _formula_on_the_leaf,
        _formula_after_dual_numbers,
        _formula_on_data,
    ],
)
def test_autograd_run_beside_a_formula_is_named(answer):
    """Does an answer that runs autograd but returns the formula fail with
    result_not_from_autograd?"""
    x = torch.linspace(-2, 2, 7, dtype=torch.float64)
    with pytest.raises(CheckFailed) as info:
        call("Q9 demo", answer, _cube, x, rule=methods.AUTOGRAD)
    assert info.value.codes == ["result_not_from_autograd"], info.value.render(color=False)


def test_the_result_is_followed_only_where_a_mechanism_is_required():
    """Is the derivation followed for a rule that requires a mechanism (or asks to follow),
    and not for one that only forbids, and is the profile function gone after the call?"""
    x = torch.ones(3, dtype=torch.float64)
    assert methods.DERIVED in methods.options_for(methods.AUTOGRAD, (x,))
    assert methods.DERIVED in methods.options_for(methods.Rule(follow=True), (x,))
    assert methods.DERIVED not in methods.options_for(methods.BY_FORMULA, (x,))
    assert methods.UNDERIVED in _record(
        _formula_after_backward, _cube, x, options=frozenset({methods.DERIVED})
    )
    assert methods.UNDERIVED not in _record(_formula_after_backward, _cube, x, options=frozenset())
    assert sys.getprofile() is None
