"""Checks for assignment 03_vector_jacobian.

Each `check_*` takes the student's function(s). With `hidden=False` (the visible test in
the student's notebook) it uses the numbers of the curriculum, section 03, and compares
with them exactly as written there; with `hidden=True` (run at grading time) it draws
fresh random inputs and compares with references computed by `torch.func` (`jacrev`,
`vmap`, `vjp`) on the same inputs.

Each check also holds the answer to the method its question names, from what the call
did (:mod:`autograder.checking.methods`, :func:`autograder.checking.params.autograd_apis`):

- "with `backward(v)`" (Q1, Q2.2, Q4): a reverse-mode vector-Jacobian product, any API
  (`backward`, `torch.autograd.grad`, `torch.func.vjp`, `autograd.functional.vjp`); not the
  closed formula, not a Jacobian built first and multiplied by v, not forward mode, not a
  finite difference;
- "a formula, no autograd" (Q2.3, Q5.1, Q6.1: no differencing either; Q3.1);
- Q2.1 "with numpy": a numpy array, computed with numpy;
- Q3.2: one backward per row of `vs` on one graph, the running sum read from `.grad`;
- Q5.2 "by autograd" (reverse or forward mode);
- Q6.2 one backward per output component (m passes, not one per sample, not one
  vectorised pass), Q6.3 `torch.autograd.functional.jacobian`, Q6.4 `torch.func.vmap` of
  `jacrev` (or `jacfwd`).

No answer may change the tensors it is given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..checking import jacobians as jac
from ..checking import methods
from ..checking.checks import passed, require, returns_tensor
from ..checking.compare import as_tensor, check_close
from ..checking.diagnose import Context
from ..checking.feedback import CheckFailed, Finding
from ..checking.forbid import recording
from ..checking.jacobians import (
    batched_jacobian,
    call_student,
    check_jacobian,
    jacobian_matrix,
    reference_vjp,
    reference_vjps,
)
from ..checking.params import autograd_apis, require_api
from ..checking.sampling import describe, generator, uniform
from . import defer_hidden

F64 = torch.float64
REV, FWD, NUM = methods.REVERSE, methods.FORWARD, methods.NUMERICAL


def _rule(
    require=(), forbid=(), asks: str = "", seeded: bool = False, follow: bool = False
) -> methods.Rule:
    return methods.Rule(frozenset(require), frozenset(forbid), asks, seeded, follow=follow)


# The methods the questions name (see the module docstring).
VJP_ASKS = "backward(v), a vector-Jacobian product"
# + jac.require_vjp once values are right (with the returned values followed back to the
# engine during the call)
VJP = _rule(forbid={NUM}, asks=VJP_ASKS, seeded=True, follow=True)
# during the call of a check whose requirement (`then`) is judged after the values
_FOLLOWED = methods.Rule(follow=True)
FORMULA = _rule(forbid={REV, FWD, NUM}, asks="a formula written out, without autograd")
PREDICTION = _rule(forbid={REV, FWD}, asks="a formula, no autograd")
ACCUMULATION = _rule({REV}, {NUM}, "backward, called once per row of vs on one graph y = f(x)")
BY_AUTOGRAD = _rule({REV, FWD}, {NUM}, "autograd")
ROWS = _rule({REV}, {NUM}, "one backward per output component (Way 1)")
FUNCTIONAL = _rule(forbid={NUM}, asks="torch.autograd.functional.jacobian")
VMAP = _rule({REV, FWD}, {NUM}, "torch.func.vmap(torch.func.jacrev(f))")


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# --- the notebook's functions --------------------------------------------------------------


def y3x2(x):
    """y = 3x² (Q1, and the vector → vector worked case)."""
    return 3 * x**2


def square(x):
    return x**2


def four_copies(x):
    """Scalar → vector: four copies of x²."""
    return x**2 * torch.ones(4, dtype=x.dtype)


def total(x):
    """Vector → scalar: y = Σx."""
    return x.sum()


def example(x):
    """y = (3x₁², x₁² + 2x₂³, 10x₂), the full worked example (R² → R³)."""
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([3 * x1**2, x1**2 + 2 * x2**3, 10 * x2], dim=-1)


def q_function(a, b):
    """Q = 3a³ − b² (Q4)."""
    return 3 * a**3 - b**2


def g(x):
    """g(x) = x₀x₁ + sin(x₀x₁²) on a batch (N, 2) or one point (2,) (Q5)."""
    x0, x1 = x[..., 0], x[..., 1]
    return x0 * x1 + torch.sin(x0 * x1**2)


def grad_g(x):
    x0, x1 = x[..., 0], x[..., 1]
    c = torch.cos(x0 * x1**2)
    return torch.stack([x1 + x1**2 * c, x0 + 2 * x0 * x1 * c], dim=-1)


def f(x):
    """f: R² → R³, f(x) = (x₁x₂, sin(x₁ + x₂²), x₁² − 3x₂), row by row on a batch (Q6)."""
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([x1 * x2, torch.sin(x1 + x2**2), x1**2 - 3 * x2], dim=-1)


def jacobian_f(x):
    """The analytic (N, 3, 2) Jacobian of f: [[x₂, x₁], [c, 2x₂c], [2x₁, −3]], c = cos(x₁ + x₂²)."""
    x1, x2 = x[..., 0], x[..., 1]
    c = torch.cos(x1 + x2**2)
    return torch.stack(
        [
            torch.stack([x2, x1], dim=-1),
            torch.stack([c, 2 * x2 * c], dim=-1),
            torch.stack([2 * x1, torch.full_like(x1, -3.0)], dim=-1),
        ],
        dim=-2,
    )


# --- the numbers of curriculum section 03 (the visible tests check exactly these) --------

# Q1: y = 3x² at x = (1, 2): (v, vᵀJ).
Y3X2_X = (1.0, 2.0)
Y3X2_CASES = [((1.0, 1.0), (6.0, 12.0)), ((1.0, 10.0), (6.0, 120.0))]

# Q2: the worked cases (name, f, x, v, vᵀJ).
WORKED_CASES: list[tuple[str, Callable, object, object, object]] = [
    ("scalar → scalar, y = x², x = 1", square, 1.0, 100.0, 200.0),
    (
        "scalar → vector, four copies of x², x = 1",
        four_copies,
        1.0,
        (1.0, 10.0, 100.0, 1000.0),
        2222.0,
    ),
    ("vector → scalar, y = Σx, x = (1, 2)", total, (1.0, 2.0), 100.0, (100.0, 100.0)),
    ("vector → vector, y = 3x², x = (1, 2)", y3x2, (1.0, 2.0), (1.0, 10.0), (6.0, 120.0)),
    (
        "y = (3x₁², x₁² + 2x₂³, 10x₂), x = (1, 2)",
        example,
        (1.0, 2.0),
        (1.0, 10.0, 100.0),
        (26.0, 1240.0),
    ),
]
EXAMPLE_X = (1.0, 2.0)
EXAMPLE_J = ((6.0, 0.0), (2.0, 24.0), (0.0, 10.0))
EXAMPLE_V = (1.0, 10.0, 100.0)
EXAMPLE_VJP = (26.0, 1240.0)

# Q3: y = x² at x = 1, backward with v = 1, 10, 100, 1000 in turn: x.grad after each.
ACCUMULATION_X = 1.0
ACCUMULATION_VS = (1.0, 10.0, 100.0, 1000.0)
ACCUMULATION_GRADS = (2.0, 22.0, 222.0, 2222.0)

# Q4: Q = 3a³ − b², external gradient (1, 1).
Q_A, Q_B, Q_V = (2.0, 3.0), (6.0, 4.0), (1.0, 1.0)
Q_A_GRAD, Q_B_GRAD = (36.0, 81.0), (-12.0, -8.0)

# Q5 and Q6: a fixed batch of points in [−1, 1]² for the visible tests.
BATCH = ((-1.0, -1.0), (-0.5, 0.25), (0.0, 0.5), (0.5, -0.75), (1.0, 1.0))
BATCH_DOMAIN = (-1.0, 1.0)
LARGE_N = 1000


# --- running an answer ----------------------------------------------------------------------


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or "your function"


def _run(
    q: str,
    fn,
    *args,
    rule: methods.Rule | None = None,
    then: methods.Rule | None = None,
    name: str | None = None,
    jacobian_shape: tuple[int, int] | None = None,
):
    """Call the student's `fn(*args)`; return (result, method record, autograd entry points).

    `rule` is judged during the call, with the answer's own arithmetic watched for shifted
    copies of its inputs (for answers that differentiate a function of their own). Of
    `then`, what it forbids is judged from the record right after the call: the record sees
    the function the check hands over evaluated at shifted inputs, without watching every
    torch operation. What `then` requires is judged by the check once the values are right
    (:func:`_requires`), so that a wrong value is named by its own cause first. The record
    is that of one call; the entry points are those of every call made (a set, not a count).
    """
    with autograd_apis(fn) as apis:
        if rule is None and then is not None and then.require:
            rule = _FOLLOWED  # where the returned values came from, for `then`'s requirement
        got = jac.call_student(q, fn, *args, name=name, jacobian_shape=jacobian_shape, rule=rule)
    hits = methods.LAST_CALL[q][2]
    if then is not None:
        methods.enforce(
            q, methods.Rule(forbid=then.forbid, asks=then.asks), hits, name or _name(fn)
        )
    return got, hits, list(apis)


def _requires(q: str, rule: methods.Rule, hits: list[str], name: str) -> None:
    """What `rule` requires, judged from one call's record (after its values)."""
    methods.enforce(q, rule, hits, name)


