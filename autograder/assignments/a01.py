"""Checks for assignment 01_derivatives.

Each `check_*` takes the student's function(s). With `hidden=False` (the visible test in
the student's notebook) it uses the fixed examples of the notebook; with `hidden=True`
(the hidden test, run at grading time) it draws fresh random inputs and compares with
references computed by torch on the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..checking import methods
from ..checking.checks import call, call_each, passed, require, returns_tensor
from ..checking.compare import Tolerance, check_close, check_outputs, tolerance_for
from ..checking.diagnose import Context
from ..checking.feedback import CheckFailed, Finding
from ..checking.forbid import (
    bound_references,
    function_source,
    recording,
    source_mentions,
)
from ..checking.plots import check_curves
from ..checking.sampling import describe, generator, uniform
from . import defer_hidden

F64 = torch.float64

# The methods the questions ask for (see autograder.checking.methods).
FINITE_DIFFERENCE = methods.Rule(
    frozenset({methods.NUMERICAL}),
    frozenset({methods.REVERSE, methods.FORWARD}),
    "a finite difference of the function you are given",
)
EXACT_BY_AUTOGRAD = methods.Rule(
    frozenset({methods.REVERSE, methods.FORWARD}),
    frozenset(),
    "the exact derivative from your autograd helper beside the finite differences",
)


def _quadratic(x):
    return 3 * x**2 - 4 * x


def _sin(x):
    return torch.sin(x)


def _exp_half(x):
    return torch.exp(x / 2)


def _cubic(x):
    return x**3 - x


def _exp(x):
    return torch.exp(x)


# Smooth test functions for the difference and derivative helpers: (name, f). Named
# module-level functions, so a grader in another process can name them to the kernel.
_FUNCTIONS: list[tuple[str, Callable]] = [
    ("3x² − 4x", _quadratic),
    ("sin(x)", _sin),
    ("exp(x/2)", _exp_half),
    ("x³ − x", _cubic),
]


def _grad_reference(f: Callable, x: torch.Tensor) -> torch.Tensor:
    return _grad_and_value(f, x)[0]


def _grad_and_value(f: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of f(x).sum() at x, f(x)), from one forward pass."""
    xr = x.detach().clone().to(F64).requires_grad_(True)
    y = f(xr)
    (g,) = torch.autograd.grad(y.sum(), xr)
    return g, y.detach()


# --- Q1 finite differences -------------------------------------------------------------


def _difference_cases(question: str, hidden: bool):
    if not hidden:
        x = torch.tensor([1.0], dtype=F64)
        return [
            ("3x² − 4x", _quadratic, x, h) for h in (1e-1, 1e-2, 1e-3)
        ], "f(x) = 3x² − 4x at x = 1"
    g = generator(question)
    cases = []
    for name, f in _FUNCTIONS:
        x = uniform(g, 5, -2.0, 2.0)
        h = float(10 ** uniform(g, 1, -4.0, -1.0))
        cases.append((name, f, x, h))
    return cases, describe(5, -2, 2) + ", h in [1e-4, 1e-1], 4 functions"


def check_forward_difference(forward_difference, *, hidden: bool = False) -> None:
    q = "Q1.1 forward_difference"
    cases, note = _difference_cases(q, hidden)
    for name, f, x, h in cases:
        got, _ = call(q, forward_difference, f, x.clone(), h, rule=FINITE_DIFFERENCE)
        returns_tensor(q, "forward_difference(f, x, h)", got)
        expected = (f(x + h) - f(x)) / h
        central = (f(x + h) - f(x - h)) / (2 * h)
        _close_or_hint(
            q,
            f"forward_difference(f = {name}, h = {h:.3g})",
            got,
            expected,
            central,
            "this is the central difference, (f(x+h) − f(x−h)) / (2h): the forward difference "
            "is the slope of the secant from x to x + h",
            _rounding(got, f, x, h),
        )
    passed(q, note)


