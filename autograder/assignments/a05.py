"""Checks for assignment 05_using_autograd (extending autograd, and using its gradients).

Each `check_*` takes the student's function. With `hidden=False` (the visible test) it
uses the notebook's fixed example; with `hidden=True` (run at grading time) it draws
fresh inputs, and compares with references the grader computes itself: closed forms for
the softplus derivatives, the training trajectories and the pitfalls' gradients, and the
full Hessian (`torch.autograd.functional.hessian`) for the Hessian-vector products.

Beyond the values, each check holds the answer to what the question's words ask:

- Q1.1 softplus stays finite and exact for |x| up to 1000 (the inputs include values
  beyond exp's range) and calls none of torch's softplus, logaddexp, logsumexp;
  Q1.2 the gradient comes from torch's engine (a formula or a finite difference never
  runs it); Q1.3 the engine runs twice (a gradient of the gradient) and no input is
  moved by a difference step;
- Q2.1/Q2.2 the trajectory the gradient-descent loop of a two-feature linear model
  (x @ w + b, nn.Linear(2, 1)'s computation) produces, step by step, with at
  least one engine run per step; a known wrong loop (gradients never zeroed, the frozen
  parameter trained too) is named only when the answer reproduces that loop's
  trajectory, and an update recorded by autograd only from the non-leaf `.grad` it
  leads to; Q2.3 a prediction that records no graph;
- Q3.x the gradients of the fixed pitfalls, by autograd, with the known wrong values
  (the gradient from a `.data` change, the NaN of a masked sqrt, the gradient clipped at
  the wrong tensor or not at all, `.grad` not cleared between two backward calls) named
  only when the answer equals them;
- Q4.1 a Hessian-vector product by double backward (reverse passes only, at least two,
  no full Hessian), Q4.2 by forward over reverse (forward mode over a reverse pass, no
  full Hessian: no jacrev/jacfwd/hessian, at most three engine runs).

Limit: whether Q1.2/Q1.3 went through the student's own `Function` is not recorded (the
kernel reports engine runs, not which nodes ran). What separates a hand-written
backward from autograd of a formula are the values: at inputs where the naive formulas
overflow, and at x = 0, where autograd through clamp or relu and abs gives 1 or 0 instead
of ½ (through torch.maximum it gives ½, and such an answer passes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..checking import forbid, methods
from ..checking.checks import call, passed, require, returns_tensor
from ..checking.compare import as_tensor, check_close, tolerance_for
from ..checking.diagnose import Context
from ..checking.feedback import CheckFailed, Finding
from ..checking.methods import FORWARD, NUMERICAL, REVERSE, Rule
from ..checking.params import autograd_apis
from ..checking.sampling import generator, uniform
from . import defer_hidden

F64 = torch.float64


# --- shared helpers ----------------------------------------------------------------------


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", "your function")


def _run(question: str, fn: Any, rule: Rule | None, *args: Any) -> tuple[Any, list[str]]:
    """Call the student's `fn(*args)` (recorded, checked against `rule` and for changed
    inputs); return the result and the method record of the call."""
    got, _ = call(question, fn, *args, rule=rule)
    return got, list(methods.LAST_CALL[question][2])


def _levels(hits: list[str]) -> int:
    return hits.count(FORWARD)


def _same(got: Any, wrong: torch.Tensor) -> bool:
    """Whether `got` holds the values of the known wrong answer `wrong` (NaN and inf
    where it has them, close elsewhere, at the tolerance of `got`'s dtype)."""
    t = as_tensor(got)
    if t is None or not t.is_floating_point() or t.shape != wrong.shape:
        return False
    w = wrong.detach().to(F64)
    finite = torch.isfinite(w)
    scale = float(w[finite].abs().max()) if bool(finite.any()) else 1.0
    tol = tolerance_for(t.dtype, scale)
    return bool(tol.close(t.detach().to(F64), w).all())


def _with_first(exc: CheckFailed, findings: list[Finding]) -> CheckFailed:
    """The same failure with `findings` named first (a new exception: its text is fixed
    at creation)."""
    codes = {f.code for f in findings}
    return CheckFailed(
        exc.question,
        exc.summary,
        exc.details,
        findings + [f for f in exc.diagnoses if f.code not in codes],
    )


def _compare(
    question: str,
    what: str,
    got: Any,
    expected: torch.Tensor,
    mistakes: list[tuple[Finding, torch.Tensor]],
    note: str = "",
) -> None:
    """check_close; on a mismatch, a known wrong answer the values equal is named first."""
    try:
        check_close(question, what, got, expected, context=Context(inputs_note=note))
    except CheckFailed as exc:
        named = [f for f, wrong in mistakes if _same(got, wrong)]
        if named:
            raise _with_first(exc, named[:1]) from None
        raise


def _scalar(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


# --- Q1 a custom autograd.Function: a numerically stable softplus -------------------------

VISIBLE_SOFTPLUS_X = torch.tensor([-1000.0, -30.0, -1.0, 0.0, 0.5, 30.0, 1000.0], dtype=F64)
VISIBLE_SOFTPLUS_V = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0, -2.0, 1.5], dtype=F64)