def _fail(q: str, summary: str, details: list[str], finding: Finding | None = None):
    raise CheckFailed(q, summary, details, [finding] if finding else [])


def _require_tensor_like(q: str, what: str, got, like: torch.Tensor) -> None:
    """The answer is a tensor shaped like `like` (as the question promises)."""
    returns_tensor(q, what, got)
    if got.shape != like.shape:
        _fail(
            q,
            f"{what} is not shaped like x",
            [
                f"expected shape {tuple(like.shape)} (the shape of x: one entry per input), got "
                f"{tuple(got.shape)}"
            ],
        )


# --- Q1 the gradient argument ------------------------------------------------------------


def check_vjp_y3x2(vjp_y3x2, *, hidden: bool = False) -> None:
    q = "Q1 vjp_y3x2"
    if hidden:
        gen = generator(q)
        cases = []
        for _ in range(3):
            n = int(torch.randint(2, 7, (1,), generator=gen))
            x, v = uniform(gen, n, -3.0, 3.0), uniform(gen, n, -3.0, 3.0)
            cases.append((x, v, reference_vjp(y3x2, x, v)))
        note = "3 fresh random (x, v) pairs"
    else:
        x = _t(Y3X2_X)
        cases = [(x, _t(v), _t(expected)) for v, expected in Y3X2_CASES]
        note = "x = (1, 2): v = (1, 1) gives (6, 12), v = (1, 10) gives (6, 120)"
    name = _name(vjp_y3x2)
    for x, v, expected in cases:
        got, hits, apis = _run(q, vjp_y3x2, x.clone(), v.clone(), rule=VJP)
        J = jacobian_matrix(y3x2, x)
        jac.check_vjp(q, f"vᵀJ for y = 3x² with v = {_short(v)}", got, J=J, v=v, expected=expected)
        jac.require_vjp(q, name, hits, apis, outputs=x.numel(), asks=VJP_ASKS, v=1)
    passed(q, note)


