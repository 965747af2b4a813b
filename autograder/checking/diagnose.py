"""Name the likely cause of a wrong gradient.

Each diagnosis compares the student's value with the torch reference and with what the
check knows about the question (inner derivatives, the `gradient` vector passed, the
outputs y, the batch layout) and returns :class:`Finding`s with a stable code. Torch's
error messages are matched on stable substrings, not whole strings.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import torch

from . import methods
from .feedback import Finding

NONLEAF_GRAD_WARNING = "is not a leaf Tensor is being accessed"


@dataclass
class Context:
    """What a check knows beyond the reference value itself."""

    # Named tensors the answer may be off by (missing chain-rule factor or applied twice),
    # e.g. {"2x, the derivative of x²": 2 * x}. Broadcastable to the reference.
    factors: dict[str, torch.Tensor] = field(default_factory=dict)
    # The `gradient` vector v of a vector-Jacobian product, and the outputs y.
    v: torch.Tensor | None = None
    y: torch.Tensor | None = None
    # Jacobian layout: the reference is (..., m, n) with `batch` leading dims.
    jacobian: bool = False
    batch: int = 0
    # Extra sentences about a None answer, from what the check observed.
    none_hints: list[Finding] = field(default_factory=list)
    # One line on which inputs were used ("5 random points in [-3, 3]").
    inputs_note: str = ""
    # Known wrong answers for this question, evaluated on the same inputs: if the
    # student's value matches one, its finding names the mistake.
    mistakes: list[tuple[Finding, torch.Tensor]] = field(default_factory=list)
    # The reference as a sum of named terms, {"2x·cos(x²)": tensor, ...}: an answer that is
    # the reference with one term's sign flipped, or one term left out, is named so.
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def none_findings(self, question: str = "") -> list[Finding]:
        if self.none_hints:
            return self.none_hints
        specific = none_causes(question)
        return specific or [
            Finding(
                "none_grad",
                "the gradient is None: either backward() was never called on a result that "
                "depends on this tensor, the tensor is not a leaf (call .retain_grad() before "
                "backward to keep its .grad), or the graph was cut (.detach(), .data, .item(), "
                ".numpy() or torch.tensor(list_of_tensors) make a new tensor with no history; "
                "requires_grad=True set on a copy does not reach the original).",
            )
        ]


def _allclose(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    try:
        return a.shape == b.shape and bool(
            torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=False).all()
        )
    except RuntimeError:
        return False


def _ratio(got: torch.Tensor, ref: torch.Tensor, atol: float) -> tuple[float, int] | None:
    """(c, n): the constant c with got ≈ c·ref, if there is one, and on how many elements
    (where the reference is not zero) it was seen."""
    mask = ref.abs() > max(atol * 10, 1e-12)
    n = int(mask.sum())
    if n == 0:
        return None
    r = got[mask] / ref[mask]
    c = float(r.median())
    if not torch.isfinite(torch.tensor(c)):
        return None
    if _allclose(got, c * ref, rtol=1e-5, atol=atol * 10):
        return c, n
    return None


def diagnose_values(
    got: torch.Tensor, ref: torch.Tensor, tol, context: Context, question: str = ""
) -> list[Finding]:
    """Findings for a value mismatch of tensors of equal shape (float64).

    A cause is named only with evidence: a ratio needs two or more elements that agree on
    it (one number is a multiple of any other), and "accumulated" needs the autograd
    engine to have run as many times in the student's call (:mod:`.methods`).
    """
    findings: list[Finding] = []
    atol = float(tol.atol.max()) if isinstance(tol.atol, torch.Tensor) else tol.atol
    hits = methods.LAST_CALL.get(question, (None, [], []))[2] if question else []

    for finding, wrong in context.mistakes:
        w = wrong.detach().to(torch.float64)
        if w.shape == got.shape and _allclose(got, w, rtol=max(tol.rtol, 1e-6), atol=atol * 10):
            findings.append(finding)

    nonfinite = ~torch.isfinite(got) & torch.isfinite(ref)
    if bool(nonfinite.any()):
        findings.append(
            Finding(
                "nonfinite",
                f"{int(nonfinite.sum())} value(s) are NaN or inf where the reference is finite: "
                "the formula leaves its domain there (log of a non-positive number, division "
                "by zero, sqrt of a negative) — check the expression, not the points.",
            )
        )
        return findings

    found = _ratio(got, ref, atol)
    if found is not None and not findings:
        c, n = found
        k = round(c)
        if abs(c + 1) < 1e-6:
            findings.append(
                Finding("sign_flipped", "your answer is the reference with its sign flipped.")
            )
        elif (
            2 <= k <= 10
            and abs(c - k) < 1e-6
            and context.v is None
            and methods.engine_runs(hits) >= k
        ):
            findings.append(
                Finding(
                    "accumulated",
                    f"your gradient is exactly {k}× the reference, and your function ran "
                    f"backward {methods.engine_runs(hits)} times: .grad accumulated over the "
                    "calls. Zero it between calls (x.grad.zero_() or x.grad = None), or use a "
                    "fresh tensor.",
                )
            )
        elif (
            2 <= k <= 10
            and abs(c - k) < 1e-6
            and context.v is None
            and n >= 2
            and methods.engine_runs(hits) >= 1
            and methods.CALLS.get(question, 0) >= 2  # earlier calls in this test cell
        ):
            findings.append(
                Finding(
                    "accumulated_across_calls",
                    f"your gradient is exactly {k}× the reference although your function ran "
                    "backward once: gradients of earlier calls add up in a .grad kept between "
                    "calls (a tensor or model defined outside the function, never cleared). "
                    "Start from a fresh tensor, or zero the gradient, inside the function.",
                )
            )
        elif abs(c) < 1e-12 and n >= 2:
            findings.append(
                Finding(
                    "all_zero",
                    "your answer is all zeros: the gradient was read from tensors the result "
                    "does not depend on (e.g. parameters replaced after the graph was built), "
                    "or .grad was zeroed after backward.",
                )
            )
        elif n >= 2 and abs(c) >= 1e-12:
            findings.append(
                Finding(
                    "constant_factor",
                    f"your answer is the reference times {c:.6g} on all {n} elements: a "
                    "constant factor is missing or extra (e.g. the 2 of x², the 3 of 3x, or "
                    "the 2h of a central difference).",
                )
            )

    # One term of a sum with its sign flipped, or left out.
    if not findings:
        for name, term in context.terms.items():
            t = term.detach().to(torch.float64)
            if t.shape != ref.shape and t.numel() != 1:
                continue
            if not bool((t.abs() > 10 * atol + tol.rtol * ref.abs()).any()):
                continue  # the term is too small here to tell
            if _allclose(got, ref - 2 * t, rtol=1e-5, atol=atol * 10):
                findings.append(
                    Finding(
                        "term_sign",
                        f"your answer is the reference with the sign of the term {name} "
                        "flipped: check that term's sign.",
                    )
                )
                break
            if _allclose(got, ref - t, rtol=1e-5, atol=atol * 10):
                findings.append(
                    Finding(
                        "term_missing",
                        f"your answer is the reference without the term {name}.",
                    )
                )
                break

    # A missing chain-rule factor (answer = ref / f) or one applied twice (ref * f).
    for name, factor in context.factors.items():
        f = factor.to(torch.float64)
        try:
            missing = _allclose(got * f, ref, rtol=1e-5, atol=atol * 10)
            twice = _allclose(got, ref * f, rtol=1e-5, atol=atol * 10)
        except RuntimeError:
            continue
        if missing:
            findings.append(
                Finding(
                    "missing_chain_factor",
                    f"your answer is missing the chain-rule factor {name}: multiply by the "
                    "derivative of the inner function.",
                )
            )
        elif twice:
            findings.append(
                Finding(
                    "extra_chain_factor",
                    f"your answer has the factor {name} once too often.",
                )
            )

    if context.v is not None:
        v = context.v.to(torch.float64)
        try:
            if _allclose(got, ref * v, rtol=1e-5, atol=atol * 10) and not _allclose(
                v, torch.ones_like(v), 1e-9, 1e-12
            ):
                findings.append(
                    Finding(
                        "v_applied_twice",
                        "your answer is the reference multiplied by the `gradient` vector v "
                        "again: backward(v) already computes vᵀJ, do not multiply by v.",
                    )
                )
        except RuntimeError:
            pass
    if context.y is not None:
        y = context.y.to(torch.float64)
        if y.shape == ref.shape and _allclose(got, ref * y, rtol=1e-5, atol=atol * 10):
            findings.append(
                Finding(
                    "gradient_is_y",
                    "your answer equals the reference times y: backward was called with "
                    "gradient=y; pass torch.ones_like(y) for the element-wise derivative.",
                )
            )

    if context.jacobian and ref.dim() >= 2:
        if _allclose(got, ref.cumsum(dim=-2), rtol=1e-5, atol=atol * 10):
            findings.append(
                Finding(
                    "accumulated_rows",
                    "row k of your Jacobian is the sum of the true rows 0..k: .grad was not "
                    "cleared between rows. Set x.grad = None (or zero it) before each backward.",
                )
            )
        if ref.shape[-1] == ref.shape[-2] and _allclose(
            got, ref.transpose(-1, -2), rtol=1e-5, atol=atol * 10
        ):
            findings.append(
                Finding(
                    "transposed",
                    "your Jacobian is transposed: row i should hold the derivatives of output i "
                    "(shape outputs × inputs).",
                )
            )
    return findings


def diagnose_shape(got: torch.Tensor, ref: torch.Tensor, context: Context) -> list[Finding]:
    """Findings for a shape mismatch: transposed, batch layout, summed over the batch."""
    findings: list[Finding] = []
    g = got.detach().to(torch.float64)
    r = ref.detach().to(torch.float64)
    tol = 1e-5 * max(1.0, float(r.abs().max()) if r.numel() else 1.0)

    if r.dim() >= 2 and g.shape == r.transpose(-1, -2).shape:
        same = _allclose(g, r.transpose(-1, -2), 1e-4, tol)
        findings.append(
            Finding(
                "transposed",
                f"your Jacobian has shape {tuple(g.shape)}: it looks transposed"
                + (" (the values match the transposed reference)" if same else "")
                + f". Expected {tuple(r.shape)}: outputs × inputs, one row per output.",
            )
        )
    b = context.batch
    if (
        b
        and r.dim() == 3
        and g.dim() == 4
        and g.shape == (r.shape[0], r.shape[1], r.shape[0], r.shape[2])
    ):
        diag = torch.stack([g[i, :, i, :] for i in range(r.shape[0])])
        findings.append(
            Finding(
                "block_diagonal",
                f"your Jacobian has shape {tuple(g.shape)}: the full (N, m, N, n) Jacobian that "
                "torch.autograd.functional.jacobian returns for a batch, whose off-diagonal "
                "blocks are zero. Take the diagonal blocks, J[i, :, i, :], to get (N, m, n)"
                + (" — those match the reference." if _allclose(diag, r, 1e-4, tol) else "."),
            )
        )
    if r.dim() >= 1 and g.shape == r.shape[1:] and r.shape[0] > 1:
        if _allclose(g, r.sum(0), 1e-4, tol * r.shape[0]):
            findings.append(
                Finding(
                    "summed_over_batch",
                    "your answer is the reference summed over the batch: one gradient for the "
                    "whole batch was asked per sample. Keep one row per sample (e.g. "
                    "is_grads_batched=True or torch.func.vmap).",
                )
            )
    if g.dim() >= 1 and r.shape == g.shape[1:] and g.shape[0] > 1:
        if _allclose(g.sum(0), r, 1e-4, tol * g.shape[0]):
            findings.append(
                Finding(
                    "per_sample_not_summed",
                    "your answer has one row per sample; the question asks for the gradient of "
                    "the summed output (sum the rows, or call backward on the sum).",
                )
            )
    if not findings and g.numel() == r.numel():
        findings.append(
            Finding(
                "wrong_layout",
                f"your answer has the right number of elements but shape {tuple(g.shape)} "
                f"instead of {tuple(r.shape)}: the dimensions are in another order.",
            )
        )
    return findings


# Torch errors in plain language: (stable substring, code, hint).
ERRORS = [
    (
        "Expected all tensors to have the same size in the mapped dimension",
        "vmap_in_dims",
        "vmap maps one dimension of every input whose in_dim is a number, and those sizes must "
        "agree: an input shared by every sample (weights, parameters, v) takes in_dims None, "
        "e.g. vmap(f, in_dims=(0, None))(xs, w).",
    ),
    (
        "for some input, but that input is a Tensor of dimensionality",
        "vmap_in_dims",
        "an in_dims entry names a dimension the input does not have: in_dims gives, for each "
        "argument, the dimension that holds the samples (0 for a batch of rows) or None.",
    ),
    (
        "in_dims is not compatible with the structure",
        "vmap_in_dims",
        "in_dims needs one entry per positional argument of the function vmap calls (a "
        "number or None each), e.g. in_dims=(0, None) for f(x, w).",
    ),
    (
        "grad can be implicitly created only for scalar outputs",
        "nonscalar_backward",
        "backward() without arguments works only on a scalar. For a non-scalar y, pass the "
        "vector v of the vector-Jacobian product: y.backward(torch.ones_like(y)) for "
        "element-wise derivatives, or sum first: y.sum().backward().",
    ),
    (
        "backward through the graph a second time",
        "graph_freed",
        "the graph was freed by the first backward. Pass retain_graph=True to every backward "
        "but the last, or rebuild the graph by recomputing y.",
    ),
    (
        "Can't call numpy() on Tensor that requires grad",
        "numpy_requires_grad",
        "a tensor that requires grad cannot become a numpy array; use .detach().numpy() — "
        "and do it only after the gradient is computed, since detaching cuts the graph.",
    ),
    (
        "modified by an inplace operation",
        "inplace_modified",
        "a tensor autograd saved for backward was changed in place (x += …, x[i] = …, "
        "x.add_()). Use out-of-place operations (x = x + …) on tensors in the graph.",
    ),
    (
        "a leaf Variable that requires grad is being used in an in-place operation",
        "inplace_leaf",
        "a leaf tensor with requires_grad=True was changed in place. Update it under "
        "torch.no_grad(), or compute a new tensor instead.",
    ),
    (
        "does not require grad and does not have a grad_fn",
        "no_grad_fn",
        "the result has no graph: the input was not created with requires_grad=True, the "
        "computation ran under torch.no_grad()/detach, or — for a second derivative — the "
        "first torch.autograd.grad was called without create_graph=True.",
    ),
    (
        "Only Tensors of floating point",
        "integer_requires_grad",
        "only floating-point tensors can require gradients: write torch.tensor([1., 2.]) "
        "(note the dots) or pass dtype=torch.float64.",
    ),
    (
        "appears to not have been used in the graph",
        "unused_input",
        "one of the inputs passed to torch.autograd.grad does not affect the output; check "
        "the tensors you differentiate with respect to (or pass allow_unused=True).",
    ),
    (
        "Trying to backward through the graph",
        "graph_freed",
        "the graph was freed by the first backward; use retain_graph=True.",
    ),
]


def explain_exception(exc: BaseException) -> list[Finding]:
    """Plain-language hints for a torch error raised by the student's code."""
    text = str(exc)
    found: list[Finding] = []
    seen: set[str] = set()
    for substring, code, hint in ERRORS:
        if substring in text and code not in seen:
            seen.add(code)
            found.append(Finding(code, hint))
    return found