# The builtins that compute softplus (or log(1 + eˣ) by another name) in one call.
_SOFTPLUS_BUILTINS = frozenset({"softplus", "logaddexp", "logsumexp"})


def _softplus_inputs(question: str, hidden: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """x with moderate values, 0, and values beyond exp's range (|x| up to 1000), and a
    `gradient` vector v."""
    if not hidden:
        return (
            VISIBLE_SOFTPLUS_X.clone(),
            VISIBLE_SOFTPLUS_V.clone(),
            "x = (−1000, −30, −1, 0, 0.5, 30, 1000)",
        )
    g = generator(question)
    n = int(torch.randint(12, 25, (1,), generator=g))
    x = torch.cat(
        [
            uniform(g, n, -6.0, 6.0),
            uniform(g, 2, 100.0, 700.0),
            uniform(g, 2, 750.0, 1000.0),  # beyond exp's range in float64 (709.8)
            -uniform(g, 4, 100.0, 1000.0),
            torch.zeros(1, dtype=F64),
        ]
    )
    x = x[torch.randperm(x.numel(), generator=g)]
    v = uniform(g, x.numel(), -2.0, 2.0, avoid=((-0.2, 0.2),))
    return x, v, f"{x.numel()} fresh points: in [−6, 6], ±[100, 1000] (two above 750) and 0"


def _moderate_inputs(question: str, hidden: bool) -> tuple[torch.Tensor, str]:
    """x in [−6, 6] with 0 (Q1.3: a difference of the gradient would run the engine
    twice too, so differences are watched for, at the scale of these inputs)."""
    if not hidden:
        return torch.tensor([-4.0, -1.0, 0.0, 0.5, 2.0, 5.0], dtype=F64), (
            "x = (−4, −1, 0, 0.5, 2, 5)"
        )
    g = generator(question)
    n = int(torch.randint(12, 25, (1,), generator=g))
    x = torch.cat([uniform(g, n, -6.0, 6.0), torch.zeros(1, dtype=F64)])
    return x[torch.randperm(n + 1, generator=g)], f"{n + 1} fresh points in [−6, 6] and 0"


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


_OVERFLOW = Finding(
    "softplus_overflow",
    "exp(x) overflows to inf for x above 709 in float64 (88 in float32), so log(1 + exp(x)) "
    "is inf there. Rewrite it so that exp only ever sees numbers ≤ 0: for x > 0, "
    "log(1 + eˣ) = x + log(1 + e⁻ˣ).",
)
_BACKWARD_OVERFLOW = Finding(
    "softplus_overflow",
    "your backward computes exp(x) / (1 + exp(x)), which is inf / inf = NaN once exp(x) "
    "overflows (x above 709 in float64). Write the same derivative so that exp only ever "
    "sees numbers ≤ 0 (divide above and below by exp(x)), or read it off the saved output.",
)
_IGNORED_GRAD_OUTPUT = Finding(
    "ignored_grad_output",
    "your backward returns the derivative σ(x) itself: backward receives grad_output (the "
    "gradient of the final result with respect to your Function's output) and must return "
    "grad_output · σ(x), the chain rule's product.",
)


def check_softplus(softplus, *, hidden: bool = False) -> None:
    q = "Q1.1 softplus"
    x, _, note = _softplus_inputs(q, hidden)
    with forbid.recording(_SOFTPLUS_BUILTINS) as builtins:
        got, _ = _run(q, softplus, None, x.clone())
    require(
        q,
        not builtins,
        f"`{_name(softplus)}` calls torch's own softplus",
        [f"called: {', '.join(sorted(set(builtins)))}"],
        [
            Finding(
                "used_forbidden",
                "write the forward pass yourself from elementary operations (exp, log1p, abs, "
                "clamp or maximum): F.softplus, torch.logaddexp and torch.logsumexp are the "
                "answer itself.",
            )
        ],
    )
    expected = torch.nn.functional.softplus(x)
    naive = torch.log1p(torch.exp(x))
    _compare(q, f"softplus(x) on {note}", got, expected, [(_OVERFLOW, naive)], note)
    returns_tensor(q, f"the result of `{_name(softplus)}`", got)
    passed(q, note)


# Q1.2 requires the engine, run through the student's own Function: a finite difference,
# which never runs it, fails that without watching every torch operation at |x| = 1000.
_THROUGH_ENGINE = Rule(
    frozenset({REVERSE}),
    frozenset(),
    "the gradient computed by torch's engine through your Function's backward",
    through_function=True,
)


def check_softplus_grad(softplus_grad, *, hidden: bool = False) -> None:
    q = "Q1.2 softplus_grad"
    x, v, note = _softplus_inputs(q, hidden)
    got, _ = _run(q, softplus_grad, _THROUGH_ENGINE, x.clone(), v.clone())
    expected = v * _sigmoid(x)
    with torch.no_grad():
        overflowing = v * torch.exp(x) / (1 + torch.exp(x))
    mistakes = [(_BACKWARD_OVERFLOW, overflowing), (_IGNORED_GRAD_OUTPUT, _sigmoid(x))]
    _compare(q, f"vᵀJ of softplus at {note}", got, expected, mistakes, note)
    returns_tensor(q, f"the result of `{_name(softplus_grad)}`", got)
    passed(q, note)


_TWICE = Rule(
    frozenset({REVERSE}),
    frozenset({NUMERICAL}),
    "the second derivative by differentiating your Function's gradient again (create_graph=True)",
    through_function=True,
)


def check_softplus_second(softplus_second, *, hidden: bool = False) -> None:
    q = "Q1.3 softplus_second"
    x, note = _moderate_inputs(q, hidden)
    got, hits = _run(q, softplus_second, _TWICE, x.clone())
    s = _sigmoid(x)
    expected = s * (1 - s)
    _compare(q, f"d²softplus/dx² at {note}", got, expected, [], note)
    returns_tensor(q, f"the result of `{_name(softplus_second)}`", got)
    require(
        q,
        methods.engine_runs(hits) >= 2,
        f"`{_name(softplus_second)}` differentiated only once",
        [f"in one call autograd ran {methods.engine_runs(hits)} time(s)"],
        [
            Finding(
                "method_missing",
                "this question asks for the gradient of your Function's gradient: "
                "torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True), then "
                "torch.autograd.grad of that result. It works only if your backward is built "
                "from differentiable torch operations.",
            )
        ],
    )
    passed(q, note)


# --- Q2 using gradients: gradient descent, a frozen parameter, inference ----------------

# Two features: the model x @ w + b is what nn.Linear(2, 1) computes (weight w, bias b).
VISIBLE_FIT_X = torch.stack(
    [torch.linspace(-1.0, 1.0, 8, dtype=F64), torch.cos(torch.arange(8, dtype=F64))], dim=1
)
VISIBLE_FIT_Y = (
    VISIBLE_FIT_X @ torch.tensor([2.0, -1.0], dtype=F64)
    + 0.5
    + 0.1 * torch.sin(7.0 * VISIBLE_FIT_X[:, 0])
)


def gd_trajectory(x, y, w0, b0, lr, steps, *, train_b=True, zero_grads=True) -> torch.Tensor:
    """(steps + 1, d + 1): (w, b) before the first step and after each step of gradient
    descent on the mean squared error of x @ w + b, x of shape (N, d); `zero_grads=False`
    lets the gradients add up over the steps (what a loop that never zeroes them does),
    `train_b=False` keeps b fixed."""
    x, y = x.to(F64), y.to(F64)
    w, b = w0.detach().to(F64).clone(), float(b0)
    gw_sum, gb_sum = torch.zeros_like(w), 0.0
    rows = [torch.cat([w, torch.tensor([b], dtype=F64)])]
    for _ in range(steps):
        r = x @ w + b - y
        gw, gb = 2 * (x * r[:, None]).mean(0), float(2 * r.mean())
        if zero_grads:
            gw_sum, gb_sum = gw, gb
        else:
            gw_sum, gb_sum = gw_sum + gw, gb_sum + gb
        w = w - lr * gw_sum
        if train_b:
            b -= lr * gb_sum
        rows.append(torch.cat([w, torch.tensor([b], dtype=F64)]))
    return torch.stack(rows)


def _fit_cases(question: str, hidden: bool):
    if not hidden:
        start = (torch.zeros(2, dtype=F64), _scalar(0.0))
        return [(VISIBLE_FIT_X.clone(), VISIBLE_FIT_Y.clone(), *start, 0.2, 10)], (
            "8 points near y = 2x₀ − x₁ + 0.5, w = (0, 0) and b = 0 at the start, lr = 0.2, "
            "10 steps"
        )
    g = generator(question)
    cases = []
    for _ in range(2):
        n = int(torch.randint(10, 31, (1,), generator=g))
        x = uniform(g, (n, 2), -2.0, 2.0)
        w_true, b_true = uniform(g, 2, -3.0, 3.0), uniform(g, (), -2.0, 2.0)
        y = x @ w_true + b_true + 0.3 * uniform(g, n, -1.0, 1.0)
        w0, b0 = uniform(g, 2, -1.0, 1.0), uniform(g, (), -1.0, 1.0)
        lr = round(float(uniform(g, (), 0.05, 0.15)), 3)
        steps = int(torch.randint(8, 16, (1,), generator=g))
        cases.append((x, y, w0, b0, lr, steps))
    return cases, (
        "2 fresh data sets of 10–30 points with 2 features, fresh starts, lr in [0.05, 0.15], "
        "8–15 steps"
    )


_NOT_ZEROED = Finding(
    "grad_not_zeroed",
    "your trajectory is the one a loop takes when the gradients are never zeroed: backward "
    "adds into .grad, so from the second step on each update uses the sum of all gradients "
    "so far. Zero them after each update: .zero_() on each parameter's .grad, or set its "
    ".grad to None.",
)

# The update w − lr·∂L/∂w moves an input by a small step, which is what the watch for
# numerical differences looks for: the loop is held to autograd by its engine runs (one
# per step at least), which a loop of finite differences never makes.
_GD = Rule(
    frozenset({REVERSE}),
    frozenset(),
    "gradients from autograd (loss.backward() at each step)",
)


def _check_fit(question: str, fn, hidden: bool, *, train_b: bool) -> None:
    cases, note = _fit_cases(question, hidden)
    name = _name(fn)
    for x, y, w0, b0, lr, steps in cases:
        try:
            got, hits = _run(
                question, fn, _GD, x.clone(), y.clone(), w0.clone(), b0.clone(), lr, steps
            )
        except CheckFailed as exc:
            # Only w, b have their .grad read in the loop: a non-leaf there is a parameter
            # rebound to a computed tensor, an update that autograd recorded.
            if "nonleaf_grad" in exc.codes:
                raise _with_first(exc, [_UPDATE_RECORDED]) from None
            raise
        expected = gd_trajectory(x, y, w0, b0, lr, steps, train_b=train_b)
        mistakes = [
            (_NOT_ZEROED, gd_trajectory(x, y, w0, b0, lr, steps, train_b=train_b, zero_grads=False))
        ]
        if not train_b:
            mistakes.append((_FROZEN_TRAINED, gd_trajectory(x, y, w0, b0, lr, steps)))
        w_note = ", ".join(f"{float(v):.3g}" for v in w0)
        at = (
            f"{x.shape[0]} points, w₀ = ({w_note}), b₀ = {float(b0):.3g}, lr = {lr:g}, "
            f"{steps} steps; row k is (w[0], w[1], b) after k steps"
        )
        _compare(question, f"the trajectory of (w, b) ({at})", got, expected, mistakes, at)
        returns_tensor(question, f"the result of `{name}`", got)
        runs = methods.engine_runs(hits)
        require(
            question,
            runs >= steps,
            f"`{name}` ran autograd {runs} time(s) for {steps} steps",
            ["each step's gradient comes from loss.backward() (or torch.autograd.grad)"],
            [
                Finding(
                    "method_missing",
                    "this question asks for the training loop's gradients from autograd: one "
                    "loss.backward() per step, then the update under torch.no_grad().",
                )
            ],
        )
    passed(question, note)


_UPDATE_RECORDED = Finding(
    "update_recorded",
    "the update w = w − lr·w.grad ran while autograd was recording: w became a computed "
    "tensor, no longer a leaf, so backward leaves its .grad empty from the next step on. "
    "Update the parameter in place under torch.no_grad() (w -= lr·w.grad), so it stays "
    "the same leaf.",
)

_FROZEN_TRAINED = Finding(
    "frozen_trained",
    "your trajectory is the one where b is trained too: b must stay frozen. Give it "
    "requires_grad=False (or use b.detach() in the model) and update only w.",
)


def check_fit_linear(fit_linear, *, hidden: bool = False) -> None:
    _check_fit("Q2.1 fit_linear", fit_linear, hidden, train_b=True)


def check_fit_weights(fit_weights, *, hidden: bool = False) -> None:
    _check_fit("Q2.2 fit_weights", fit_weights, hidden, train_b=False)


def check_predict(predict, *, hidden: bool = False) -> None:
    q = "Q2.3 predict"
    if not hidden:
        x = torch.stack([torch.linspace(-1.0, 1.0, 5, dtype=F64), torch.ones(5, dtype=F64)], 1)
        cases = [(x, torch.tensor([2.0, -1.0], dtype=F64), _scalar(0.5))]
        note = "5 points, w = (2, −1), b = 0.5 (both requiring grad)"
    else:
        g = generator(q)
        n = int(torch.randint(5, 20, (1,), generator=g))
        cases = [
            (uniform(g, (n, 2), -3.0, 3.0), uniform(g, 2, -2.0, 2.0), uniform(g, (), -2.0, 2.0))
        ]
        note = f"{n} fresh points, fresh w, b (both requiring grad)"
    name = _name(predict)
    for x, w, b in cases:
        w_, b_ = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        got, _ = _run(q, predict, None, x.clone(), w_, b_)
        check_close(q, f"x @ w + b ({note})", got, x @ w + b)
        returns_tensor(q, f"the result of `{name}`", got)
        require(
            q,
            not got.requires_grad,
            f"the prediction of `{name}` records a graph",
            ["the result has requires_grad=True: autograd recorded every operation"],
            [
                Finding(
                    "records_graph",
                    "a prediction needs no gradient: compute it under torch.inference_mode() "
                    "(or torch.no_grad()), so autograd records nothing and keeps no tensors "
                    "alive for a backward that never comes.",
                )
            ],
        )
    passed(q, note)


# --- Q3 pitfalls ---------------------------------------------------------------------------

VISIBLE_PITFALL_X = torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=F64)