# --- Q2 worked cases ---------------------------------------------------------------------

# Hidden-test functions for `vjp`: (name, f, shape of x). Square non-symmetric Jacobians
# make a swapped J·v visible. Named module-level functions, so a grader in another
# process can name them to the student's kernel.


def x_sin_x(x):
    return x * torch.sin(x)


def x_powers(x):
    return torch.stack([x, x**2, torch.exp(x)])


def sum_cubes(x):
    return (x**3).sum()


def mix_2_to_2(x):
    return torch.stack([x[0] + 2 * x[1], x[0] * x[1]])


def mix_3_to_2(x):
    return torch.stack([x[0] * x[1], x[1] + torch.sin(x[2])])


_VJP_FUNCTIONS: list[tuple[str, Callable, tuple[int, ...]]] = [
    ("scalar → scalar, y = x·sin(x)", x_sin_x, ()),
    ("scalar → vector, y = (x, x², eˣ)", x_powers, ()),
    ("vector → scalar, y = Σ xᵢ³", sum_cubes, (3,)),
    ("R² → R², y = (x₀ + 2x₁, x₀x₁)", mix_2_to_2, (2,)),
    ("R³ → R², y = (x₀x₁, x₁ + sin x₂)", mix_3_to_2, (3,)),
    ("R² → R³, y = (3x₁², x₁² + 2x₂³, 10x₂)", example, (2,)),
]


def _vjp_cases(q: str, hidden: bool):
    if not hidden:
        return [
            (name, fn, _t(x), _t(v), _t(expected)) for name, fn, x, v, expected in WORKED_CASES
        ], "the worked cases: 200, 2222, (100, 100), (6, 120), (26, 1240)"
    gen = generator(q)
    cases = []
    for name, fn, shape in _VJP_FUNCTIONS:
        x = uniform(gen, shape, -2.0, 2.0)
        y_shape = fn(x).shape
        v = uniform(gen, y_shape, -3.0, 3.0)
        cases.append((name, fn, x, v, reference_vjp(fn, x, v)))
    return cases, f"{len(cases)} functions at fresh random x and v"


def check_vjp_from_jacobian(vjp_from_jacobian, *, hidden: bool = False) -> None:
    q = "Q2.1 vjp_from_jacobian"
    if hidden:
        gen = generator(q)
        cases = []
        # Square first: there a swapped J·v gives numbers (not an error) and is named.
        for m, n in ((3, 3), (2, 4), (4, 2), (1, 3)):
            J = uniform(gen, (m, n), -3.0, 3.0)
            v = uniform(gen, m, -3.0, 3.0)
            cases.append((J, v))
        note = "fresh random Jacobians of shapes 3×3, 2×4, 4×2 and 1×3"
    else:
        cases = [(_t(EXAMPLE_J), _t(EXAMPLE_V))]
        note = "J = [[6, 0], [2, 24], [0, 10]], v = (1, 10, 100) gives (26, 1240)"
    name = _name(vjp_from_jacobian)
    for J, v in cases:
        with recording(_TORCH_PRODUCTS) as named:
            got = call_student(
                q,
                vjp_from_jacobian,
                J.numpy().copy(),
                v.numpy().copy(),
                jacobian_shape=tuple(J.shape),
            )
        what = f"vjp_from_jacobian(J of shape {tuple(J.shape)}, v)"
        if not isinstance(got, np.ndarray):
            _not_numpy(q, f"{what} is not a numpy array", f"got {type(got).__name__}")
        expected = _t(EXAMPLE_VJP) if not hidden else v @ J
        jac.check_vjp(q, what, got, J=J, v=v, expected=expected)
        in_torch = sorted({h.split(" ", 1)[1] for h in named if h.startswith("torch ")})
        if in_torch:
            _not_numpy(
                q,
                f"`{name}` computed with torch, not numpy",
                f"torch functions your function called: {', '.join(in_torch)}",
            )
    passed(q, note)


