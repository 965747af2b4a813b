"""Jacobians and vector-Jacobian products: torch references, and checks that name the
mistakes a Jacobian or VJP answer typically makes.

Layout: a Jacobian is outputs × inputs, J[i, j] = ∂yᵢ/∂xⱼ, shape (m, n) at one point and
(N, m, n) for a batch of N independent samples. References come from `torch.func`
(`jacrev`, vectorised over a batch with `vmap`, and `vjp`), computed in float64 on
copies of the inputs, so a check never touches the student's tensors.

On top of the core diagnoses (`transposed`, `block_diagonal`, `accumulated_rows`,
`v_applied_twice` in :mod:`autograder.checking.diagnose`), this module names:

- `batch_axis`: the batch axis is not first, e.g. (m, N, n) from `torch.stack(rows)`;
- `flattened`: the right numbers in a flattened shape, e.g. (N·m, n);
- `grad_aliased`: every row is the same tensor, because each row stored `x.grad` itself,
  which `zero_()` and the next `backward` overwrite in place;
- `v_and_j_swapped`: J·v instead of vᵀJ;
- `ignored_v`: 1ᵀJ, the `gradient` vector replaced by ones;
- `returned_jacobian`: the Jacobian itself instead of the product vᵀJ;
- `gradient_shape`, `matmul_order`: torch/numpy errors of those mistakes, in plain words;
- `not_a_vjp`: right values, but not computed as a vector-Jacobian product (a Jacobian
  built first and multiplied by v, forward mode, or one reverse pass per output).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import methods
from .checks import call
from .compare import as_tensor, check_close
from .diagnose import Context
from .feedback import CheckFailed, Finding

F64 = torch.float64


def _f64(x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    return t.detach().clone().to(F64)


# --- references --------------------------------------------------------------------------


def jacobian_matrix(f: Callable, x: torch.Tensor) -> torch.Tensor:
    """The (m, n) Jacobian of f at one point x: flattened outputs × flattened inputs."""
    x = _f64(x)
    return torch.func.jacrev(f)(x).reshape(-1, max(1, x.numel()))


def batched_jacobian(f: Callable, x: torch.Tensor) -> torch.Tensor:
    """(N, m, n): the Jacobian of every sample of a batch x of shape (N, n).

    f maps a batch (N, n) to (N, m) row by row (and one sample (n,) to (m,)).
    """
    return torch.func.vmap(torch.func.jacrev(f))(_f64(x))


def reference_vjp(f: Callable, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vᵀJ of f at x, by `torch.func.vjp`: a tensor shaped like x."""
    _, pullback = torch.func.vjp(f, _f64(x))
    (g,) = pullback(_f64(v))
    return g


def reference_vjps(
    f: Callable, primals: Sequence[torch.Tensor], v: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """vᵀ∂f/∂p for every primal p of f(*primals), by `torch.func.vjp`."""
    _, pullback = torch.func.vjp(f, *[_f64(p) for p in primals])
    return tuple(pullback(_f64(v)))


# --- diagnoses ---------------------------------------------------------------------------


def _close(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> bool:
    tol = 1e-6 * max(1.0, scale)
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=1e-5, atol=tol).all())


def _scale(ref: torch.Tensor) -> float:
    return float(ref.abs().max()) if ref.numel() else 1.0


def _shape(t: torch.Tensor | torch.Size | Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in (t.shape if isinstance(t, torch.Tensor) else t))