_DETACHING = [
    (re.compile(r"\.detach\(\)"), ".detach()"),
    (re.compile(r"\.data\b"), ".data"),
    (re.compile(r"\.numpy\(\)"), ".numpy()"),
    (re.compile(r"\.item\(\)"), ".item()"),
    (re.compile(r"\.tolist\(\)"), ".tolist()"),
    (re.compile(r"torch\.(tensor|as_tensor)\(\s*\["), "torch.tensor([...]) of tensors"),
]
_BACKWARD = re.compile(r"\.backward\(|autograd\.grad\b|torch\.func\.|\bgrad\(|jacrev|jacobian|vjp")
# x.retain_grad() written after a backward() call in the same function.
_RETAIN_LATE = re.compile(r"\.backward\([\s\S]*?\b(\w+)\.retain_grad\(\)")
_COPY_THEN_GRAD = re.compile(
    r"(\w+)\s*=\s*(\w+)\.(clone|to|float|double|detach)\([^)]*\)[\s\S]*\b\2\.requires_grad_\("
)


def copy_then_requires_grad(fn) -> list[Finding]:
    """requires_grad switched on for a tensor after the copy used in the computation was made."""
    from . import forbid

    code = forbid.function_source(fn) if fn is not None else ""
    if code and _COPY_THEN_GRAD.search(code):
        return [
            Finding(
                "requires_grad_after_copy",
                "requires_grad was switched on after a copy was made: the copy used in the "
                "computation does not track gradients of the tensor you read .grad from. Set "
                "requires_grad on the tensor you compute with, before computing.",
            )
        ]
    return []


