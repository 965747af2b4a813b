"""Checks for assignment 04_parametrized (gradients with respect to parameters).

Each `check_*` takes the student's function (and, for the module questions, the module
the notebook built). With `hidden=False` (the visible test) it uses the notebook's fixed
examples; with `hidden=True` (run at grading time) it draws fresh inputs and parameters,
and other functions and modules of the same kind, and compares with references computed
by torch on the same inputs. References come from :mod:`autograder.checking.params`, parameter by
parameter, so every message names the parameter (`a`, `b`, `weight`, `bias`, `t`).

Beyond the values, each check holds the answer to what the question's words ask:

- the method (recorded while the function runs, :mod:`autograder.checking.methods`): no
  numerical differencing where a method is named (the given `f` or `u` evaluated at
  shifted inputs); Q1.x the named entry point and no other (`.backward()`,
  `torch.autograd.grad`, `functional.jacobian` with any strategy); Q2.1/Q3.1 exactly one
  `backward` or `torch.autograd.grad` per sample in each call and nothing else running
  autograd; Q2.3/Q3.2 at most two autograd passes (reverse or forward) for the whole batch,
  batched by `vmap` or `is_grads_batched=True`; Q4.2 autograd applied twice. Q4.1 names no
  method: any way counts;
- what the function leaves: the caller's tensors and the model as found (values,
  `requires_grad`, `.grad`);
- what it returns: tensors, in the exact shapes promised ((B, 2), (B, *S), (N, 3), (N,)),
  and for Q3 a dict keyed by exactly the parameters' names.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import hessian, jacrev, vmap
from torch.nn.utils import skip_init

from ..checking import methods
from ..checking.checks import call, passed, require, returns_tensor
from ..checking.compare import as_tensor, check_close, tolerance_for
from ..checking.diagnose import Context, diagnose_values
from ..checking.feedback import CheckFailed, Finding
from ..checking.forbid import autograd_calls
from ..checking.methods import FORWARD, NUMERICAL, REVERSE, Rule
from ..checking.params import (
    BATCHED_GRAD,
    as_named,
    autograd_apis,
    check_param_grads,
    entry_point,
    gradients,
    per_sample_function_grads,
    per_sample_module_grads,
    require_api,
    require_untouched,
    snapshot,
    with_size_one_findings,
)
from ..checking.sampling import generator, uniform
from . import defer_hidden

F64 = torch.float64


def linear(x, a, b):
    """The notebook's f(x; a, b) = a·x + b."""
    return a * x + b


def _sin_mix(x, a, b):
    return a * torch.sin(x) + b * x


def _tanh_affine(x, a, b):
    return torch.tanh(a * x + b)


def _square_a(x, a, b):
    return a**2 * x - 3 * b


# Functions of an input x and two scalar parameters a, b: (name, f). Named module-level
# functions, so a grader in another process can name them to the student's kernel.
_FUNCTIONS: list[tuple[str, Callable]] = [
    ("a·x + b", linear),
    ("a·sin(x) + b·x", _sin_mix),
    ("tanh(a·x + b)", _tanh_affine),
    ("a²·x − 3b", _square_a),
]