# torch functions a product vᵀJ done in torch calls (to make tensors, or to multiply).
_TORCH_PRODUCTS = frozenset(
    {"tensor", "as_tensor", "from_numpy", "matmul", "mm", "mv", "einsum", "tensordot", "dot"}
    | {"inner", "mul", "sum"}
)


def _not_numpy(q: str, summary: str, detail: str) -> None:
    _fail(
        q,
        summary,
        [detail],
        Finding(
            "not_numpy",
            "this question asks for the product in numpy, returning a numpy array: "
            "np.asarray(v) @ np.asarray(J) (or J.T @ v), without converting to torch tensors.",
        ),
    )


def check_vjp(vjp, *, hidden: bool = False) -> None:
    q = "Q2.2 vjp"
    cases, note = _vjp_cases(q, hidden)
    for fname, fn, x, v, expected in cases:
        got, hits, apis = _run(q, vjp, fn, x.clone(), v.clone(), rule=VJP)
        what = f"vᵀJ for {fname}, v = {_short(v)}"
        _require_tensor_like(q, what, got, x)
        J = jacobian_matrix(fn, x)
        jac.check_vjp(q, what, got, J=J, v=v, expected=expected)
        jac.require_vjp(q, _name(vjp), hits, apis, outputs=J.shape[0], asks=VJP_ASKS, v=2)
    passed(q, note)


def check_jacobian_example(jacobian_example, *, hidden: bool = False) -> None:
    q = "Q2.3 jacobian_example"
    if hidden:
        gen = generator(q)
        # Coordinates clear of 0: a formula's intermediate (6x₁, 0) is then never a
        # slightly shifted copy of x.
        points = [uniform(gen, 2, -3.0, 3.0, avoid=((-0.5, 0.5),)) for _ in range(3)]
        note = "3 fresh random points in [-3, 3]²"
    else:
        points = [_t(EXAMPLE_X)]
        note = "x = (1, 2) gives [[6, 0], [2, 24], [0, 10]]"
    for x in points:
        got = call_student(q, jacobian_example, x.clone(), rule=FORMULA)
        what = f"J at x = {_short(x)}"
        if not isinstance(got, torch.Tensor | np.ndarray):
            _fail(
                q,
                f"{what} is not a tensor or a numpy array",
                [f"got {type(got).__name__}: return a tensor or a numpy array of shape (3, 2)"],
            )
        expected = _t(EXAMPLE_J) if not hidden else jacobian_matrix(example, x)
        with _naming_mistakes(got, jacobian_example_mistakes(x)):
            check_jacobian(q, what, got, expected)
    passed(q, note)


def jacobian_example_mistakes(x: torch.Tensor) -> list[tuple[Finding, torch.Tensor]]:
    """Wrong Jacobians of y = (3x₁², x₁² + 2x₂³, 10x₂) that students write."""
    x1, x2 = float(x[0]), float(x[1])
    return [
        (
            Finding(
                "missing_partial",
                "your row for y₂ = x₁² + 2x₂³ has a 0 where it depends on x₁: every output "
                "that contains x₁ has a non-zero ∂/∂x₁ (here the x₁² term).",
            ),
            _t(((6 * x1, 0.0), (0.0, 6 * x2**2), (0.0, 10.0))),
        ),
        (
            Finding(
                "power_rule",
                "your ∂y₂/∂x₂ is 6x₂³: it brings the exponent 3 down but keeps it; the power "
                "rule lowers the exponent by one.",
            ),
            _t(((6 * x1, 0.0), (2 * x1, 6 * x2**3), (0.0, 10.0))),
        ),
    ]


class _naming_mistakes:
    """Around a Jacobian check: a failure whose answer equals one of `mistakes` names it
    first (the check itself knows layouts, not the question's wrong formulas)."""

    def __init__(self, got, mistakes: list[tuple[Finding, torch.Tensor]]):
        self.got, self.mistakes = got, mistakes

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if not isinstance(exc, CheckFailed):
            return False
        try:
            got = torch.as_tensor(np.asarray(self.got, dtype=np.float64))
        except (TypeError, ValueError, RuntimeError):
            return False
        for finding, wrong in self.mistakes:
            wrong = wrong.to(torch.float64)
            if got.shape == wrong.shape and bool(torch.allclose(got, wrong, rtol=1e-5, atol=1e-6)):
                exc.diagnoses.insert(0, finding)
                break
        return False


# --- Q3 accumulation ---------------------------------------------------------------------


def _accumulation_cases(
    q: str, hidden: bool, functions: list[tuple[str, Callable, tuple[int, ...]]]
):
    """(name, f, x, vs, x.grad after each call) for each (name, f, shape of x)."""
    if not hidden:
        return [
            ("y = x²", square, _t(ACCUMULATION_X), _t(ACCUMULATION_VS), _t(ACCUMULATION_GRADS))
        ], "x = 1, v = 1, 10, 100, 1000 gives 2, 22, 222, 2222"
    gen = generator(q)
    cases = []
    for name, fn, shape in functions:
        x = uniform(gen, shape, -2.0, 2.0)
        k = int(torch.randint(2, 6, (1,), generator=gen))
        vs = uniform(gen, (k, *fn(x).shape), -3.0, 3.0)
        per_call = torch.stack([reference_vjp(fn, x, v) for v in vs])
        cases.append((name, fn, x, vs, per_call.cumsum(0)))
    return cases, "fresh random x (a scalar and a vector) and gradient vectors"


