"""Compare a student's tensor with a reference computed by torch.

Order of checks, as in `torch.testing.assert_close`: presence, shape, dtype/device,
then values. Tolerances come from the *student's* dtype, so a correct float32 answer
compared with a float64 reference is not failed for precision. Every failure names the
question and what was checked, shows the worst element with its index and the tolerance,
and carries the diagnoses from :mod:`autograder.checking.diagnose`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .diagnose import Context, diagnose_shape, diagnose_values
from .feedback import CheckFailed, Finding


@dataclass(frozen=True)
class Tolerance:
    """rtol and atol; atol may be a tensor (one bound per element, e.g. rounding bounds)."""

    rtol: float
    atol: float | torch.Tensor

    def atol_at(self, index: int) -> float:
        if isinstance(self.atol, torch.Tensor):
            return (
                float(self.atol.reshape(-1)[index]) if self.atol.numel() > 1 else float(self.atol)
            )
        return self.atol

    def close(self, got: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Element-wise |got - ref| <= atol + rtol·|ref|, NaN equal to NaN."""
        atol = self.atol.to(torch.float64) if isinstance(self.atol, torch.Tensor) else self.atol
        ok = (got - ref).abs() <= atol + self.rtol * ref.abs()
        both_nan = torch.isnan(got) & torch.isnan(ref)
        same_inf = torch.isinf(got) & torch.isinf(ref) & (got == ref)
        return ok | both_nan | same_inf


# Base tolerances per student dtype. float64 follows torch.testing; float32 is looser
# than torch.testing's 1.3e-6 because a float32 autograd result compared with a float64
# analytic derivative differs by ~1e-4 relative near zeros of the derivative (cancellation
# of large float32 terms), so float32 also gets atol 1e-4 times the reference scale.
_BASE = {
    torch.float64: Tolerance(1e-7, 1e-7),
    torch.float32: Tolerance(1e-4, 1e-4),
    torch.float16: Tolerance(1e-2, 1e-3),
    torch.bfloat16: Tolerance(2e-2, 1e-2),
}


def tolerance_for(dtype: torch.dtype, scale: float = 1.0) -> Tolerance:
    """Tolerance for an answer of `dtype`, with atol scaled by the reference's magnitude."""
    base = _BASE.get(dtype, _BASE[torch.float64])
    return Tolerance(base.rtol, base.atol * max(1.0, scale))