def check_central_difference(central_difference, *, hidden: bool = False) -> None:
    q = "Q1.2 central_difference"
    cases, note = _difference_cases(q, hidden)
    for name, f, x, h in cases:
        got, _ = call(q, central_difference, f, x.clone(), h, rule=FINITE_DIFFERENCE)
        returns_tensor(q, "central_difference(f, x, h)", got)
        expected = (f(x + h) - f(x - h)) / (2 * h)
        forward = (f(x + h) - f(x)) / h
        _close_or_hint(
            q,
            f"central_difference(f = {name}, h = {h:.3g})",
            got,
            expected,
            forward,
            "this is the forward difference, (f(x+h) − f(x)) / h: the central difference is the "
            "slope of the secant from x − h to x + h",
            _rounding(got, f, x, h),
            also=[
                (
                    Finding(
                        "half_run",
                        "this is (f(x+h) − f(x−h)) / h: the points x − h and x + h are 2h "
                        "apart, so the secant's slope divides by 2h",
                    ),
                    2 * expected,
                )
            ],
        )
    passed(q, note)


def _rounding(got, f, x: torch.Tensor, h) -> Tolerance:
    """Tolerance for a finite difference in the student's dtype: rounding of f values,
    amplified by 1/h (a float32 answer is as right as float32 allows)."""
    dtype = got.dtype if isinstance(got, torch.Tensor) and got.is_floating_point() else F64
    if dtype in (torch.float16, torch.bfloat16):  # judged as float32 (see compare)
        dtype = torch.float32
    eps = torch.finfo(dtype).eps
    scale = f(x + h).abs() + f(x).abs() + f(x - h).abs()
    if not isinstance(h, torch.Tensor):
        h = torch.tensor(h, dtype=F64)
    base = tolerance_for(dtype)
    return Tolerance(base.rtol, 8 * eps * (1 + scale) / h.abs() + base.atol)


def _close_or_hint(q, what, got, expected, other, hint, tol, also=()):
    """check_close, naming the formula a wrong answer matches: the other difference
    (`other`, with `hint`) or one of `also`'s (finding, value)."""
    try:
        check_close(q, what, got, expected, tolerance=tol)
    except CheckFailed as exc:
        for finding, value in [(Finding("other_formula", hint), other), *also]:
            try:
                check_close(q, what, got, value, tolerance=tol)
            except CheckFailed:
                continue
            exc.diagnoses.insert(0, finding)
            break
        raise exc from None


def check_autograd_derivative(autograd_derivative, *, hidden: bool = False) -> None:
    q = "Q1.3 autograd_derivative"
    if hidden:
        g = generator(q)
        cases = [(n, f, float(uniform(g, 1, -2.0, 2.0))) for n, f in _FUNCTIONS]
        note = "4 functions at fresh random points in [-2, 2]"
    else:
        cases = [("3x² − 4x", _quadratic, 1.0)]
        note = "f'(1) = 2 for f(x) = 3x² − 4x"
    for name, f, x0 in cases:
        got, _ = call(q, autograd_derivative, f, x0, rule=methods.AUTOGRAD)
        returns_tensor(q, f"autograd_derivative(f = {name}, x = {x0:.4g})", got, dim=0)
        expected = _grad_reference(f, torch.tensor(x0, dtype=F64))
        check_close(q, f"autograd_derivative(f = {name}, x = {x0:.4g})", got, expected)
    passed(q, note)