def _pitfall_x(question: str, hidden: bool, *, zeros: bool = False) -> tuple[torch.Tensor, str]:
    if not hidden:
        return VISIBLE_PITFALL_X.clone(), "x = (−2, −0.5, 0, 0.5, 1, 2)"
    g = generator(question)
    n = int(torch.randint(8, 20, (1,), generator=g))
    x = uniform(g, n, -3.0, 3.0, avoid=((-0.05, 0.05),))
    if zeros:  # the masked points: negatives, and exact zeros
        x = torch.cat([x, torch.zeros(2, dtype=F64), -uniform(g, 2, 0.1, 2.0)])
        x = x[torch.randperm(x.numel(), generator=g)]
    return x, f"{x.numel()} fresh points in [−3, 3]" + (" with zeros" if zeros else "")


_BY_AUTOGRAD = Rule(frozenset({REVERSE}), frozenset({NUMERICAL}), "reverse-mode autograd")


def check_fixed_grad(fixed_grad, *, hidden: bool = False) -> None:
    q = "Q3.1 fixed_grad"
    x, note = _pitfall_x(q, hidden)
    got, _ = _run(q, fixed_grad, _BY_AUTOGRAD, x.clone())
    s = torch.sigmoid(x)
    expected = 2 * s + 2 * x * s * (1 - s)
    data_bypass = 2 * s + 2 * x * s * (1 - 2 * s)
    mistakes = [
        (
            Finding(
                "data_bypass",
                "s.data *= 2 (or an update under no_grad) hides the change from autograd, but "
                "sigmoid's backward still reads the tensor it saved, now doubled: the "
                "gradient is wrong without any error. Double it out of place instead: a new "
                "tensor 2·σ(x), leaving the saved one as it was.",
            ),
            data_bypass,
        )
    ]
    _compare(q, f"d/dx Σ 2σ(x)·x at {note}", got, expected, mistakes, note)
    returns_tensor(q, f"the result of `{_name(fixed_grad)}`", got)
    passed(q, note)