def none_causes(question: str) -> list[Finding]:
    """Why the student's last call in `question` may have produced a None gradient,
    from the warnings it raised and the source of the function."""
    from . import forbid

    fn, caught, hits = methods.LAST_CALL.get(question, (None, [], []))
    findings = warning_findings(caught)
    if findings:  # torch said it: .grad of a non-leaf
        return findings
    source = forbid.function_source(fn) if fn is not None else ""
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    recorded = any(h in (methods.EVALUATED, methods.NUMERICAL) for h in hits) or bool(hits)
    ran_autograd = methods.engine_runs(hits) > 0 or methods.FORWARD in hits
    if (recorded and not ran_autograd) or (not recorded and code and not _BACKWARD.search(code)):
        return [
            Finding(
                "no_backward",
                "nothing in your function ran autograd: call .backward() on the result (or use "
                "torch.autograd.grad) before reading .grad.",
            )
        ]
    if not code:
        return []
    late = _RETAIN_LATE.search(code)
    if late:
        return [
            Finding(
                "retain_grad_late",
                f"`{late.group(1)}.retain_grad()` comes after backward(): retain_grad only keeps "
                "the gradients of a backward pass that runs after it. Call it before backward.",
            )
        ]
    if _COPY_THEN_GRAD.search(code):
        return copy_then_requires_grad(fn)
    used = [label for pattern, label in _DETACHING if pattern.search(code)]
    if used:
        return [
            Finding(
                "detached",
                f"your code uses {', '.join(used)}, which makes a tensor with no history: the "
                "gradient cannot flow back through it. Keep the computation in tensors that "
                "require grad, and detach only the final value.",
            )
        ]
    return []


def warning_findings(caught: list[warnings.WarningMessage]) -> list[Finding]:
    findings = []
    for w in caught:
        if NONLEAF_GRAD_WARNING in str(w.message):
            findings.append(
                Finding(
                    "nonleaf_grad",
                    "you read .grad of a non-leaf tensor (an intermediate result). torch keeps "
                    "gradients only for leaves unless you call .retain_grad() on that tensor "
                    "before backward().",
                )
            )
    return findings