def diagnose_layout(got: torch.Tensor, ref: torch.Tensor, batch: int) -> list[Finding]:
    """Findings for a batched Jacobian (N, m, n) answered in another layout than the
    transposed (N, n, m) or block-diagonal (N, m, N, n) ones the core already names."""
    g, r = got.detach().to(F64), ref.detach().to(F64)
    if g.shape == r.shape or g.numel() != r.numel():
        return []
    s = _scale(r)
    if batch and r.dim() == 3:
        candidates = []
        for p in itertools.permutations(range(3)):
            if p in ((0, 1, 2), (0, 2, 1)):  # right, or transposed (a core finding)
                continue
            if g.shape == r.permute(*p).shape:
                inverse = tuple(int(i) for i in torch.argsort(torch.tensor(p)))
                candidates.append((_close(g.permute(*inverse), r, s), p, inverse))
        if candidates:
            right_values, p, inverse = max(candidates, key=lambda c: c[0])
            where = p.index(0)
            fix = (
                f" The values are right: answer.permute{inverse} gives the expected layout"
                + (" (for a loop over rows: torch.stack(rows, dim=1))" if p == (1, 0, 2) else "")
                + "."
                if right_values
                else ""
            )
            return [
                Finding(
                    "batch_axis",
                    f"your Jacobian has shape {_shape(g)}: the batch axis (N = {r.shape[0]}) is "
                    f"axis {where}, not axis 0. A batch of Jacobians is (N, outputs, inputs) = "
                    f"{_shape(r)}: one {r.shape[1]} × {r.shape[2]} Jacobian per sample, one row "
                    f"per output.{fix}",
                )
            ]
    if _close(g.reshape(r.shape), r, s):
        return [
            Finding(
                "flattened",
                f"your answer holds the right numbers in shape {_shape(g)}: reshape it to "
                f"{_shape(r)} (outputs × inputs{', per sample' if batch else ''}).",
            )
        ]
    return []


def diagnose_rows(got: torch.Tensor, ref: torch.Tensor) -> list[Finding]:
    """Findings for a Jacobian (..., m, n) whose rows are all one tensor: x.grad stored
    itself in every row, then overwritten in place by zero_() or the next backward."""
    g, r = got.detach().to(F64), ref.detach().to(F64)
    if g.shape != r.shape or r.dim() < 2 or r.shape[-2] < 2:
        return []
    s = _scale(r)
    last = g[..., -1:, :]
    if not _close(g, last.expand_as(g), s) or _close(r, r[..., -1:, :].expand_as(r), s):
        return []
    if _close(last, r[..., -1:, :], s):
        how = "zero_() cleared it and the next backward refilled it in place"
        seen = "the last true row"
    elif _close(last, r.sum(-2, keepdim=True), s * r.shape[-2]):
        how = "every backward added into it in place"
        seen = "the sum of all true rows"
    else:
        return []
    return [
        Finding(
            "grad_aliased",
            f"every row of your Jacobian equals {seen}: each row stored x.grad itself, the "
            f"same tensor, and {how}. Store a copy (x.grad.clone()) or set x.grad = None "
            "before each backward, so each row gets a new tensor.",
        )
    ]


def diagnose_vjp(got: torch.Tensor, J: torch.Tensor, v: torch.Tensor) -> list[Finding]:
    """Findings for a VJP answer, given the (m, n) Jacobian J and the vector v (m entries)."""
    g = got.detach().to(F64).reshape(-1)
    J = J.detach().to(F64)
    v = v.detach().to(F64).reshape(-1)
    m, n = J.shape
    right = v @ J
    s = max(_scale(right), _scale(J))
    findings: list[Finding] = []
    if m == n and g.numel() == n:
        jv = J @ v
        if _close(g, jv, s) and not _close(jv, right, s):
            findings.append(
                Finding(
                    "v_and_j_swapped",
                    "v and J are swapped: your answer is J·v (J @ v). backward(v) computes the "
                    "vector-Jacobian product vᵀJ: v multiplies J from the left (v @ J, or "
                    "J.T @ v), one entry per input.",
                )
            )
    if g.numel() == n and not _close(v, torch.ones_like(v)):
        ones = torch.ones(m, dtype=F64) @ J
        if _close(g, ones, s) and not _close(ones, right, s):
            findings.append(
                Finding(
                    "ignored_v",
                    "your answer is 1ᵀJ, the product with a vector of ones: the given `gradient` "
                    "vector v was not used (y.sum().backward() or torch.ones_like(y) in its "
                    "place). Call y.backward(v) with the v you were given.",
                )
            )
    if g.numel() == J.numel() and J.numel() > 1:
        if _close(g, J.reshape(-1), s) or _close(g, J.T.reshape(-1), s):
            findings.append(
                Finding(
                    "returned_jacobian",
                    "your answer is the Jacobian J itself: the question asks for the product "
                    "vᵀJ, a tensor shaped like the input x.",
                )
            )
    return findings