def check_two_grads(two_grads, *, hidden: bool = False) -> None:
    q = "Q3.2 two_grads"
    x, note = _pitfall_x(q, hidden)
    got, _ = _run(q, two_grads, _BY_AUTOGRAD, x.clone())
    name = _name(two_grads)
    require(
        q,
        isinstance(got, tuple | list) and len(got) == 2,
        f"`{name}` must return the pair (dL1_dx, dL2_dx)",
        [f"got {type(got).__name__}"],
    )
    h = x * torch.sin(x)
    g1 = torch.sin(x) + x * torch.cos(x)
    g2 = 2 * h * g1
    aliased = Finding(
        "grad_aliased",
        "both entries equal the sum of the two gradients: you returned x.grad itself after "
        "the first backward, and the second backward added into that same tensor. Return "
        "x.grad.clone() (and clear x.grad before the second backward).",
    )
    if _same(got[0], g1 + g2) and _same(got[1], g1 + g2):
        raise CheckFailed(q, f"dL1/dx of `{name}` differs from the reference", [note], [aliased])
    check_close(q, f"dL1/dx, L1 = Σ x·sin(x), at {note}", got[0], g1)
    not_cleared = Finding(
        "grad_not_zeroed",
        "dL2/dx is the sum of both gradients: backward adds into x.grad, and it was not "
        "cleared after the first backward. Set x's .grad to None (or zero it) in between, "
        "or use torch.autograd.grad.",
    )
    _compare(
        q, f"dL2/dx, L2 = Σ (x·sin(x))², at {note}", got[1], g2, [(not_cleared, g1 + g2)], note
    )
    for i, what in enumerate(("dL1_dx", "dL2_dx")):
        returns_tensor(q, f"{what} returned by `{name}`", got[i])
    passed(q, note)


