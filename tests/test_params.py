"""Parameter-gradient helpers: references against torch, answers read by name, messages
that name the parameter, and the autograd entry-point recorder."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from autograder.checking import params as P
from autograder.checking.feedback import CheckFailed, Finding

F64 = torch.float64


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(1, 1).to(F64)


@pytest.fixture
def mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).to(F64)


def _loop_reference(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The slow, obvious way: one torch.autograd.grad per sample."""
    names, ps = zip(*model.named_parameters(), strict=True)
    rows = [torch.autograd.grad(model(x[i : i + 1]).sum(), ps) for i in range(len(x))]
    return {n: torch.stack([r[k] for r in rows]) for k, n in enumerate(names)}


# --- references ---------------------------------------------------------------------------


def test_linear_per_sample_grads_are_x_and_one(linear):
    """For nn.Linear(1, 1), are the per-sample gradients xᵢ (weight) and 1 (bias)?"""
    x = torch.linspace(-2, 2, 7, dtype=F64).reshape(7, 1)
    ref = P.per_sample_module_grads(linear, x)
    assert ref["weight"].shape == (7, 1, 1) and ref["bias"].shape == (7, 1)
    torch.testing.assert_close(ref["weight"].reshape(-1), x.reshape(-1))
    torch.testing.assert_close(ref["bias"], torch.ones(7, 1, dtype=F64))


def test_module_reference_matches_a_loop_and_leaves_the_module_alone(mlp):
    """Does the vmap/functional_call reference equal a plain loop, without touching the
    module's parameters or their .grad?"""
    x = torch.randn(5, 2, dtype=F64)
    before = {k: v.detach().clone() for k, v in mlp.named_parameters()}
    ref = P.per_sample_module_grads(mlp, x)
    assert all(p.grad is None for p in mlp.parameters())
    for k, v in mlp.named_parameters():
        assert torch.equal(v.detach(), before[k])
    loop = _loop_reference(mlp, x)
    assert set(ref) == set(loop) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for k in ref:
        torch.testing.assert_close(ref[k], loop[k])


@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
    xs=st.lists(st.floats(-3, 3), min_size=2, max_size=8),
)
def test_function_reference_is_analytic(a, b, xs):
    """For f = a·sin(x) + b·x, are the per-sample rows (sin xᵢ, xᵢ)?"""
    x = torch.tensor(xs, dtype=F64).reshape(-1, 1)
    ref = P.per_sample_function_grads(
        lambda x, a, b: a * torch.sin(x) + b * x,
        x,
        {"a": torch.tensor(a, dtype=F64), "b": torch.tensor(b, dtype=F64)},
    )
    torch.testing.assert_close(ref["a"], torch.sin(x).reshape(-1))
    torch.testing.assert_close(ref["b"], x.reshape(-1))


def test_gradients_of_the_sum_by_name():
    """Does `gradients` give ∂f/∂a = x, ∂f/∂b = 1, ∂f/∂x = a, and zero for an unused input?"""
    a, b, x, c = (torch.tensor(v, dtype=F64) for v in (3.0, -1.0, 2.0, 5.0))
    g = P.gradients(lambda x, a, b, c: a * x + b, {"x": x, "a": a, "b": b, "c": c})
    assert {k: float(v) for k, v in g.items()} == {"x": 3.0, "a": 2.0, "b": 1.0, "c": 0.0}
    assert not a.requires_grad and a.grad is None


# --- reading answers ----------------------------------------------------------------------


def test_as_named_reads_dicts_and_sequences():
    """Are dicts keyed by name and tuples in order both accepted?"""
    assert P.as_named("Q", "grads", {"bias": 2, "weight": 1, "x": 0}, ["weight", "bias"]) == {
        "weight": 1,
        "bias": 2,
    }
    assert P.as_named("Q", "grads", (1, 2), ["weight", "bias"]) == {"weight": 1, "bias": 2}


def test_as_named_names_the_missing_parameter():
    """Does a dict with other keys fail naming the missing parameters and the keys seen?"""
    with pytest.raises(CheckFailed) as info:
        P.as_named("Q3", "per-sample gradients", {"a": 1, "b": 2}, ["weight", "bias"])
    text = info.value.render(color=False)
    assert "`weight`" in text and "`bias`" in text and "'a'" in text
    assert info.value.codes == ["parameter_names"]


def test_as_named_rejects_wrong_count_and_type():
    with pytest.raises(CheckFailed, match="expected 2 entries"):
        P.as_named("Q", "grads", (1, 2, 3), ["weight", "bias"])
    with pytest.raises(CheckFailed, match="wrong type"):
        P.as_named("Q", "grads", torch.zeros(2), ["weight", "bias"])