def as_tensor(value: Any) -> torch.Tensor | None:
    """Accept tensors, numpy arrays, Python numbers and (nested) lists of them."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray | np.generic):
        return torch.from_numpy(np.asarray(value).copy())
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return torch.tensor(float(value), dtype=torch.float64)
    if isinstance(value, list | tuple):
        try:
            if value and all(isinstance(v, torch.Tensor) for v in value):
                return torch.stack([v.detach() for v in value])
            return torch.tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, tuple(shape))) if len(shape) else ()


def check_close(
    question: str,
    what: str,
    got: Any,
    expected: torch.Tensor,
    *,
    context: Context | None = None,
    tolerance: Tolerance | None = None,
) -> None:
    """Raise CheckFailed unless `got` matches `expected` (structure, then values)."""
    context = context or Context()
    expected = expected.detach()

    if got is None:
        raise CheckFailed(
            question,
            f"{what} is None",
            [f"expected a tensor of shape {tuple(expected.shape)}"],
            context.none_findings(question),
        )
    if isinstance(got, torch.Tensor) and got.requires_grad:
        got = got.detach()
    tensor = as_tensor(got)
    if tensor is None:
        raise CheckFailed(
            question,
            f"{what} has the wrong type",
            [
                f"expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}: "
                f"{_short_repr(got)}"
            ],
        )
    got = tensor

    if got.device != expected.device:
        raise CheckFailed(
            question,
            f"{what} is on the wrong device",
            [f"expected device {expected.device}, got {got.device}"],
        )
    if not (got.is_floating_point() or got.is_complex()):
        raise CheckFailed(
            question,
            f"{what} has an integer dtype",
            [f"expected a floating-point tensor, got dtype {got.dtype}"],
            [
                Finding(
                    "integer_dtype",
                    "gradients only exist for floating-point tensors: create inputs with a "
                    "float dtype (e.g. torch.tensor([1., 2.]) or dtype=torch.float64).",
                )
            ],
        )

    if got.shape != expected.shape:
        # A 1-element answer for a scalar question (or vice versa) is the same number.
        if got.numel() == expected.numel() == 1:
            got = got.reshape(expected.shape)
        else:
            raise CheckFailed(
                question,
                f"{what} has the wrong shape",
                [f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"],
                diagnose_shape(got, expected, context),
            )

    # Half precision is judged as float32: the course computes in float32 or float64, and a
    # cast to float16 at the end must not loosen the check.
    low = got.dtype in (torch.float16, torch.bfloat16)
    tol = tolerance or tolerance_for(
        torch.float32 if low else got.dtype,
        float(expected.abs().max()) if expected.numel() else 1.0,
    )
    ref = expected.to(torch.float64)
    val = got.to(torch.float64)
    close = tol.close(val, ref)
    if bool(close.all()):
        return

    bad = ~close
    n_bad, n = int(bad.sum()), close.numel()
    diff = (val - ref).abs()
    # Non-finite differences first: they are the most telling element to show.
    masked = torch.where(bad, diff.nan_to_num(nan=math.inf), torch.zeros_like(diff))
    worst = int(masked.reshape(-1).argmax())
    idx = _index(worst, ref.shape)
    at = f" at index {idx}" if idx else ""
    details = [
        f"Mismatched elements: {n_bad} / {n} ({100.0 * n_bad / n:.1f}%)",
        f"Greatest absolute difference: {_fmt(float(diff.reshape(-1)[worst]))}{at} "
        f"(up to {tol.atol_at(worst):.3g} allowed, rtol {tol.rtol:g})",
        f"expected {_fmt(float(ref.reshape(-1)[worst]))}, got "
        f"{_fmt(float(val.reshape(-1)[worst]))}{at}",
    ]
    if context.inputs_note:
        details.append(context.inputs_note)
    findings = diagnose_values(val, ref, tol, context, question)
    if low:
        findings.append(
            Finding(
                "low_precision",
                f"your answer is in {str(got.dtype).replace('torch.', '')}, which keeps about "
                "3 significant digits: compute and return float32 or float64.",
            )
        )
    raise CheckFailed(question, f"{what} differs from the reference", details, findings)


def _short_repr(x: Any, limit: int = 60) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_outputs(
    question: str,
    names: list[str],
    got: Any,
    expected: list[torch.Tensor],
    *,
    contexts: list[Context | None] | None = None,
    tolerances: list[Tolerance | None] | None = None,
    what: str = "the answer",
) -> None:
    """Check a tuple of outputs, one reference each; name outputs returned in the wrong
    order (each matches another's reference) before comparing them one by one."""
    n = len(expected)
    if not isinstance(got, tuple | list) or len(got) != n:
        raise CheckFailed(
            question,
            f"{what} must be a tuple ({', '.join(names)})",
            [
                f"got {type(got).__name__}"
                + (f" of length {len(got)}" if isinstance(got, tuple | list) else "")
            ],
        )
    contexts = contexts or [None] * n
    tolerances = tolerances or [None] * n
    values = [as_tensor(g) for g in got]

    def matches(value, ref, tol) -> bool:
        if value is None or not (value.is_floating_point() or value.is_complex()):
            return False
        if value.shape != ref.shape:
            return False
        t = tol or tolerance_for(value.dtype, float(ref.abs().max()) if ref.numel() else 1.0)
        return bool(t.close(value.detach().to(torch.float64), ref.detach().to(torch.float64)).all())

    for i in range(n):
        for j in range(i + 1, n):
            if (
                not matches(values[i], expected[i], tolerances[i])
                and matches(values[i], expected[j], tolerances[j])
                and matches(values[j], expected[i], tolerances[i])
            ):
                raise CheckFailed(
                    question,
                    f"{what}: {names[i]} and {names[j]} are swapped",
                    [f"return ({', '.join(names)}) in this order"],
                    [
                        Finding(
                            "swapped_outputs",
                            f"your {names[i]} is the expected {names[j]} and the other way "
                            "round: the values are right, the order is not.",
                        )
                    ],
                )
    for name, value, ref, ctx, tol in zip(names, got, expected, contexts, tolerances, strict=True):
        check_close(question, name, value, ref, context=ctx, tolerance=tol)