_NAN_THROUGH_WHERE = Finding(
    "nan_through_where",
    "NaN at points where x ≤ 0, the ones torch.where masked out, and right everywhere else: "
    "torch.where passes a zero gradient to the branch it did not pick, but sqrt's backward "
    "there is 1 / (2·sqrt(x)), NaN for x < 0 and inf at 0, and 0 · NaN = 0 · inf = NaN. "
    "Keep the unused branch finite: take sqrt of torch.where(x > 0, x, 1) (a safe value) "
    "inside, then torch.where outside.",
)


def _nan_only_where_masked(got: Any, expected: torch.Tensor, masked: torch.Tensor) -> bool:
    """Whether `got` is NaN or inf at some masked points and nowhere else, and right at
    every other point."""
    t = as_tensor(got)
    if t is None or not t.is_floating_point() or t.shape != expected.shape:
        return False
    t = t.detach().to(F64)
    bad = ~torch.isfinite(t)
    if not bool(bad.any()) or bool((bad & ~masked).any()):
        return False
    tol = tolerance_for(as_tensor(got).dtype, float(expected.abs().max()))
    return bool(tol.close(t[~bad], expected[~bad]).all())


def check_sqrt_where_grad(sqrt_where_grad, *, hidden: bool = False) -> None:
    q = "Q3.3 sqrt_where_grad"
    x, note = _pitfall_x(q, hidden, zeros=True)
    got, _ = _run(q, sqrt_where_grad, _BY_AUTOGRAD, x.clone())
    pos = x > 0
    expected = torch.where(pos, 0.5 / torch.sqrt(torch.where(pos, x, 1.0)), 0.0)
    try:
        check_close(q, f"d/dx Σ where(x > 0, √x, 0) at {note}", got, expected,
                    context=Context(inputs_note=note))  # fmt: skip
    except CheckFailed as exc:
        if _nan_only_where_masked(got, expected, ~pos):
            raise _with_first(exc, [_NAN_THROUGH_WHERE]) from None
        raise
    returns_tensor(q, f"the result of `{_name(sqrt_where_grad)}`", got)
    passed(q, note)