def test_fit_singletons_only_forgives_size_one_dimensions():
    ref = torch.zeros(4, 1, 3)
    assert P.fit_singletons(torch.ones(4, 3), ref).shape == (4, 1, 3)
    assert P.fit_singletons(torch.ones(4, 1, 1, 3), ref).shape == (4, 1, 3)
    assert P.fit_singletons(torch.ones(3, 4), ref).shape == (3, 4)  # a real layout mistake
    assert P.fit_singletons(torch.ones(1, 3), ref).shape == (1, 3)  # summed: other numel


# --- messages name the parameter ----------------------------------------------------------


def _expected(linear) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = torch.tensor([[-2.0], [-1.0], [0.5], [1.0], [3.0]], dtype=F64)
    return x, P.per_sample_module_grads(linear, x)


def test_all_zero_answer_is_diagnosed_by_parameter(linear):
    """Are zeros (gradients read off tensors the model never used) named for `weight`?"""
    _, ref = _expected(linear)
    got = {k: torch.zeros_like(v) for k, v in ref.items()}
    with pytest.raises(CheckFailed) as info:
        P.check_param_grads("Q3.1", "per-sample gradient", got, ref, batch=5)
    assert "all_zero" in info.value.codes
    assert "per-sample gradient for `weight`" in info.value.summary


def test_summed_over_batch_is_diagnosed_by_parameter(linear):
    """Is the gradient of the summed batch, where per-sample rows were asked, named as such
    for the parameter concerned?"""
    x, ref = _expected(linear)
    got = {"weight": ref["weight"], "bias": ref["bias"].sum(0)}
    with pytest.raises(CheckFailed) as info:
        P.check_param_grads("Q3.2", "per-sample gradient", got, ref, batch=5)
    assert info.value.codes == ["summed_over_batch"]
    assert "`bias`" in info.value.summary and "wrong shape" in info.value.summary


def test_none_answer_uses_the_given_hint(linear):
    _, ref = _expected(linear)
    hint = Finding("never_in_graph", "bias never entered the graph")
    with pytest.raises(CheckFailed) as info:
        P.check_param_grads(
            "Q", "gradient", {"weight": ref["weight"], "bias": None}, ref, hints={"bias": [hint]}
        )
    assert info.value.codes == ["never_in_graph"]
    assert "`bias` is None" in info.value.summary


def test_extra_singleton_dims_are_named_unless_forgiven(linear):
    """Is (B, 1, *S) for a promised (B, *S) (jacrev's extra output axis) failed with a
    finding that says so, and accepted only when the check forgives size-1 dimensions?"""
    _, ref = _expected(linear)
    got = {k: v.unsqueeze(1) for k, v in ref.items()}
    with pytest.raises(CheckFailed) as info:
        P.check_param_grads("Q", "per-sample gradient", got, ref)
    assert info.value.codes == ["size_one_dims"]
    assert "`weight`" in info.value.summary
    P.check_param_grads("Q", "per-sample gradient", got, ref, singletons=True)


def test_running_sums_over_samples_are_named(linear):
    """Are per-sample rows that add up the samples before them (.grad never cleared in a
    loop) named as such, and only then?"""
    _, ref = _expected(linear)
    got = {k: v.cumsum(0) for k, v in ref.items()}
    with pytest.raises(CheckFailed) as info:
        P.check_param_grads("Q3.1", "per-sample gradient", got, ref, batch=5)
    assert "accumulated_over_samples" in info.value.codes
    assert P.running_sum_findings(2 * ref["weight"], ref["weight"], what="rows") == []
    assert P.running_sum_findings(ref["weight"], ref["weight"], what="rows") == []


def test_mapping_only_rejects_sequences_and_extra_keys():
    """Where a dict {name: tensor} with one entry per parameter is promised, are a list
    and a dict with keys of no parameter failed, naming the parameters?"""
    with pytest.raises(CheckFailed) as info:
        P.as_named("Q3", "grads", [1, 2], ["weight", "bias"], mapping_only=True)
    assert info.value.codes == ["parameter_names"]
    assert "`weight`" in info.value.render(color=False)
    with pytest.raises(CheckFailed) as info:
        P.as_named(
            "Q3", "grads", {"weight": 1, "bias": 2, "x": 3}, ["weight", "bias"], mapping_only=True
        )
    assert info.value.codes == ["parameter_names"] and "'x'" in info.value.summary
    assert P.as_named("Q", "g", {"bias": 2, "weight": 1}, ["weight", "bias"], mapping_only=True)


# --- the module is left alone -------------------------------------------------------------


def test_untouched_module_passes(linear):
    before = P.snapshot(linear)
    linear(torch.ones(2, 1, dtype=F64)).sum().backward()  # .grad may change; values may not
    P.require_untouched("Q", linear, before)


