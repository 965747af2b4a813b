"""Checks for assignment 04_parametrized (gradients with respect to parameters).

Each `check_*` takes the student's function (and, for the module questions, the module
the notebook built). With `hidden=False` (the visible test) it uses the notebook's fixed
examples; with `hidden=True` (run at grading time) it draws fresh inputs and parameters,
and other functions and modules of the same kind, and compares with references computed
by torch on the same inputs. References come from :mod:`autograder.checking.params`, parameter by
parameter, so every message names the parameter (`a`, `b`, `weight`, `bias`, `t`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.func import hessian, jacrev, vmap
from torch.nn.utils import skip_init

from ..checking.checks import call, passed, require
from ..checking.compare import as_tensor, check_close, tolerance_for
from ..checking.diagnose import Context, diagnose_values
from ..checking.feedback import CheckFailed, Finding
from ..checking.forbid import autograd_calls
from ..checking.params import (
    as_named,
    autograd_apis,
    check_param_grads,
    fit_singletons,
    gradients,
    per_sample_function_grads,
    per_sample_module_grads,
    require_api,
    require_untouched,
    snapshot,
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


def _check_three_grads(question: str, fn, hidden: bool, api: str, how: str) -> None:
    cases, note = _q1_cases(question, hidden)
    name = getattr(fn, "__name__", "your function")
    for fname, f, x, a, b in cases:
        with autograd_apis(fn) as used:
            got, _ = call(question, fn, f, x.clone(), a.clone(), b.clone())
        at = f"f = {fname} at x = {float(x):.4g}, a = {float(a):.4g}, b = {float(b):.4g}"
        require(
            question,
            isinstance(got, tuple | list) and len(got) == 3,
            f"`{name}` must return the triple (df_da, df_db, df_dx)",
            [f"got {type(got).__name__}: return df_da, df_db, df_dx"],
        )
        answers = as_named(question, name, got, ["a", "b", "x"])
        expected = gradients(lambda x, a, b, f=f: f(x, a, b), {"x": x, "a": a, "b": b})
        for key in ("a", "b", "x"):
            check_close(question, f"∂f/∂{key} for `{key}` ({at})", answers[key], expected[key])
        require_api(question, name, used, api, how=how)
    passed(question, note)


def check_grads_backward(grads_backward, *, hidden: bool = False) -> None:
    _check_three_grads("Q1.1 grads_backward", grads_backward, hidden, "backward", "`.backward()`")


def check_grads_autograd_grad(grads_autograd_grad, *, hidden: bool = False) -> None:
    _check_three_grads(
        "Q1.2 grads_autograd_grad",
        grads_autograd_grad,
        hidden,
        "torch.autograd.grad",
        "`torch.autograd.grad`",
    )


def check_grads_jacobian(grads_jacobian, *, hidden: bool = False) -> None:
    _check_three_grads(
        "Q1.3 grads_jacobian",
        grads_jacobian,
        hidden,
        "torch.autograd.functional.jacobian",
        "`torch.autograd.functional.jacobian`",
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


def _check_per_sample_jacobian(question: str, fn, hidden: bool, requirement) -> None:
    cases, note = _q2_cases(question, hidden)
    name = getattr(fn, "__name__", "your function")
    for fname, f, x, a, b in cases:
        n = x.shape[0]
        with autograd_calls() as engine, autograd_apis(fn) as used:
            got, _ = call(question, fn, f, x.clone(), a.clone(), b.clone())
        ref = per_sample_function_grads(f, x, {"a": a, "b": b})
        expected = torch.stack([ref["a"], ref["b"]], dim=1)
        what = f"the per-sample Jacobian of f = {fname} with respect to (a, b)"
        got = fit_singletons(got, expected)
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
            check_close(
                question,
                what,
                got,
                expected,
                context=Context(jacobian=True, batch=n, inputs_note=f"batch of {n} points"),
            )
        requirement(question, name, n, len(engine), used)
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


def _one_backward_per_sample(question: str, name: str, n: int, runs: int, used) -> None:
    require(
        question,
        runs >= n,
        f"`{name}` should run one backward per sample",
        [f"the batch had {n} samples; autograd ran {runs} time(s)"],
        [
            Finding(
                "not_a_loop",
                "this question asks for the slow, explicit way: for each sample i, a backward "
                "with the one-hot vector eᵢ as `gradient` (retain_graph=True), reading the "
                "gradients of a and b and clearing them before the next sample.",
            )
        ],
    )


def _vectorised(question: str, name: str, n: int, runs: int, used) -> None:
    require(
        question,
        runs <= 2,
        f"`{name}` is not vectorised",
        [f"the batch had {n} samples; autograd ran {runs} times"],
        [
            Finding(
                "not_vectorised",
                "autograd ran once per sample, which is the loop. Ask for all rows at once: "
                "torch.autograd.grad(out, (a, b), torch.eye(B), is_grads_batched=True), or "
                "torch.func.vmap(torch.func.jacrev(...)) over the samples.",
            )
        ],
    )


def _uses_jacobian(question: str, name: str, n: int, runs: int, used) -> None:
    require_api(
        question,
        name,
        used,
        "torch.autograd.functional.jacobian",
        how="`torch.autograd.functional.jacobian`",
    )


def check_per_sample_jacobian_loop(per_sample_jacobian_loop, *, hidden: bool = False) -> None:
    _check_per_sample_jacobian(
        "Q2.1 per_sample_jacobian_loop", per_sample_jacobian_loop, hidden, _one_backward_per_sample
    )


def check_per_sample_jacobian_functional(
    per_sample_jacobian_functional, *, hidden: bool = False
) -> None:
    _check_per_sample_jacobian(
        "Q2.2 per_sample_jacobian_functional",
        per_sample_jacobian_functional,
        hidden,
        _uses_jacobian,
    )


def check_per_sample_jacobian_vectorized(
    per_sample_jacobian_vectorized, *, hidden: bool = False
) -> None:
    _check_per_sample_jacobian(
        "Q2.3 per_sample_jacobian_vectorized", per_sample_jacobian_vectorized, hidden, _vectorised
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


def _check_module_grads(question: str, fn, model, hidden: bool, requirement) -> None:
    cases, note = _q3_cases(question, model, hidden)
    name = getattr(fn, "__name__", "your function")
    for label, module, x in cases:
        n = x.shape[0]
        names = [k for k, _ in module.named_parameters()]
        expected = per_sample_module_grads(module, x)
        before = snapshot(module)
        with autograd_calls() as engine:
            got, _ = call(question, fn, module, x.clone())
        answers = as_named(
            question,
            f"the per-sample gradients of {label}",
            got,
            names,
            where="the names of model.named_parameters()",
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
        require_untouched(question, module, before)
        requirement(question, name, n, len(engine), [])
    passed(question, note)


def check_per_sample_grads_loop(per_sample_grads_loop, model, *, hidden: bool = False) -> None:
    _check_module_grads(
        "Q3.1 per_sample_grads_loop", per_sample_grads_loop, model, hidden, _one_backward_per_sample
    )


def check_per_sample_grads(per_sample_grads, model, *, hidden: bool = False) -> None:
    _check_module_grads("Q3.2 per_sample_grads", per_sample_grads, model, hidden, _vectorised)


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


def check_first_derivatives(first_derivatives, *, hidden: bool = False) -> None:
    q = "Q4.1 first_derivatives"
    cases, note = _q4_cases(q, hidden)
    for uname, u, x, t in cases:
        n = x.shape[0]
        got, _ = call(q, first_derivatives, u, x.clone(), t.clone())
        require(
            q,
            isinstance(got, tuple | list) and len(got) == 2,
            "`first_derivatives` must return the pair (du_dt, du_dx)",
            [f"got {type(got).__name__}"],
        )
        du_dt, du_dx = _first_reference(u, x, t, hidden)
        ctx = Context(batch=n, inputs_note=f"u = {uname} on {n} points")
        check_close(
            q,
            "du_dt, the per-sample gradient for the parameters `t`",
            fit_singletons(got[0], du_dt),
            du_dt,
            context=ctx,
        )
        check_close(q, "du_dx for the input `x`", fit_singletons(got[1], du_dx), du_dx, context=ctx)
    passed(q, note)


def check_second_derivative(second_derivative, *, hidden: bool = False) -> None:
    q = "Q4.2 second_derivative"
    cases, note = _q4_cases(q, hidden)
    for uname, u, x, t in cases:
        n = x.shape[0]
        got, _ = call(q, second_derivative, u, x.clone(), t.clone())
        expected = _second_reference(u, x, t, hidden)
        ctx = Context(inputs_note=f"u = {uname} on {n} points")
        check_close(
            q, "d²u/dx² for the input `x`", fit_singletons(got, expected), expected, context=ctx
        )
    passed(q, note)


defer_hidden(globals())