def _accumulation_findings(got: torch.Tensor, expected: torch.Tensor) -> list[Finding]:
    """Each entry a single call's gradient, or every entry the same (aliased) tensor."""
    g, r = got.to(F64), expected.to(F64)
    if g.shape != r.shape or r.shape[0] < 2:
        return []
    tol = 1e-6 * max(1.0, float(r.abs().max()))
    per_call = torch.cat([r[:1], r[1:] - r[:-1]])
    if torch.allclose(g, per_call, rtol=1e-5, atol=tol):
        return [
            Finding(
                "not_accumulated",
                "each entry is the gradient of one backward call alone: .grad does not reset "
                "between calls, it adds up. Entry k is the sum of the gradients of calls 0..k "
                "(do not zero x.grad between the calls).",
            )
        ]
    if torch.allclose(g, r[-1:].expand_as(r), rtol=1e-5, atol=tol):
        return [
            Finding(
                "grad_aliased",
                "every entry equals the final x.grad: you stored x.grad itself, and backward "
                "adds into that same tensor in place, so all stored entries change together. "
                "Store x.grad.clone() after each call.",
            )
        ]
    return []


def _check_accumulation(q: str, what: str, got, expected: torch.Tensor) -> None:
    try:
        check_close(q, what, got, expected)
    except CheckFailed as exc:
        t = as_tensor(got)
        extra = _accumulation_findings(t, expected) if t is not None else []
        raise CheckFailed(exc.question, exc.summary, exc.details, exc.diagnoses + extra) from None


def check_predicted_grads(predicted_grads, *, hidden: bool = False) -> None:
    q = "Q3.1 predicted_grads"
    # x is "a 0-dimensional tensor or a vector": both, on every draw.
    functions = [("y = x²", square, ()), ("y = x²", square, (3,))]
    cases, note = _accumulation_cases(q, hidden, functions)
    for _, _, x, vs, expected in cases:
        got = call_student(q, predicted_grads, x.clone(), vs.clone(), rule=PREDICTION)
        what = f"x.grad after each call, x of shape {tuple(x.shape)}, v = {_short(vs)}"
        _check_accumulation(q, what, got, expected)
    passed(q, note)


def mix_3_to_2_sin(x):
    return torch.stack([x[0] * x[1], torch.sin(x[2])])


# Functions for Q3.2 whose own code adds nothing up (no +, sum or cumsum), so that any sum
# recorded while the answer runs is the answer's own.
_ACCUMULATION_FUNCTIONS: list[tuple[str, Callable, tuple[int, ...]]] = [
    ("y = x² (scalar x)", square, ()),
    ("y = x²", square, (3,)),
    ("y = (x₀x₁, sin x₂)", mix_3_to_2_sin, (3,)),
]

# Ways of adding gradients up by hand (torch and numpy), instead of letting .grad do it.
_SUMS = frozenset({"cumsum", "cumulative_sum", "add", "sum"})


def check_accumulated_grads(accumulated_grads, *, hidden: bool = False) -> None:
    q = "Q3.2 accumulated_grads"
    name = _name(accumulated_grads)
    cases, note = _accumulation_cases(q, hidden, _ACCUMULATION_FUNCTIONS)
    for fname, fn, x, vs, expected in cases:
        with recording(_SUMS) as sums:
            got, hits, apis = _run(
                q, accumulated_grads, fn, x.clone(), vs.clone(), then=ACCUMULATION
            )
        _check_accumulation(
            q, f"x.grad after each call for {fname}, v = {_short(vs)}", got, expected
        )
        _measured_in_grad(q, name, hits, apis, sorted(set(sums)), k=len(vs))
    passed(q, note)


def _measured_in_grad(q: str, name: str, hits, apis, sums: list[str], k: int) -> None:
    """k backward calls on one graph, each entry read from the one .grad they add into."""
    if sums:
        _fail(
            q,
            f"`{name}` added the gradients up itself",
            [f"calls that sum, made by your function: {', '.join(sums)}"],
            Finding(
                "summed_by_hand",
                "this question measures what backward does to .grad: call backward once per row "
                "of vs on one graph and copy x.grad after each call, without clearing it. The "
                "running sum must come from .grad itself, not from your own cumsum or additions.",
            ),
        )
    evaluations = methods.Record.of(hits).evaluations
    if evaluations > 1:
        _fail(
            q,
            f"`{name}` built the graph {evaluations} times",
            [f"f was evaluated {evaluations} times for {k} rows of vs; build y = f(x) once"],
            Finding(
                "rebuilt_graph",
                "build y = f(x) once and call y.backward(v, retain_graph=True) on that one graph "
                "for every row v of vs: the question is what repeated backward calls on one graph "
                "do to x.grad.",
            ),
        )
    _requires(q, ACCUMULATION, hits, name)
    require_api(q, name, apis, "backward", how="`backward`")
    other = sorted(set(apis) - {"backward"})
    if other:
        _fail(
            q,
            f"`{name}` does not measure with backward alone",
            [f"autograd entry points your function called: {', '.join(dict.fromkeys(apis))}"],
            Finding(
                "wrong_api",
                "this question asks for x.grad as backward leaves it: only .backward() adds into "
                f".grad ({', '.join(other)} return(s) gradients without touching it).",
            ),
        )
    runs = methods.engine_runs(hits)
    if runs != k:
        _fail(
            q,
            f"`{name}` should call backward once per row of vs",
            [f"vs has {k} rows; backward ran {runs} time(s)"],
        )