def _scalar(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


# --- what the student's function did ----------------------------------------------------

# The loop questions count these: one call of either per sample.
_LOOP_APIS = ("backward", "torch.autograd.grad")


@dataclass
class _Did:
    """What the calls of one case did: the outermost autograd entry points and the
    engine runs over all of them (a check's first call is made twice), and the method
    record of the first call."""

    used: list[str]
    engine_total: int
    first: list[str]

    @property
    def runs(self) -> int:
        """Autograd engine runs in one call."""
        return methods.engine_runs(self.first)

    @property
    def levels(self) -> int:
        """Forward-mode levels entered in one call."""
        return self.first.count(methods.FORWARD)

    def entry_points(self) -> list[str]:
        return list(dict.fromkeys(entry_point(u) for u in self.used))


def _run(question: str, fn, rule: Rule | None, *args):
    """Call the student's `fn(*args)`, recording what it did; fail if it broke `rule`
    (numerical differencing is seen where the given function `f` or `u` is evaluated at
    shifted inputs) or changed what it was given."""
    with autograd_calls() as engine, autograd_apis(fn) as used:
        got, _ = call(question, fn, *args)
    did = _Did(list(used), len(engine), list(methods.LAST_CALL[question][2]))
    if rule is not None:
        methods.enforce(question, rule, did.first, getattr(fn, "__name__", "your function"))
    return got, did


def _require_tensors(question: str, name: str, values: dict[str, Any], promised: str) -> None:
    """Fail unless every value is a tensor: the question promises `promised`."""
    for what, value in values.items():
        returns_tensor(question, f"{what} returned by `{name}` ({promised})", value)


_NOT_A_LOOP = Finding(
    "not_a_loop",
    "this question asks for the slow, explicit way: for each sample i, one backward (or one "
    "torch.autograd.grad) of that sample's output, e.g. with the one-hot vector eᵢ as "
    "`gradient` (retain_graph=True), reading the gradients and clearing them before the next "
    "sample. functional.jacobian, torch.func and vectorised calls are the other questions.",
)
_NOT_VECTORISED = Finding(
    "not_vectorised",
    "autograd ran once per sample, which is the loop. Ask for all rows at once: "
    "torch.autograd.grad(out, inputs, torch.eye(B), is_grads_batched=True) (the identity's "
    "rows are all the one-hot vectors), or torch.func.vmap(torch.func.jacrev(...)) of one "
    "sample's output, mapped over the samples.",
)


def _api_finding(how: str) -> Finding:
    return Finding(
        "wrong_api",
        f"this question asks for the gradient computed with {how}; the values may be right, "
        "but the point is to practise that way of asking torch.",
    )


def _one_backward_per_sample(question: str, name: str, n: int, did: _Did) -> None:
    """One backward (or torch.autograd.grad) per sample, and nothing else running autograd."""
    loops = sum(u in _LOOP_APIS for u in did.used)
    others = [e for e in did.entry_points() if e not in _LOOP_APIS]
    if did.runs == n and loops == did.engine_total and not others and not did.levels:
        return
    seen = ", ".join(did.entry_points()) or "no autograd function"
    per = (
        f": {did.runs // n} per sample, where one backward gives the gradients of all "
        "parameters at once"
        if did.runs > n and did.runs % n == 0 and not others
        else ""
    )
    raise CheckFailed(
        question,
        f"`{name}` should run one backward per sample",
        [
            f"the batch had {n} samples; in one call autograd ran {did.runs} time(s){per}",
            f"autograd entry points your function called: {seen}"
            + (f"; forward mode entered {did.levels} time(s)" if did.levels else ""),
        ],
        [_NOT_A_LOOP],
    )


def _vectorised(question: str, name: str, n: int, did: _Did) -> None:
    """All samples in one or two autograd passes, batched by vmap or is_grads_batched."""
    if did.runs > 2 or did.levels > 2:
        raise CheckFailed(
            question,
            f"`{name}` is not vectorised",
            [
                f"the batch had {n} samples; in one call autograd ran {did.runs} time(s) and "
                f"forward mode {did.levels} time(s)"
            ],
            [_NOT_VECTORISED],
        )
    if "torch.func.vmap" in did.used or BATCHED_GRAD in did.used:
        return
    require_api(
        question,
        name,
        did.used,
        {"torch.func.vmap", BATCHED_GRAD},
        how="`is_grads_batched=True` or `vmap(jacrev(...))`",
    )


# --- Q1 parameter gradients of f(x; a, b), three ways -----------------------------------


def _q1_cases(question: str, hidden: bool):
    if not hidden:
        return [("a·x + b", linear, _scalar(2.0), _scalar(3.0), _scalar(-1.0))], (
            "f(x; a, b) = a·x + b at x = 2, a = 3, b = −1"
        )
    g = generator(question)
    cases = []
    for name, f in _FUNCTIONS:
        x, a, b = (uniform(g, (), -2.0, 2.0) for _ in range(3))
        cases.append((name, f, x, a, b))
    return cases, "4 functions at fresh random x, a, b in [−2, 2]"


def _check_three_grads(question: str, fn, hidden: bool, api: str, how: str, rule: Rule) -> None:
    cases, note = _q1_cases(question, hidden)
    name = getattr(fn, "__name__", "your function")
    for fname, f, x, a, b in cases:
        got, did = _run(question, fn, rule, f, x.clone(), a.clone(), b.clone())
        at = f"f = {fname} at x = {float(x):.4g}, a = {float(a):.4g}, b = {float(b):.4g}"
        require(
            question,
            isinstance(got, tuple | list) and len(got) == 3,
            f"`{name}` must return the triple (df_dx, df_da, df_db)",
            [f"got {type(got).__name__}: return df_dx, df_da, df_db"],
        )
        answers = as_named(question, name, got, ["x", "a", "b"])
        expected = gradients(lambda x, a, b, f=f: f(x, a, b), {"x": x, "a": a, "b": b})
        _require_argument_order(question, name, answers, expected)
        for key in ("x", "a", "b"):
            check_close(question, f"∂f/∂{key} for `{key}` ({at})", answers[key], expected[key])
        _require_tensors(
            question,
            name,
            {f"df_d{k}": answers[k] for k in ("x", "a", "b")},
            "the triple (df_dx, df_da, df_db) of tensors",
        )
        require_api(question, name, did.used, api, how=how, only=True)
        if did.levels and FORWARD not in rule.require:
            raise CheckFailed(
                question,
                f"`{name}` also uses forward-mode AD, where {how} was asked",
                [f"forward mode was entered {did.levels} time(s) in one call"],
                [_api_finding(how)],
            )
    passed(question, note)


def _require_argument_order(question: str, name: str, answers: dict, expected: dict) -> None:
    """The three derivatives in another order than the arguments (x, a, b): each value is
    right but sits in another's place."""
    keys = ("x", "a", "b")
    try:
        got = {k: torch.as_tensor(answers[k], dtype=torch.float64).reshape(()) for k in keys}
    except (TypeError, ValueError, RuntimeError):
        return  # not three numbers: the value checks say what is wrong
    ref = {k: expected[k].detach().to(torch.float64).reshape(()) for k in keys}

    def same(u, v):
        return bool(torch.isclose(u, v, rtol=1e-4, atol=1e-6))

    if all(same(got[k], ref[k]) for k in keys):
        return
    for order in itertools.permutations(keys):
        if order == keys:
            continue
        # got[keys[i]] holds the derivative for order[i]
        if all(same(got[k], ref[o]) for k, o in zip(keys, order, strict=True)) and not all(
            same(ref[k], ref[o]) for k, o in zip(keys, order, strict=True)
        ):
            placed = ", ".join(f"df_d{o}" for o in order)
            raise CheckFailed(
                question,
                f"`{name}`: the derivatives are in the wrong order",
                [f"your triple holds ({placed}); expected (df_dx, df_da, df_db)"],
                [
                    Finding(
                        "swapped_outputs",
                        f"the values are right, the order is not: you returned ({placed}). "
                        "Return the derivatives in the order of the arguments (x, a, b): "
                        "(df_dx, df_da, df_db).",
                    )
                ],
            )


def check_grads_backward(grads_backward, *, hidden: bool = False) -> None:
    _check_three_grads(
        "Q1.1 grads_backward",
        grads_backward,
        hidden,
        "backward",
        "`.backward()`",
        Rule(frozenset({REVERSE}), frozenset({NUMERICAL}), "`.backward()`"),
    )


def check_grads_autograd_grad(grads_autograd_grad, *, hidden: bool = False) -> None:
    _check_three_grads(
        "Q1.2 grads_autograd_grad",
        grads_autograd_grad,
        hidden,
        "torch.autograd.grad",
        "`torch.autograd.grad`",
        Rule(frozenset({REVERSE}), frozenset({NUMERICAL}), "`torch.autograd.grad`"),
    )


def check_grads_jacobian(grads_jacobian, *, hidden: bool = False) -> None:
    # Any strategy of functional.jacobian: "forward-mode" is forward AD.
    _check_three_grads(
        "Q1.3 grads_jacobian",
        grads_jacobian,
        hidden,
        "torch.autograd.functional.jacobian",
        "`torch.autograd.functional.jacobian`",
        Rule(
            frozenset({REVERSE, FORWARD}),
            frozenset({NUMERICAL}),
            "`torch.autograd.functional.jacobian`",
        ),
    )


# --- Q2 per-sample Jacobians of f(x; a, b) with respect to (a, b) -----------------------

VISIBLE_X = torch.tensor([[-2.0], [-1.0], [0.5], [1.0], [3.0]], dtype=F64)


def _q2_cases(question: str, hidden: bool):
    if not hidden:
        return [("a·x + b", linear, VISIBLE_X.clone(), _scalar(3.0), _scalar(-1.0))], (
            "f(x; a, b) = a·x + b, a batch of 5 points, a = 3, b = −1"
        )
    g = generator(question)
    cases = []
    for name, f in _FUNCTIONS:
        n = int(torch.randint(30, 61, (1,), generator=g))
        x = uniform(g, (n, 1), -2.0, 2.0)
        a, b = uniform(g, (), -2.0, 2.0), uniform(g, (), -2.0, 2.0)
        cases.append((name, f, x, a, b))
    return cases, "4 functions, fresh batches of 30–60 points in [−2, 2], fresh a, b"


def _check_per_sample_jacobian(question: str, fn, hidden: bool, rule: Rule, requirement) -> None:
    cases, note = _q2_cases(question, hidden)
    name = getattr(fn, "__name__", "your function")
    for fname, f, x, a, b in cases:
        n = x.shape[0]
        got, did = _run(question, fn, rule, f, x.clone(), a.clone(), b.clone())
        ref = per_sample_function_grads(f, x, {"a": a, "b": b})
        expected = torch.stack([ref["a"], ref["b"]], dim=1)
        what = f"the per-sample Jacobian of f = {fname} with respect to (a, b)"
        tensor = as_tensor(got) if got is not None else None
        if tensor is not None and tensor.shape == expected.shape:
            # Right layout: compare column by column, so the message names the parameter.
            try:
                for col, p in enumerate(("a", "b")):
                    check_close(
                        question,
                        f"column {col} of {what}, ∂fᵢ/∂{p}, for `{p}`",
                        tensor[:, col],
                        expected[:, col],
                        context=Context(inputs_note=f"batch of {n} points"),
                    )
            except CheckFailed as exc:
                raise _with(exc, _matrix_findings(tensor, expected, exc.codes)) from None
        else:
            try:
                check_close(
                    question,
                    what,
                    got,
                    expected,
                    context=Context(jacobian=True, batch=n, inputs_note=f"batch of {n} points"),
                )
            except CheckFailed as exc:
                raise with_size_one_findings(exc, got, expected) from None
        _require_tensors(question, name, {"the result": got}, f"a ({n}, 2) tensor")
        requirement(question, name, n, did)
    passed(question, note)


def _with(exc: CheckFailed, findings: list[Finding]) -> CheckFailed:
    """The same failure with more findings (a new exception: its text is fixed at creation)."""
    return CheckFailed(exc.question, exc.summary, exc.details, exc.diagnoses + findings)


def _matrix_findings(got: torch.Tensor, expected: torch.Tensor, known: list[str]) -> list:
    """Mistakes only the whole matrix shows: rows accumulated (.grad not cleared between
    samples), or a layout mix-up."""
    tol = tolerance_for(got.dtype, float(expected.abs().max()))
    found = diagnose_values(got.detach().to(F64), expected.to(F64), tol, Context(jacobian=True))
    return [f for f in found if f.code in {"accumulated_rows", "transposed"} - set(known)]


def _uses_jacobian(question: str, name: str, n: int, did: _Did) -> None:
    require_api(
        question,
        name,
        did.used,
        "torch.autograd.functional.jacobian",
        how="`torch.autograd.functional.jacobian`",
    )


def check_per_sample_jacobian_loop(per_sample_jacobian_loop, *, hidden: bool = False) -> None:
    _check_per_sample_jacobian(
        "Q2.1 per_sample_jacobian_loop",
        per_sample_jacobian_loop,
        hidden,
        Rule(frozenset({REVERSE}), frozenset({NUMERICAL}), "one backward per sample"),
        _one_backward_per_sample,
    )


def check_per_sample_jacobian_functional(
    per_sample_jacobian_functional, *, hidden: bool = False
) -> None:
    _check_per_sample_jacobian(
        "Q2.2 per_sample_jacobian_functional",
        per_sample_jacobian_functional,
        hidden,
        Rule(
            frozenset({REVERSE, FORWARD}),
            frozenset({NUMERICAL}),
            "`torch.autograd.functional.jacobian`",
        ),
        _uses_jacobian,
    )


_VECTORISED = Rule(
    frozenset({REVERSE, FORWARD}),
    frozenset({NUMERICAL}),
    "autograd run once for the whole batch (is_grads_batched=True or vmap(jacrev(...)))",
)


def check_per_sample_jacobian_vectorized(
    per_sample_jacobian_vectorized, *, hidden: bool = False
) -> None:
    _check_per_sample_jacobian(
        "Q2.3 per_sample_jacobian_vectorized",
        per_sample_jacobian_vectorized,
        hidden,
        _VECTORISED,
        _vectorised,
    )


# --- Q3 per-sample gradients of a module's parameters ------------------------------------

VISIBLE_MODULE_X = torch.tensor([[-2.0], [-1.0], [0.5], [1.0], [3.0]], dtype=F64)


def _input_width(model: nn.Module) -> int:
    for m in model.modules():
        if hasattr(m, "in_features"):
            return int(m.in_features)
    return 1


def _linear(n_in: int, n_out: int) -> nn.Linear:
    # skip_init: the parameters are drawn from the check's generator, not torch's global one.
    return skip_init(nn.Linear, n_in, n_out, dtype=F64)


def _fresh(module: nn.Module, g: torch.Generator) -> nn.Module:
    """The module with parameters drawn from `g` (reproducible under AUTOGRADER_SEED)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(uniform(g, p.shape, -1.0, 1.0))
    return module


def _q3_cases(question: str, model, hidden: bool):
    require(
        question,
        isinstance(model, nn.Module),
        "the model passed to the check is not an nn.Module",
        [f"got {type(model).__name__}: build it with torch.nn.Linear(1, 1)"],
    )
    if not hidden:
        return [("your nn.Linear(1, 1)", model, VISIBLE_MODULE_X.clone())], (
            "your model on a batch of 5 points"
        )
    g = generator(question)
    dtype = next((p.dtype for p in model.parameters()), F64)

    def batch(width: int, dt=F64) -> torch.Tensor:
        n = int(torch.randint(30, 61, (1,), generator=g))
        return uniform(g, (n, width), -2.0, 2.0).to(dt)

    cases = [
        ("your model", model, batch(_input_width(model), dtype)),
        ("a fresh nn.Linear(1, 1)", _fresh(_linear(1, 1), g), batch(1)),
        ("nn.Linear(3, 1)", _fresh(_linear(3, 1), g), batch(3)),
        (
            "nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))",
            _fresh(nn.Sequential(_linear(2, 4), nn.Tanh(), _linear(4, 1)), g),
            batch(2),
        ),
    ]
    return cases, "your model and 3 fresh modules, fresh batches of 30–60 points in [−2, 2]"


def _check_module_grads(question: str, fn, model, hidden: bool, rule: Rule, requirement) -> None:
    cases, note = _q3_cases(question, model, hidden)
    name = getattr(fn, "__name__", "your function")
    for label, module, x in cases:
        n = x.shape[0]
        names = [k for k, _ in module.named_parameters()]
        expected = per_sample_module_grads(module, x)
        before = snapshot(module)
        got, did = _run(question, fn, rule, module, x.clone())
        answers = as_named(
            question,
            f"the per-sample gradients of {label}",
            got,
            names,
            where="the names of model.named_parameters()",
            mapping_only=True,
        )
        try:
            check_param_grads(
                question,
                f"per-sample gradient of {label}",
                answers,
                expected,
                batch=n,
                inputs_note=f"batch of {n} points; row i is d model(x)[i] / d parameter",
            )
        except CheckFailed as exc:
            # The wrong values often come from gradients read off replaced tensors: say so.
            try:
                require_untouched(question, module, before)
            except CheckFailed as touched:
                raise _with(exc, touched.diagnoses) from None
            raise
        _require_tensors(question, name, answers, "a dict {name: tensor}")
        require_untouched(question, module, before)
        requirement(question, name, n, did)
    passed(question, note)


def check_per_sample_grads_loop(per_sample_grads_loop, model, *, hidden: bool = False) -> None:
    _check_module_grads(
        "Q3.1 per_sample_grads_loop",
        per_sample_grads_loop,
        model,
        hidden,
        Rule(frozenset({REVERSE}), frozenset({NUMERICAL}), "one backward per sample"),
        _one_backward_per_sample,
    )


def check_per_sample_grads(per_sample_grads, model, *, hidden: bool = False) -> None:
    _check_module_grads(
        "Q3.2 per_sample_grads", per_sample_grads, model, hidden, _VECTORISED, _vectorised
    )


# --- Q4 second derivatives ---------------------------------------------------------------


def u_notebook(x, t):
    """The notebook's u(x; t) = t₀·sin(t₁·x) + t₂·x²."""
    return t[0] * torch.sin(t[1] * x) + t[2] * x**2


# Functions of a batch x and a parameter vector t of length 3, element-wise in x.
def u_gauss(x, t):
    return t[0] * torch.exp(-t[1] * x**2) + t[2] * x


def u_tanh(x, t):
    return t[2] * torch.tanh(t[0] * x + t[1])


_U: list[tuple[str, Callable]] = [
    ("t₀·sin(t₁·x) + t₂·x²", u_notebook),
    ("t₀·exp(−t₁·x²) + t₂·x", u_gauss),
    ("t₂·tanh(t₀·x + t₁)", u_tanh),
]

VISIBLE_T = torch.tensor([1.0, 2.0, 0.5], dtype=F64)


def _q4_cases(question: str, hidden: bool):
    if not hidden:
        x = torch.linspace(-1.0, 1.0, 5, dtype=F64)
        return [("t₀·sin(t₁·x) + t₂·x²", u_notebook, x, VISIBLE_T.clone())], (
            "u = t₀·sin(t₁·x) + t₂·x² with t = (1, 2, 0.5) on x = linspace(−1, 1, 5), "
            "against the analytic derivatives"
        )
    g = generator(question)
    cases = []
    for name, u in _U:
        n = int(torch.randint(10, 31, (1,), generator=g))
        cases.append((name, u, uniform(g, n, -2.0, 2.0), uniform(g, 3, -1.5, 1.5)))
    return cases, "3 functions u(x; t), fresh x in [−2, 2] and t in [−1.5, 1.5]³"


def _first_reference(u, x, t, hidden: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not hidden:  # the notebook's u: analytic values
        s, c = torch.sin(t[1] * x), torch.cos(t[1] * x)
        du_dt = torch.stack([s, t[0] * x * c, x**2], dim=1)
        du_dx = t[0] * t[1] * c + 2 * t[2] * x
        return du_dt, du_dx
    du_dt = jacrev(lambda tt: u(x, tt))(t)
    du_dx = vmap(torch.func.grad(u), in_dims=(0, None))(x, t)
    return du_dt, du_dx


def _second_reference(u, x, t, hidden: bool) -> torch.Tensor:
    if not hidden:
        return -t[0] * t[1] ** 2 * torch.sin(t[1] * x) + 2 * t[2]
    # torch.func.hessian is forward-over-reverse: its first use loads torch's forward-mode
    # decompositions, which warn about torch.jit. Nothing may reach stderr in a test cell.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vmap(hessian(u), in_dims=(0, None))(x, t)


def _compare(question: str, what: str, got: Any, expected: torch.Tensor, context) -> None:
    """check_close, with the exact shape the question promises: a shape that differs only
    by size-1 dimensions is named as such."""
    try:
        check_close(question, what, got, expected, context=context)
    except CheckFailed as exc:
        raise with_size_one_findings(exc, got, expected) from None


def check_first_derivatives(first_derivatives, *, hidden: bool = False) -> None:
    # No method is named for Q4.1: any way to the derivatives counts (finite differences too).
    q = "Q4.1 first_derivatives"
    cases, note = _q4_cases(q, hidden)
    for uname, u, x, t in cases:
        n = x.shape[0]
        got, _ = _run(q, first_derivatives, None, u, x.clone(), t.clone())
        require(
            q,
            isinstance(got, tuple | list) and len(got) == 2,
            "`first_derivatives` must return the pair (du_dt, du_dx)",
            [f"got {type(got).__name__}"],
        )
        du_dt, du_dx = _first_reference(u, x, t, hidden)
        ctx = Context(batch=n, inputs_note=f"u = {uname} on {n} points")
        _compare(q, "du_dt, the per-sample gradient for the parameters `t`", got[0], du_dt, ctx)
        _compare(q, "du_dx for the input `x`", got[1], du_dx, ctx)
        _require_tensors(
            q,
            "first_derivatives",
            {"du_dt": got[0], "du_dx": got[1]},
            f"the pair (du_dt, du_dx) of tensors, shaped ({n}, 3) and ({n},)",
        )
    passed(q, note)


_TWICE = Rule(
    frozenset({REVERSE, FORWARD}),
    frozenset({NUMERICAL}),
    "∂u/∂x differentiated once more with autograd",
)


def check_second_derivative(second_derivative, *, hidden: bool = False) -> None:
    q = "Q4.2 second_derivative"
    cases, note = _q4_cases(q, hidden)
    for uname, u, x, t in cases:
        n = x.shape[0]
        got, did = _run(q, second_derivative, _TWICE, u, x.clone(), t.clone())
        expected = _second_reference(u, x, t, hidden)
        ctx = Context(inputs_note=f"u = {uname} on {n} points")
        _compare(q, "d²u/dx² for the input `x`", got, expected, ctx)
        _require_tensors(q, "second_derivative", {"d²u/dx²": got}, f"a ({n},) tensor")
        # Twice: two reverse passes (create_graph=True, then grad), or forward mode over
        # anything (jacfwd(jacrev), jacfwd(jacfwd) enters one forward level).
        require(
            q,
            did.runs >= 2 or did.levels >= 1,
            "`second_derivative` differentiated only once",
            [f"in one call autograd ran {did.runs} time(s), forward mode {did.levels} time(s)"],
            [
                Finding(
                    "method_missing",
                    "this question asks for ∂u/∂x differentiated once more with autograd: "
                    "torch.autograd.grad(..., create_graph=True), then torch.autograd.grad of "
                    "that result (or torch.func.grad(torch.func.grad(u))).",
                )
            ],
        )
    passed(q, note)


defer_hidden(globals())