def check_clipped_grad(clipped_grad, *, hidden: bool = False) -> None:
    q = "Q3.4 clipped_grad"
    if not hidden:
        x, note = VISIBLE_PITFALL_X.clone(), "x = (−2, −0.5, 0, 0.5, 1, 2), limit = 1.5"
        limit = 1.5
    else:
        g = generator(q)
        x, note = _pitfall_x(q, hidden)
        limit = round(float(uniform(g, (), 0.5, 2.0)), 3)
        note += f", limit = {limit:g}"
    got, _ = _run(q, clipped_grad, _BY_AUTOGRAD, x.clone(), limit)
    h = 3 * torch.sin(x)
    dh_dx = 3 * torch.cos(x)
    expected = (2 * h).clamp(-limit, limit) * dh_dx
    mistakes = [
        (
            Finding(
                "clipped_final_grad",
                "you clipped the gradient of x, the final result of backward; the question "
                "clips the gradient flowing into the intermediate h, before the chain rule "
                "multiplies it by dh/dx. Register a hook on h that returns its gradient "
                "clamped to [−limit, limit].",
            ),
            (2 * h * dh_dx).clamp(-limit, limit),
        ),
        (
            Finding(
                "hook_ignored",
                "the gradient is not clipped at all: a hook changes the gradient only through "
                "the tensor it returns. Return the clipped tensor from the hook (and register "
                "it before calling backward).",
            ),
            2 * h * dh_dx,
        ),
    ]
    _compare(q, f"dy/dx with dy/dh clipped, at {note}", got, expected, mistakes, note)
    returns_tensor(q, f"the result of `{_name(clipped_grad)}`", got)
    passed(q, note)