def check_difference_errors(difference_errors, *, hidden: bool = False) -> None:
    q = "Q1.4 difference_errors"
    hs = torch.tensor([1e-1, 1e-2, 1e-3, 1e-4, 1e-5], dtype=F64)
    if hidden:
        g = generator(q)
        # Every function on every run, and sin where f'' < 0, so that the errors of the
        # forward difference have both signs within a run (signed errors fail every time).
        cases = [
            ("sin(x)", _sin, float(uniform(g, 1, 0.4, 1.2))),
            ("exp(x/2)", _exp_half, float(uniform(g, 1, -1.5, 1.5))),
            ("x³ − x", _cubic, float(uniform(g, 1, -1.5, -0.4))),
        ]
        note = "3 functions at fresh random points"
    else:
        # The notebook's table: a function whose third derivative is not 0, so that the
        # central difference has an error of its own (3x² − 4x would have none).
        cases = [("exp(x)", _exp, 0.0)]
        note = "f(x) = exp(x) at x = 0"
    for name, f, x0 in cases:
        result, _ = call(q, difference_errors, f, x0, hs.clone(), rule=EXACT_BY_AUTOGRAD)
        require(
            q,
            isinstance(result, tuple | list) and len(result) == 2,
            "difference_errors must return a pair (forward_errors, central_errors)",
            [f"got {type(result).__name__}"],
        )
        x = torch.tensor(x0, dtype=F64)
        exact = _grad_reference(f, x)
        fwd = ((f(x + hs) - f(x)) / hs - exact).abs()
        cen = ((f(x + hs) - f(x - hs)) / (2 * hs) - exact).abs()
        # At small h the errors are rounding noise, amplified by 1/h; the student may have
        # worked in float32 anywhere (helpers or exact derivative), so allow float32 noise.
        f32 = torch.zeros((), dtype=torch.float32)
        noise = _rounding(f32, f, x, hs).atol + 1e-6 * exact.abs()
        for label, got, ref in (("forward", result[0], fwd), ("central", result[1], cen)):
            signed = (
                ((f(x + hs) - f(x)) / hs - exact)
                if label == "forward"
                else ((f(x + hs) - f(x - hs)) / (2 * hs) - exact)
            )
            # Signed errors are a mistake of their own only where some error is negative, and
            # are named only for an answer that matches them element by element (the
            # diagnosis compares at the largest noise of all the steps, too loose here).
            negative = bool((signed < -(noise + 1e-3 * signed.abs())).any())
            try:
                mine = torch.as_tensor(got, dtype=F64)
                negative = (
                    negative
                    and mine.shape == signed.shape
                    and bool(((mine - signed).abs() <= noise + 1e-3 * signed.abs()).all())
                )
            except (TypeError, ValueError, RuntimeError):
                negative = False
            ctx = Context(
                mistakes=[
                    (
                        Finding(
                            "signed_error",
                            "these are the signed errors (approximation − exact): the question "
                            "asks for their absolute values, |approximation − f'(x0)|.",
                        ),
                        signed,
                    )
                ]
                if negative
                else []
            )
            check_close(
                q,
                f"{label} errors (f = {name})",
                got,
                ref,
                tolerance=Tolerance(1e-3, noise),
                context=ctx,
            )
    passed(q, note)


# --- Q2 gradient of a scalar function of a vector ---------------------------------------


def _two_xtx(x):
    return 2 * x @ x


def _xtx(x):
    return x @ x


def _sum(x):
    return x.sum()


def _sin_x_squared(x):
    return (torch.sin(x) * x**2).sum()


_SCALAR_FUNCTIONS: list[tuple[str, Callable]] = [
    ("y = 2·xᵀx", _two_xtx),
    ("y = xᵀx", _xtx),
    ("y = Σ xᵢ", _sum),
    ("y = Σ sin(xᵢ)·xᵢ²", _sin_x_squared),
]


def check_gradient(gradient, *, hidden: bool = False) -> None:
    q = "Q2 gradient"
    if hidden:
        g = generator(q)
        cases = [
            (n, f, uniform(g, int(torch.randint(2, 7, (1,), generator=g)), -3.0, 3.0))
            for n, f in _SCALAR_FUNCTIONS
        ]
        note = "4 functions at fresh random vectors"
    else:
        x = torch.arange(4.0, dtype=F64)
        cases = [(n, f, x) for n, f in _SCALAR_FUNCTIONS[:3]]
        note = "x = (0, 1, 2, 3)"
    for name, f, x in cases:
        got, caught = call(q, gradient, f, x.clone(), rule=methods.AUTOGRAD)
        check_close(q, f"gradient of {name}", got, _grad_reference(f, x))
    passed(q, note)