ERROR_HINTS = [
    (
        ("Mismatch in shape: grad_output",),
        "gradient_shape",
        "the `gradient` passed to backward must have the shape of y. For a batch output y "
        "of shape (N, m), pass the one-hot vector for row k on every sample: "
        "v = torch.zeros_like(y); v[:, k] = 1.",
    ),
    (
        (
            "shapes cannot be multiplied",
            "mismatch in its core dimension",
            "size mismatch",
            "inconsistent tensor size",
            "matmul need to be at least 1D",
            "not aligned",
        ),
        "matmul_order",
        "a matrix product failed on its shapes. J has one row per output and one column per "
        "input, v one entry per output: the vector-Jacobian product is v @ J (or J.T @ v); "
        "J @ v multiplies from the wrong side.",
    ),
]


def explain_error(text: str) -> list[Finding]:
    """Plain-language hints for errors typical of Jacobian and VJP code."""
    return [
        Finding(code, hint)
        for needles, code, hint in ERROR_HINTS
        if any(needle in text for needle in needles)
    ]


# A specific finding makes a generic one misleading: "100× the reference" reads as 100
# accumulated backward calls when the answer was multiplied by v = 100.
_SUPERSEDES = {
    "batch_axis": {"wrong_layout"},
    "flattened": {"wrong_layout"},
    "v_and_j_swapped": {"accumulated", "constant_factor", "sign_flipped", "matmul_order"},
    "ignored_v": {"accumulated", "constant_factor", "sign_flipped"},
    "v_applied_twice": {"accumulated", "constant_factor", "sign_flipped"},
}


def _merged(exc: CheckFailed, extra: list[Finding]) -> CheckFailed:
    """A copy of `exc` with `extra` findings added, generic findings dropped where a
    specific one explains the same answer."""
    findings = list(exc.diagnoses)
    for f in extra:
        if f.code not in {d.code for d in findings}:
            findings.append(f)
    drop = set().union(*(_SUPERSEDES.get(d.code, set()) for d in findings))
    findings = [d for d in findings if d.code not in drop]
    if [d.code for d in findings] == exc.codes:
        return exc
    return CheckFailed(exc.question, exc.summary, exc.details, findings)


def call_student(
    question: str,
    fn: Any,
    *args: Any,
    name: str | None = None,
    jacobian_shape: tuple[int, int] | None = None,
    rule: methods.Rule | None = None,
    keeps_inputs: bool = True,
) -> Any:
    """`checks.call` plus the Jacobian/VJP error hints; returns the result only.

    With `jacobian_shape` = (m, n) of a VJP question whose J is not square, a failed matrix
    product is named as v and J swapped: J @ v is exactly the product that fails there.
    `rule` and `keeps_inputs` are passed on to `checks.call`.
    """
    try:
        result, _ = call(question, fn, *args, name=name, rule=rule, keeps_inputs=keeps_inputs)
    except CheckFailed as exc:
        extra = explain_error("\n".join(exc.details))
        if jacobian_shape and any(f.code == "matmul_order" for f in extra):
            m, n = jacobian_shape
            if m != n:
                extra.append(
                    Finding(
                        "v_and_j_swapped",
                        f"v and J look swapped: J has shape ({m}, {n}) and v has {m} entries, one "
                        f"per output, so J @ v cannot be formed. The vector-Jacobian product "
                        "multiplies v from the left: v @ J (or J.T @ v), one entry per input.",
                    )
                )
        raise _merged(exc, extra) from None
    return result


# --- checks ------------------------------------------------------------------------------


def check_jacobian(
    question: str,
    what: str,
    got: Any,
    expected: torch.Tensor,
    *,
    batch: int = 0,
    inputs_note: str = "",
) -> None:
    """Compare a Jacobian (m, n), or a batch of them (N, m, n) when `batch` = N, with the
    reference; name transposed, block-diagonal, batch-axis and accumulated-rows mistakes."""
    ctx = Context(jacobian=True, batch=batch, inputs_note=inputs_note)
    try:
        check_close(question, what, got, expected, context=ctx)
    except CheckFailed as exc:
        t = as_tensor(got) if got is not None else None
        extra: list[Finding] = []
        if t is not None and (t.is_floating_point() or t.is_complex()):
            extra = diagnose_layout(t, expected, batch) + diagnose_rows(t, expected)
        raise _merged(exc, extra) from None