# --- Q4 Hessian-vector products -------------------------------------------------------------


def f_chain(x):
    """The notebook's f(x) = Σ xᵢ²·xᵢ₊₁ + (Σ xᵢ)²/2."""
    return (x[:-1] ** 2 * x[1:]).sum() + x.sum() ** 2 / 2


def f_soft(x):
    """logsumexp(x) + Σ xᵢ⁴/12."""
    return torch.logsumexp(x, 0) + (x**4).sum() / 12


def f_coupled(x):
    """Σ tanh(xᵢ·xᵢ₊₁) + Σ sin(xᵢ)·xᵢ."""
    return torch.tanh(x[:-1] * x[1:]).sum() + (torch.sin(x) * x).sum()


HVP_FUNCTIONS: list[tuple[str, Callable]] = [
    ("Σ xᵢ²·xᵢ₊₁ + (Σ xᵢ)²/2", f_chain),
    ("logsumexp(x) + Σ xᵢ⁴/12", f_soft),
    ("Σ tanh(xᵢ·xᵢ₊₁) + Σ xᵢ·sin(xᵢ)", f_coupled),
]


def _hessian(f: Callable, x: torch.Tensor) -> torch.Tensor:
    # Reverse over reverse: torch.func.hessian's first use would load forward-mode
    # decompositions (seconds). Nothing may reach stderr in a test cell.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.autograd.functional.hessian(f, x)


def _hvp_cases(question: str, hidden: bool):
    if not hidden:
        x = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
        v = torch.tensor([1.0, 0.0, -1.0], dtype=F64)
        return [
            (HVP_FUNCTIONS[0][0], f_chain, x, v)
        ], "f = Σ xᵢ²·xᵢ₊₁ + (Σ xᵢ)²/2 at x = (1, 2, 3), v = (1, 0, −1)"
    g = generator(question)
    cases = []
    for name, f in HVP_FUNCTIONS:
        n = int(torch.randint(4, 8, (1,), generator=g))
        cases.append((name, f, uniform(g, n, -1.5, 1.5), uniform(g, n, -1.0, 1.0)))
    return cases, "3 functions, fresh x in [−1.5, 1.5]ⁿ and v, n = 4–7, against the full Hessian"