# --- Q3 batched scalar derivative --------------------------------------------------------


def _f3(x):
    return x**2 + torch.sin(x**2)


def _f3_prime(x):
    return 2 * x + 2 * x * torch.cos(x**2)


def _f3_mistakes(x):
    missing = Finding(
        "missing_chain_factor",
        "your answer differentiates sin(x²) as cos(x²) (or 2·cos(x²)): the chain rule "
        "multiplies cos(x²) by the derivative of the inner x², and that factor is missing.",
    )
    return [
        (missing, 2 * x + torch.cos(x**2)),
        (missing, 2 * x + 2 * torch.cos(x**2)),
        (
            Finding(
                "missing_term",
                "your answer is the derivative of sin(x²) alone: f(x) = x² + sin(x²) has two "
                "terms, and the derivative of x² is missing.",
            ),
            2 * x * torch.cos(x**2),
        ),
        (
            Finding(
                "inner_derivative_inside",
                "you wrote cos(2x) for the derivative of sin(x²): the chain rule keeps the "
                "inner function inside, cos(x²), and multiplies by the inner derivative 2x "
                "outside.",
            ),
            2 * x + torch.cos(2 * x),
        ),
        (
            Finding(
                "wrong_outer_derivative",
                "you differentiated sin as −sin (or as −cos): the derivative of sin(u) is "
                "cos(u), times u'.",
            ),
            2 * x - 2 * x * torch.sin(x**2),
        ),
    ]


def _f3_terms(x):
    return {"2x (of x²)": 2 * x, "2x·cos(x²) (of sin(x²))": 2 * x * torch.cos(x**2)}


def _batch_x(question: str, hidden: bool) -> tuple[torch.Tensor, str]:
    if not hidden:
        return torch.linspace(0, 5, 11, dtype=F64), "x = linspace(0, 5, 11)"
    g = generator(question)
    n = int(torch.randint(20, 60, (1,), generator=g))
    x = uniform(g, n, 0.0, 5.0).sort().values
    return x, describe(n, 0, 5)


def check_f_prime_analytic(f_prime, *, hidden: bool = False) -> None:
    q = "Q3.1 f_prime (analytic)"
    x, note = _batch_x(q, hidden)
    got, _ = call(q, f_prime, x.clone(), rule=methods.BY_FORMULA)
    ctx = Context(
        factors={"2x, the derivative of x² inside sin": 2 * x},
        mistakes=_f3_mistakes(x),
        terms=_f3_terms(x),
    )
    check_close(q, "f'(x) = d/dx [x² + sin(x²)]", got, _f3_prime(x), context=ctx)
    passed(q, note)


BACKWARD_WITH_GRADIENT = methods.Rule(
    frozenset({methods.REVERSE}),
    frozenset({methods.NUMERICAL, methods.FORWARD}),
    "backward(gradient=...) (reverse-mode autograd)",
)


def check_f_prime_autograd(f_prime_autograd, *, hidden: bool = False) -> None:
    q = "Q3.2 f_prime_autograd"
    x, note = _batch_x(q, hidden)
    got, _ = call(q, f_prime_autograd, x.clone(), rule=BACKWARD_WITH_GRADIENT)
    ctx = Context(
        y=_f3(x),
        factors={"2x, the derivative of x² inside sin": 2 * x},
        mistakes=_f3_mistakes(x),
        terms=_f3_terms(x),
    )
    check_close(q, "f'(x) by autograd", got, _grad_reference(_f3, x), context=ctx)
    passed(q, note)


# --- Q4 gradients through control flow ---------------------------------------------------


def control_flow_f(a: torch.Tensor) -> torch.Tensor:
    """The notebook's function: double until the norm passes 1000; ×100 if the sum < 0."""
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c