# --- Q4 two inputs -----------------------------------------------------------------------


def check_q_grads(q_grads, *, hidden: bool = False) -> None:
    q = "Q4 q_grads"
    if hidden:
        gen = generator(q)
        cases = []
        for _ in range(3):
            # n ≥ 3: more outputs than the two reverse passes allowed (one per input)
            n = int(torch.randint(3, 7, (1,), generator=gen))
            a, b, v = (uniform(gen, n, -3.0, 3.0) for _ in range(3))
            cases.append((a, b, v, *reference_vjps(q_function, (a, b), v)))
        note = "3 fresh random (a, b, v)"
    else:
        cases = [(_t(Q_A), _t(Q_B), _t(Q_V), _t(Q_A_GRAD), _t(Q_B_GRAD))]
        note = "a = (2, 3), b = (6, 4): a.grad = (36, 81), b.grad = (−12, −8)"
    name = _name(q_grads)
    for a, b, v, a_grad, b_grad in cases:
        result, hits, apis = _run(q, q_grads, a.clone(), b.clone(), v.clone(), rule=VJP)
        require(
            q,
            isinstance(result, tuple | list) and len(result) == 2,
            "q_grads must return a pair (a.grad, b.grad)",
            [f"got {type(result).__name__}"],
        )
        J_a = torch.diag(9 * a**2)
        J_b = torch.diag(-2 * b)
        jac.check_vjp(q, f"a.grad at a = {_short(a)}", result[0], J=J_a, v=v, expected=a_grad)
        jac.check_vjp(q, f"b.grad at b = {_short(b)}", result[1], J=J_b, v=v, expected=b_grad)
        # One reverse pass (Q.backward(v)), or one per input (autograd.grad for a, then b).
        jac.require_vjp(q, name, hits, apis, outputs=a.numel(), passes=2, asks="Q.backward(v)", v=2)
    passed(q, note)


# --- Q5 a batch of points, a scalar function ---------------------------------------------


def quadratic_form(x):
    return x[..., 0] ** 2 + 3 * x[..., 0] * x[..., 1]


def exp_sin(x):
    return torch.exp(x[..., 0]) * torch.sin(x[..., 1])


_BATCH_SCALAR_FUNCTIONS: list[tuple[str, Callable]] = [
    ("g(x) = x₀x₁ + sin(x₀x₁²)", g),
    ("x₀² + 3x₀x₁", quadratic_form),
    ("exp(x₀)·sin(x₁)", exp_sin),
]


def _batch(q: str, hidden: bool, n_range=(5, 41)) -> tuple[torch.Tensor, str]:
    if not hidden:
        return _t(BATCH), "the batch of 5 points in the notebook"
    gen = generator(q)
    n = int(torch.randint(*n_range, (1,), generator=gen))
    return uniform(gen, (n, 2), *BATCH_DOMAIN), describe((n, 2), *BATCH_DOMAIN)