_FULL_HESSIAN_APIS = {
    "torch.autograd.functional.hessian",
    "torch.autograd.functional.jacobian",
    "torch.func.hessian",
    "torch.func.jacrev",
    "torch.func.jacfwd",
}


def _full_hessian(question: str, name: str, used: list[str], runs: int, n: int) -> None:
    full = sorted(set(used) & _FULL_HESSIAN_APIS)
    require(
        question,
        not full and runs <= 3,
        f"`{name}` builds the full Hessian",
        [
            f"x has {n} entries; in one call autograd ran {runs} time(s)"
            + (f"; you called {', '.join(full)}" if full else "")
        ],
        [
            Finding(
                "full_hessian",
                "a Hessian-vector product never forms the n × n Hessian: it differentiates "
                "the scalar g(x)·v once more (double backward), or pushes v forward through "
                "the gradient (torch.func.jvp of torch.func.grad). Either costs about two "
                "gradients, whatever n is.",
            )
        ],
    )


_SUMMED = Finding(
    "summed_not_dotted",
    "your answer is (H·1) ⊙ v: you differentiated the sum of the gradient's entries and then "
    "multiplied by v. Differentiate the dot product (g · v).sum() instead: its gradient is "
    "H·v.",
)

_DOUBLE_BACKWARD = Rule(
    frozenset({REVERSE}),
    frozenset({NUMERICAL, FORWARD}),
    "double backward (torch.autograd.grad with create_graph=True, then again)",
)
_FORWARD_OVER_REVERSE = Rule(
    frozenset({FORWARD}),
    frozenset({NUMERICAL}),
    "forward over reverse (torch.func.jvp of torch.func.grad)",
)


def _check_hvp(question: str, fn, hidden: bool, rule: Rule) -> None:
    cases, note = _hvp_cases(question, hidden)
    name = _name(fn)
    for fname, f, x, v in cases:
        with autograd_apis(fn) as used:
            got, hits = _run(question, fn, rule, f, x.clone(), v.clone())
        hess = _hessian(f, x)
        expected = hess @ v
        at = f"f = {fname} at x of size {x.numel()}"
        _compare(question, f"H·v for {at}", got, expected, [(_SUMMED, hess.sum(1) * v)], at)
        returns_tensor(question, f"the result of `{name}`", got)
        runs = methods.engine_runs(hits)
        _full_hessian(question, name, list(used), runs, x.numel())
        if FORWARD in rule.require:
            require(
                question,
                runs >= 1,
                f"`{name}` pushed v forward through no gradient",
                ["forward mode ran, but no reverse pass computed the gradient"],
                [
                    Finding(
                        "method_missing",
                        "this question asks for forward over reverse: the gradient by "
                        "torch.func.grad(f), and its directional derivative along v by "
                        "torch.func.jvp(torch.func.grad(f), (x,), (v,)).",
                    )
                ],
            )
        else:
            require(
                question,
                runs >= 2,
                f"`{name}` ran autograd {runs} time(s)",
                ["a double backward runs two reverse passes"],
                [
                    Finding(
                        "method_missing",
                        "this question asks for double backward: g = torch.autograd.grad(f(x), "
                        "x, create_graph=True), then torch.autograd.grad((g * v).sum(), x).",
                    )
                ],
            )
    passed(question, note)


def check_hvp_double_backward(hvp_double_backward, *, hidden: bool = False) -> None:
    _check_hvp("Q4.1 hvp_double_backward", hvp_double_backward, hidden, _DOUBLE_BACKWARD)


def check_hvp_forward_over_reverse(hvp_forward_over_reverse, *, hidden: bool = False) -> None:
    _check_hvp(
        "Q4.2 hvp_forward_over_reverse", hvp_forward_over_reverse, hidden, _FORWARD_OVER_REVERSE
    )


defer_hidden(globals())