def check_control_flow_grad(control_flow_grad, *, hidden: bool = False) -> None:
    q = "Q4.1 control_flow_grad"
    if hidden:
        g = generator(q)
        # Both branches on every run (a sum of either sign), and a zero entry, where
        # f(a)/a is not a number but the gradient is.
        draws = []
        for k in range(6):
            a = torch.randn(3, generator=g, dtype=F64)
            if (float(a.sum()) < 0) != (k % 2 == 0):
                a = -a
            draws.append(a)
        draws[-1][int(torch.randint(0, 3, (1,), generator=g))] = 0.0
        note = "6 fresh random draws, both branches"
    else:
        draws = [torch.tensor([0.5, -1.0, 2.0], dtype=F64)]
        note = "a = (0.5, −1, 2)"
    for a in draws:
        got, _ = call(q, control_flow_grad, a.clone(), rule=methods.AUTOGRAD)
        check_close(q, "d f(a) / da", got, _grad_reference(control_flow_f, a))
    passed(q, note)


def check_matches_ratio(matches_ratio, *, hidden: bool = False) -> None:
    q = "Q4.2 matches_ratio"
    g = generator(q)
    # Exact equality fails on 16 % of draws (3 220 of 20 000 measured): 80 draws miss every
    # failing one about once in a million runs.
    n = 80 if hidden else 50
    triples = []
    for _ in range(n):
        a = torch.randn(3, generator=g, dtype=F64)
        grad, fa = _grad_and_value(control_flow_f, a)
        triples.append((grad, a.clone(), fa))
    results = call_each(q, matches_ratio, triples)
    _bools(q, results)
    rejected = sum(not bool(ok) for ok, _ in results)
    require(
        q,
        rejected == 0,
        "a correct gradient was rejected",
        [f"{rejected} of {n} correct (grad, a, f(a)) triples returned False"],
        [
            Finding(
                "exact_equality",
                "f(a)/a and the gradient agree only up to rounding: compare with "
                "torch.allclose, not ==.",
            )
        ]
        if rejected < n
        else [],
    )
    triples = []
    for k in range(24):
        a = torch.randn(3, generator=g, dtype=F64)
        grad, fa = _grad_and_value(control_flow_f, a)
        wrong = grad.clone()
        kind = k % 4
        if kind == 0:  # far off everywhere
            wrong = grad * (1.5 if k % 8 else -1.0)
        elif kind == 1:  # one element off, not the first
            wrong[1 + k % 2] *= 1.01
        elif kind == 2:  # two elements off, the sum kept
            delta = 0.01 * float(grad.abs().max())
            wrong[0] += delta
            wrong[2] -= delta
        else:  # off by a relative 1e-3 everywhere: far beyond rounding
            wrong = grad * (1 + 1e-3)
        triples.append((wrong, a, fa))
    answers = call_each(q, matches_ratio, triples)
    _bools(q, answers)
    wrong = sum(bool(ok) for ok, _ in answers)
    require(
        q,
        wrong == 0,
        "a wrong gradient was accepted",
        [
            f"{wrong} of {len(triples)} wrong gradients returned True (some differ from f(a)/a "
            "in one element only, or by 0.1 %): compare every element, at rounding tolerance"
        ],
    )
    passed(q, f"{n} random draws accepted, {len(triples)} wrong gradients rejected")


def _bools(q: str, answers: list) -> None:
    """matches_ratio promises True or False (a 0-d bool tensor is read as one)."""
    for ok, _ in answers:
        if isinstance(ok, bool | np.bool_) or (
            isinstance(ok, torch.Tensor) and ok.dtype == torch.bool and ok.numel() == 1
        ):
            continue
        raise CheckFailed(
            q,
            "matches_ratio must return True or False",
            [f"got {type(ok).__name__}: {str(ok)[:60]}"],
            [
                Finding(
                    "wrong_type",
                    "return a bool: torch.allclose(...) gives one (bool(...) turns a one-element "
                    "comparison into one).",
                )
            ],
        )


# --- Q5 sin and its derivative -----------------------------------------------------------

FORBIDDEN = {"cos"}