def test_replaced_parameter_is_named(linear):
    before = P.snapshot(linear)
    linear.bias = nn.Parameter(linear.bias.detach().clone())
    with pytest.raises(CheckFailed) as info:
        P.require_untouched("Q", linear, before)
    assert info.value.codes == ["parameters_replaced"]
    assert "`bias`" in info.value.summary


def test_modified_parameter_is_named(linear):
    before = P.snapshot(linear)
    with torch.no_grad():
        linear.weight.add_(1.0)
    with pytest.raises(CheckFailed) as info:
        P.require_untouched("Q", linear, before)
    assert info.value.codes == ["parameters_modified"]
    assert "`weight`" in info.value.summary


# --- which autograd entry points ran ------------------------------------------------------


def _leaf(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64, requires_grad=True)


def test_records_outermost_entry_points_only():
    """Is jacobian recorded as jacobian (not the torch.autograd.grad it runs inside), and
    backward as backward (not torch.autograd.backward)?"""
    with P.autograd_apis() as used:
        (_leaf(2.0) ** 2).backward()
    assert used == ["backward"]
    with P.autograd_apis() as used:
        torch.autograd.functional.jacobian(lambda t: t**2, torch.tensor(2.0, dtype=F64))
    assert used == ["torch.autograd.functional.jacobian"]
    with P.autograd_apis() as used:
        x = _leaf(2.0)
        torch.autograd.grad(x**3, x)
    assert used == ["torch.autograd.grad"]


def test_records_torch_func_transforms_not_their_insides():
    with P.autograd_apis() as used:
        out = torch.func.vmap(torch.func.jacrev(lambda t: (t**2).sum()))(torch.ones(3, 2))
    assert used == ["torch.func.jacrev", "torch.func.vmap"]
    torch.testing.assert_close(out, 2 * torch.ones(3, 2))


_grad_alias = torch.autograd.grad  # bound before the recorder starts, as a notebook would


def _uses_alias(x):
    return _grad_alias(x**2, x)


def test_names_bound_in_the_function_globals_are_seen_and_restored():
    """Is `grad` imported before the check (bound in the function's globals) recorded, and
    is everything restored afterwards, also after an error?"""
    with P.autograd_apis(_uses_alias) as used:
        _uses_alias(_leaf(1.0))
    assert used == ["torch.autograd.grad"]
    assert globals()["_grad_alias"] is torch.autograd.grad
    original = (torch.autograd.grad, torch.Tensor.backward, torch.func.vmap, torch.vmap)
    with pytest.raises(RuntimeError), P.autograd_apis(_uses_alias):
        raise RuntimeError("student error")
    assert (torch.autograd.grad, torch.Tensor.backward, torch.func.vmap, torch.vmap) == original
    assert _grad_alias is torch.autograd.grad


def test_is_grads_batched_is_recorded():
    """Is torch.autograd.grad with is_grads_batched=True (by keyword or position) marked
    as such, as part of torch.autograd.grad?"""
    x = _leaf(2.0)
    y = x * torch.arange(3.0, dtype=F64)
    eye = torch.eye(3, dtype=F64)
    with P.autograd_apis() as used:
        torch.autograd.grad(y, x, eye, retain_graph=True, is_grads_batched=True)
        torch.autograd.grad(y, x, eye, True, False, True, None, True)
        torch.autograd.grad(y.sum(), x)
    assert used == [
        "torch.autograd.grad",
        P.BATCHED_GRAD,
        "torch.autograd.grad",
        P.BATCHED_GRAD,
        "torch.autograd.grad",
    ]
    assert {P.entry_point(u) for u in used} == {"torch.autograd.grad"}


def test_require_api_only_fails_on_another_entry_point_besides():
    P.require_api("Q", "fn", ["torch.autograd.grad", P.BATCHED_GRAD], "torch.autograd.grad",
                  how="grad", only=True)  # fmt: skip
    with pytest.raises(CheckFailed) as info:
        P.require_api(
            "Q1.2", "grads", ["torch.autograd.grad", "backward"], "torch.autograd.grad",
            how="`grad`", only=True,
        )  # fmt: skip
    assert info.value.codes == ["wrong_api"]
    assert "also uses backward" in info.value.summary


def test_require_api_names_what_was_used_instead():
    P.require_api("Q", "fn", ["torch.autograd.grad"], "torch.autograd.grad", how="grad")
    with pytest.raises(CheckFailed) as info:
        P.require_api("Q1.2", "grads", ["backward"], "torch.autograd.grad", how="`grad`")
    assert info.value.codes == ["wrong_api"]
    assert "backward" in info.value.render(color=False)