def _batched_gradient_reference(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    return torch.func.vmap(torch.func.grad(fn))(x.detach().clone().to(F64))


def grad_g_mistakes(x: torch.Tensor) -> list[tuple[Finding, torch.Tensor]]:
    """Wrong versions of ∇g that students write, each with what went wrong."""
    x0, x1 = x[..., 0], x[..., 1]
    c = torch.cos(x0 * x1**2)
    return [
        (
            Finding(
                "missing_chain_factor",
                "the sin term of your partial derivatives is cos(x₀x₁²) alone: the chain rule "
                "multiplies it by the partial derivative of the inner x₀x₁² (with respect to "
                "x₀, then to x₁).",
            ),
            torch.stack([x1 + c, x0 + c], dim=-1),
        ),
        (
            Finding(
                "inner_power_rule",
                "your ∂g/∂x₁ differentiates the inner x₀x₁² as x₀ (as if it were x₀x₁): the "
                "power rule gives 2x₀x₁.",
            ),
            torch.stack([x1 + x1**2 * c, x0 + x0 * c], dim=-1),
        ),
        (
            Finding(
                "swapped_partials",
                "your two columns are swapped: column 0 holds ∂g/∂x₁ and column 1 ∂g/∂x₀. "
                "Column j is the partial derivative with respect to x_j.",
            ),
            torch.stack([x0 + 2 * x0 * x1 * c, x1 + x1**2 * c], dim=-1),
        ),
    ]


def check_grad_g(grad_g_answer, *, hidden: bool = False) -> None:
    q = "Q5.1 grad_g"
    x, note = _batch(q, hidden)
    got = call_student(q, grad_g_answer, x.clone(), rule=FORMULA)
    ctx = Context(
        jacobian=True,
        batch=x.shape[0],
        inputs_note="" if not hidden else note,
        mistakes=grad_g_mistakes(x),
    )
    check_close(q, "∇g on the batch, shape (N, 2)", got, grad_g(x), context=ctx)
    passed(q, note)


def check_batched_gradient(batched_gradient, *, hidden: bool = False) -> None:
    q = "Q5.2 batched_gradient"
    x, note = _batch(q, hidden)
    functions = _BATCH_SCALAR_FUNCTIONS if hidden else _BATCH_SCALAR_FUNCTIONS[:1]
    for name, fn in functions:
        got, hits, _ = _run(q, batched_gradient, fn, x.clone(), then=BY_AUTOGRAD)
        ctx = Context(jacobian=True, batch=x.shape[0], inputs_note="" if not hidden else note)
        check_close(
            q,
            f"the gradient of {name} per point, shape (N, 2)",
            got,
            _batched_gradient_reference(fn, x),
            context=ctx,
        )
        _requires(q, BY_AUTOGRAD, hits, _name(batched_gradient))
    passed(q, note + ("" if not hidden else f", {len(functions)} functions"))


# --- Q6 batched Jacobian of f: R² → R³ ---------------------------------------------------

# Hidden-test functions R² → R³, row by row on a batch (and on one point, for vmap).


def exp_tanh(x):
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([torch.exp(x1) * x2, x1 - x2**2, torch.tanh(x1 * x2)], dim=-1)


def cos_ratio(x):
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([x1**2 * x2, torch.cos(x2) + x1, x1 / (1 + x2**2)], dim=-1)


JACOBIAN_FUNCTIONS: list[tuple[str, Callable]] = [
    ("f(x) = (x₁x₂, sin(x₁ + x₂²), x₁² − 3x₂)", f),
    ("(e^x₁·x₂, x₁ − x₂², tanh(x₁x₂))", exp_tanh),
    ("(x₁²x₂, cos(x₂) + x₁, x₁ / (1 + x₂²))", cos_ratio),
]


def check_jacobian_f(jacobian_f_answer, *, hidden: bool = False) -> None:
    q = "Q6.1 jacobian_f"
    x, note = _batch(q, hidden)
    got = call_student(q, jacobian_f_answer, x.clone(), rule=FORMULA)
    with _naming_mistakes(got, jacobian_f_mistakes(x)):
        check_jacobian(
            q, "the analytic Jacobian of f, shape (N, 3, 2)", got, jacobian_f(x), batch=x.shape[0]
        )
    passed(q, note)


def jacobian_f_mistakes(x: torch.Tensor) -> list[tuple[Finding, torch.Tensor]]:
    """Wrong Jacobians of f(x) = (x₁x₂, sin(x₁ + x₂²), x₁² − 3x₂) that students write."""
    right = jacobian_f(x)
    c = torch.cos(x[..., 0] + x[..., 1] ** 2)
    no_factor = right.clone()
    no_factor[..., 1, 1] = c
    minus_sin = right.clone()
    minus_sin[..., 1, 0] = -torch.sin(x[..., 0] + x[..., 1] ** 2)
    minus_sin[..., 1, 1] = -2 * x[..., 1] * torch.sin(x[..., 0] + x[..., 1] ** 2)
    return [
        (
            Finding(
                "missing_chain_factor",
                "your ∂f₂/∂x₂ is cos(x₁ + x₂²) alone: the chain rule multiplies it by the "
                "partial derivative of the inner x₁ + x₂² with respect to x₂.",
            ),
            no_factor,
        ),
        (
            Finding(
                "wrong_outer_derivative",
                "your row for f₂ = sin(x₁ + x₂²) differentiates sin as −sin: the derivative "
                "of sin(u) is cos(u), times u'.",
            ),
            minus_sin,
        ),
    ]


def _check_batched_jacobian(
    q: str, fn: Callable, name: str, hidden: bool, rule: methods.Rule, way: Callable
) -> None:
    """Values for every function of the list (hidden) or f (visible), then `way`: the
    method the question names, judged from the call's record and entry points (what `rule`
    forbids is judged right after each call)."""
    x, note = _batch(q, hidden)
    functions = JACOBIAN_FUNCTIONS if hidden else JACOBIAN_FUNCTIONS[:1]
    for fname, func in functions:
        got, hits, apis = _run(q, fn, func, x.clone(), then=rule, name=name)
        expected = batched_jacobian(func, x)
        check_jacobian(
            q,
            f"{name}(f, x) for {fname}, shape (N, 3, 2)",
            got,
            expected,
            batch=x.shape[0],
            inputs_note="" if not hidden else note,
        )
        way(q, name, hits, apis, outputs=expected.shape[1], batch=x.shape[0])
    passed(q, note + ("" if not hidden else f", {len(functions)} functions"))


def _wrong_api(q: str, name: str, apis, how: str, why: str) -> None:
    _fail(
        q,
        f"`{name}` does not use {how}",
        [f"autograd entry points your function called: {', '.join(dict.fromkeys(apis))}"],
        Finding(
            "wrong_api",
            f"this question asks for the Jacobian computed with {how}; the values may be right, "
            f"but the point is to practise that way of asking torch. {why}",
        ),
    )


# Entry points of the other two ways (and of transforms that vectorise over the batch).
_WHOLE_JACOBIAN = jac.JACOBIAN_APIS | {"torch.func.vmap", "torch.func.grad"}


def _one_backward_per_row(q, name, hits, apis, *, outputs: int, batch: int) -> None:
    other = [a for a in dict.fromkeys(apis) if a in _WHOLE_JACOBIAN]
    if other:
        _wrong_api(
            q,
            name,
            apis,
            "one backward per output component",
            f"Way 1 is a loop over the {outputs} outputs, without {', '.join(other)}.",
        )
    _requires(q, ROWS, hits, name)
    runs = methods.engine_runs(hits)
    if runs != outputs:
        per_sample = runs == outputs * batch
        _fail(
            q,
            f"`{name}` should run one backward per output component",
            [
                f"f has {outputs} outputs per sample and the batch {batch} samples; autograd "
                f"ran {runs} time(s), expected {outputs}"
                + (": once per sample and output" if per_sample else "")
            ],
            Finding(
                "one_backward_per_row",
                f"Way 1 runs exactly one backward per output component ({outputs} here): the "
                "backward with the one-hot column eₖ on every sample (v = torch.zeros_like(y); "
                "v[:, k] = 1) fills row k of all N Jacobians at once, since sample i's outputs "
                "depend on sample i only.",
            ),
        )


def _uses_functional_jacobian(q, name, hits, apis, *, outputs: int, batch: int) -> None:
    require_api(
        q,
        name,
        apis,
        "torch.autograd.functional.jacobian",
        how="`torch.autograd.functional.jacobian`",
    )


def _uses_vmap(q, name, hits, apis, *, outputs: int, batch: int) -> None:
    _requires(q, VMAP, hits, name)
    if "torch.func.vmap" not in apis:
        _wrong_api(
            q, name, apis, "`torch.func.vmap`", "Vectorise jacrev(f) over the batch with vmap."
        )
    loops = [a for a in dict.fromkeys(apis) if a in _LOOPED]
    if loops:
        _wrong_api(
            q,
            name,
            apis,
            "`torch.func.vmap(torch.func.jacrev(f))`",
            f"vmap(jacrev(f)) alone gives the (N, 3, 2) Jacobians, without {', '.join(loops)}.",
        )


_LOOPED = frozenset({"backward", "torch.autograd.grad", "torch.autograd.functional.jacobian"})


def check_jacobian_rows(jacobian_rows, *, hidden: bool = False) -> None:
    _check_batched_jacobian(
        "Q6.2 jacobian_rows", jacobian_rows, "jacobian_rows", hidden, ROWS, _one_backward_per_row
    )


def check_jacobian_functional(jacobian_functional, *, hidden: bool = False) -> None:
    _check_batched_jacobian(
        "Q6.3 jacobian_functional",
        jacobian_functional,
        "jacobian_functional",
        hidden,
        FUNCTIONAL,
        _uses_functional_jacobian,
    )


def check_jacobian_vmap(jacobian_vmap, *, hidden: bool = False) -> None:
    _check_batched_jacobian(
        "Q6.4 jacobian_vmap", jacobian_vmap, "jacobian_vmap", hidden, VMAP, _uses_vmap
    )


def large_batch(seed: int | None = 0, n: int = LARGE_N) -> torch.Tensor:
    """A batch of n points in [−1, 1]² (fixed for the visible test, fresh when seed is None)."""
    gen = torch.Generator()
    if seed is None:
        return uniform(generator("Q6.5 large batch"), (n, 2), *BATCH_DOMAIN)
    gen.manual_seed(seed)
    return uniform(gen, (n, 2), *BATCH_DOMAIN)


def check_large_batch(jacobian_vmap, *, hidden: bool = False) -> None:
    """The vectorised Jacobian at N = 1000: checked for correctness, never for speed."""
    q = "Q6.5 large batch"
    x = large_batch(None if hidden else 0)
    # Hidden: the notebook's f and another function, so an answer that ignores f fails.
    functions = JACOBIAN_FUNCTIONS[:2] if hidden else JACOBIAN_FUNCTIONS[:1]
    for fname, func in functions:
        got = call_student(q, jacobian_vmap, func, x.clone(), name="jacobian_vmap")
        expected = jacobian_f(x) if func is f else batched_jacobian(func, x)
        check_jacobian(
            q, f"jacobian_vmap(f, x) for {fname} at N = {LARGE_N}", got, expected, batch=x.shape[0]
        )
    passed(q, f"N = {LARGE_N} {'fresh random' if hidden else 'fixed'} points in [-1, 1]²")


# --- helpers -----------------------------------------------------------------------------


def _short(t: torch.Tensor) -> str:
    values = [f"{float(v):.4g}" for v in t.reshape(-1)[:4]]
    more = ", …" if t.numel() > 4 else ""
    if t.dim() == 0:
        return values[0]
    return "(" + ", ".join(values) + more + ")"


defer_hidden(globals())