def check_vjp(
    question: str,
    what: str,
    got: Any,
    *,
    J: torch.Tensor,
    v: torch.Tensor,
    expected: torch.Tensor,
    inputs_note: str = "",
) -> None:
    """Compare a vector-Jacobian product with `expected` (= vᵀJ shaped like the input);
    J (m, n) and v (m entries) are used to name swapped, ignored or doubled v."""
    ctx = Context(v=_f64(v), inputs_note=inputs_note)
    try:
        check_close(question, what, got, expected, context=ctx)
    except CheckFailed as exc:
        t = as_tensor(got) if got is not None else None
        extra: list[Finding] = []
        if t is not None and (t.is_floating_point() or t.is_complex()):
            extra = diagnose_vjp(t, _f64(J).reshape(-1, max(1, expected.numel())), _f64(v))
        raise _merged(exc, extra) from None


# --- how a vector-Jacobian product was computed ---------------------------------------------

# Autograd entry points (as `params.autograd_apis` names them) that build a whole Jacobian.
JACOBIAN_APIS = frozenset(
    {
        "torch.autograd.functional.jacobian",
        "torch.autograd.functional.hessian",
        "torch.func.jacrev",
        "torch.func.jacfwd",
        "torch.func.hessian",
    }
)


def require_vjp(
    question: str,
    name: str,
    hits: list[str],
    apis: Sequence[str],
    *,
    outputs: int,
    passes: int = 1,
    asks: str = "backward(v)",
    v: int | None = None,
) -> None:
    """Fail unless one call (its method record `hits`, its autograd entry points `apis`)
    computed vᵀJ as a vector-Jacobian product: reverse-mode autograd, at most `passes`
    reverse passes, no forward mode and no entry point that builds the whole Jacobian;
    with `v` (the index of v among the call's arguments), a pass that pushed v back (as
    its starting gradient, or inside the graph: (y * v).sum().backward()).

    Any reverse-mode VJP counts (`backward(v)`, `torch.autograd.grad` with `grad_outputs`,
    `torch.func.vjp`, `torch.autograd.functional.vjp`). The cause is named from what the call
    did: the Jacobian entry point it called, forward mode, or as many reverse passes as
    outputs (`outputs`, the m of the m × n Jacobian: J built row by row).
    """
    record = methods.Record.of(hits)
    runs = methods.engine_runs(hits)
    built = sorted(set(apis) & JACOBIAN_APIS)
    if built:
        evidence = f"it called {', '.join(built)}, which builds the whole Jacobian J"
    elif methods.FORWARD in record.used:
        evidence = (
            "it used forward-mode AD (dual numbers, torch.func.jvp or jacfwd), which computes "
            "J·u, a column of J at a time, not vᵀJ"
        )
    elif runs > passes:
        evidence = f"autograd ran {runs} times" + (
            f", once per output (m = {outputs}): J was built row by row"
            if runs == outputs
            else f" where one vector-Jacobian product needs {passes}"
        )
    else:
        evidence = ""
    if evidence:
        raise CheckFailed(
            question,
            f"`{name}` does not compute vᵀJ as a vector-Jacobian product",
            [f"`{name}`: {evidence}"],
            [
                Finding(
                    "not_a_vjp",
                    f"this question asks for {asks}: one reverse pass that pushes v back "
                    "through the graph and gives vᵀJ without ever forming J. Building J (with "
                    "jacrev, functional.jacobian, forward mode or one backward per output) and "
                    "multiplying by v gets the numbers, not the method.",
                )
            ],
        )
    methods.enforce(question, methods.Rule(frozenset({methods.REVERSE}), asks=asks), hits, name)
    if v is not None and methods.seeded(hits, v) is False:
        pushed = (
            f"this question asks for {asks}: v is the gradient the reverse pass starts from "
            "(y.backward(v), torch.autograd.grad(y, x, v)). "
        )
        if f"{methods.SEED}:ones" in hits:
            start, finding = (
                "a gradient of ones",
                Finding(
                    "v_after_backward",
                    pushed + "Running backward from ones and multiplying by v afterwards "
                    "gives (Jᵀ1) ⊙ v, which equals vᵀJ only where J is diagonal.",
                ),
            )
        else:
            start, finding = (
                "a gradient that is not v",
                Finding(
                    "v_not_pushed",
                    pushed + "A pass started from another vector computes another product.",
                ),
            )
        raise CheckFailed(
            question,
            f"`{name}` does not push v back through the graph",
            [f"`{name}`: the reverse pass started from {start}, and v took no part in it"],
            [finding],
        )