def _no_cos(q: str, fns: list[Callable], run: Callable[[], object]):
    """Run `run()` while recording cos; fail if any layer sees cos in the answer."""
    with recording(FORBIDDEN) as hits:
        result = run()
    where: list[str] = []
    if hits:
        where.append("called at run time: " + ", ".join(sorted(set(hits))))
    for fn in fns:
        where += bound_references(fn, FORBIDDEN)
        where += [
            f"in `{getattr(fn, '__name__', '?')}` {m}"
            for m in source_mentions(function_source(fn), FORBIDDEN)
        ]
    require(
        q,
        not where,
        "the answer uses cos",
        where[:4] + ["obtain the derivative of sin with autograd, without cos"],
        [Finding("used_forbidden", "cos is not allowed here: autograd must find the derivative")],
    )
    return result


def _sin_grid(q: str, hidden: bool):
    if not hidden:
        return torch.linspace(
            -2 * math.pi, 2 * math.pi, 101, dtype=F64
        ), "x = linspace(−2π, 2π, 101)"
    g = generator(q)
    n = int(torch.randint(50, 150, (1,), generator=g))
    lo = float(uniform(g, 1, -8.0, -2.0))
    hi = float(uniform(g, 1, 2.0, 8.0))
    return torch.linspace(
        lo, hi, n, dtype=F64
    ), f"a fresh grid of {n} points on [{lo:.2f}, {hi:.2f}]"


def check_sin_and_derivative(sin_and_derivative, *, hidden: bool = False) -> None:
    q = "Q5.1 sin_and_derivative"
    x, note = _sin_grid(q, hidden)
    result, _ = call(q, sin_and_derivative, x.clone(), rule=methods.AUTOGRAD)
    require(
        q,
        isinstance(result, tuple | list) and len(result) == 2,
        "sin_and_derivative must return a pair (y, dydx)",
        [f"got {type(result).__name__}"],
    )
    check_outputs(q, ["y = sin(x)", "dy/dx"], result, [torch.sin(x), _grad_reference(torch.sin, x)])
    passed(q, note)


def check_no_cos(sin_and_derivative, plot_sin_and_derivative, *, hidden: bool = False) -> None:
    """The no-cos point: a correct derivative (and plot) obtained without any cos."""
    q = "Q5.2 no cos"
    x, _ = _sin_grid(q, hidden)
    results = {}

    def run():
        results["pair"], _ = call(q, sin_and_derivative, x.clone())
        results["hits"] = methods.LAST_CALL[q][2]
        fig, _ = call(q, plot_sin_and_derivative, x.clone())
        _close(fig)

    _no_cos(q, [sin_and_derivative, plot_sin_and_derivative], run)
    # Without cos, the derivative must still come from autograd (not an identity such as
    # sin(x + π/2), nor a finite difference).
    methods.enforce(q, methods.AUTOGRAD, results["hits"], "sin_and_derivative")
    # Not using cos is worth a point only for an answer that is right.
    pair = results["pair"]
    require(
        q,
        isinstance(pair, tuple | list) and len(pair) == 2,
        "sin_and_derivative must return a pair (y, dydx)",
        [f"got {type(pair).__name__}"],
    )
    check_close(q, "dy/dx", pair[1], _grad_reference(torch.sin, x))
    passed(q, "no cos in the code or at run time, and the derivative is right")


def check_plot(plot_sin_and_derivative, *, hidden: bool = False) -> None:
    q = "Q5.3 plot"
    x, note = _sin_grid(q, hidden)
    fig, _ = call(q, plot_sin_and_derivative, x.clone())
    try:
        check_curves(
            q,
            fig,
            {"sin(x)": np.sin, "the derivative, cos(x)": np.cos},
            grid=x.numpy(),
            one_axes=True,
            figure=True,
        )
    finally:
        _close(fig)
    passed(q, note)


def _close(fig) -> None:
    try:
        import matplotlib.pyplot as plt

        if fig is not None and hasattr(fig, "canvas"):
            plt.close(fig)
    except Exception:  # closing is best effort; the check has already decided
        pass


defer_hidden(globals())
