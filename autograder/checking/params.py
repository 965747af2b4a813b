"""Check gradients with respect to parameters, whatever parameters the answer works with.

A parameter-gradient check takes the student's function and the parameters it is given
(named tensors, or an `nn.Module` whose `named_parameters()` it reads), builds the
reference with `torch.func` on detached copies — the caller's tensors and module are
never touched — and compares parameter by parameter, so every message names the
parameter (`weight`, `bias`, `a`, `b`).

Also here: which autograd entry points a function called (`autograd_apis`, to check that
"the same thing three ways" really used three ways) and whether a function left a
module's parameters as it found them (`snapshot` / `require_untouched`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from . import forbid
from .compare import as_tensor, check_close
from .diagnose import Context
from .feedback import CheckFailed, Finding

# --- naming parameters -------------------------------------------------------------------


def named(params: nn.Module | Mapping[str, torch.Tensor] | Sequence[tuple[str, torch.Tensor]]):
    """{name: tensor} for a module (its named_parameters), a mapping, or (name, tensor) pairs."""
    if isinstance(params, nn.Module):
        return dict(params.named_parameters())
    if isinstance(params, Mapping):
        return dict(params)
    return dict(params)


def detached(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies with no history: references are computed on these, never on the caller's."""
    return {k: v.detach().clone() for k, v in params.items()}


# --- references --------------------------------------------------------------------------


def per_sample_module_grads(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{name: (B, *p.shape)}: gradient of sample i's output (summed if several) per parameter.

    `torch.func.functional_call` runs the module with detached copies of its parameters,
    so the module's own tensors, `.grad` fields and values stay as they were.
    """
    params = detached(named(model))
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def output(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (p, buffers), (xi.unsqueeze(0),)).sum()

    return vmap(jacrev(output), in_dims=(None, 0))(params, x.detach())


def per_sample_function_grads(
    f: Callable[..., torch.Tensor],
    x: torch.Tensor,
    params: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """{name: (B, *p.shape)} for `f(x, **params)`: row i is d f(x)[i] / d p.

    `f` is applied to the whole batch and its output flattened to B numbers (one per
    sample), as the student's code does; the reference Jacobian is taken with jacrev.
    """
    names = list(params)
    values = tuple(v.detach().clone() for v in params.values())

    def flat(*vals: torch.Tensor) -> torch.Tensor:
        return f(x.detach(), **dict(zip(names, vals, strict=True))).reshape(-1)

    jac = jacrev(flat, argnums=tuple(range(len(names))))(*values)
    return dict(zip(names, jac, strict=True))


def gradients(
    f: Callable[..., torch.Tensor], inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """{name: d f(**inputs).sum() / d input}, by torch.autograd.grad on detached copies."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    grads = torch.autograd.grad(f(**leaves).sum(), list(leaves.values()), allow_unused=True)
    return {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(leaves.items(), grads, strict=True)
    }


# --- reading the student's answer --------------------------------------------------------


def _names_finding() -> Finding:
    return Finding(
        "parameter_names",
        "key the result by the names of named_parameters() (e.g. 'weight', 'bias'), which is "
        "what torch.func.functional_call and dict(model.named_parameters()) use: "
        "{name: gradient} with one entry per parameter.",
    )


def as_named(
    question: str,
    what: str,
    got: Any,
    names: Sequence[str],
    *,
    where: str = "",
    mapping_only: bool = False,
) -> dict[str, Any]:
    """The answer as {parameter name: value}.

    Accepts a dict keyed by the parameter names (extra keys are ignored) or a tuple/list
    with one entry per parameter, in order. Anything else fails naming the parameters.
    With `mapping_only` (the question promises "a dict {name: tensor} with one entry per
    parameter"), only a dict with exactly those keys is accepted.
    """
    names = list(names)
    listing = ", ".join(f"`{n}`" for n in names)
    if isinstance(got, Mapping):
        keys = [str(k) for k in got]
        missing = [n for n in names if n not in got]
        extra = [k for k in got if k not in names] if mapping_only else []
        if missing or extra:
            raise CheckFailed(
                question,
                f"{what}: no entry for " + ", ".join(f"`{n}`" for n in missing)
                if missing
                else f"{what}: entries for no parameter: " + ", ".join(repr(k) for k in extra),
                [
                    f"expected one entry per parameter, keyed by its name: {listing}"
                    + (f" ({where})" if where else ""),
                    f"got keys: {', '.join(repr(k) for k in keys) or 'none'}",
                ],
                [_names_finding()],
            )
        return {n: got[n] for n in names}
    if mapping_only:
        raise CheckFailed(
            question,
            f"{what}: not a dict",
            [
                f"expected a dict {{name: gradient}} with keys {listing}"
                + (f" ({where})" if where else "")
                + f", got {type(got).__name__}"
            ],
            [_names_finding()],
        )
    if isinstance(got, tuple | list) and not isinstance(got, str):
        if len(got) != len(names):
            raise CheckFailed(
                question,
                f"{what}: expected {len(names)} entries ({listing}), got {len(got)}",
                [f"return one gradient per parameter, in the order {listing}"],
            )
        return dict(zip(names, got, strict=True))
    raise CheckFailed(
        question,
        f"{what} has the wrong type",
        [f"expected a dict {{name: gradient}} with keys {listing}, got {type(got).__name__}"],
    )


def fit_singletons(got: Any, expected: torch.Tensor) -> Any:
    """`got` reshaped to `expected` when they differ only by size-1 dimensions.

    (B, 1, 1) and (B, 1) hold the same numbers for a 1×1 weight; an extra output
    dimension of size 1 from jacrev is not a mistake worth a point.
    """
    t = as_tensor(got) if not isinstance(got, torch.Tensor) else got
    if t is None or t.shape == expected.shape or t.numel() != expected.numel():
        return got
    squeezed = [d for d in t.shape if d != 1]
    if squeezed == [d for d in expected.shape if d != 1]:
        return t.reshape(expected.shape)
    return got


def size_one_findings(got: Any, expected: torch.Tensor) -> list[Finding]:
    """A finding when `got` holds as many numbers as `expected` in a shape that differs
    only by dimensions of size 1 ((B, 2, 1) for (B, 2)): the layout a question promises
    is part of the answer, and this says how to reach it."""
    t = as_tensor(got) if not isinstance(got, torch.Tensor) else got
    if t is None or t.shape == expected.shape or t.numel() != expected.numel():
        return []
    if [d for d in t.shape if d != 1] != [d for d in expected.shape if d != 1]:
        return []
    return [
        Finding(
            "size_one_dims",
            f"your answer holds the right numbers in shape {tuple(t.shape)}, where the "
            f"question asks for {tuple(expected.shape)}: only dimensions of size 1 differ. "
            "jacrev keeps the axis of an output of shape (1,), and a column input gives a "
            "column gradient: differentiate a 0-dimensional output (.sum() or .reshape(())), "
            "or reshape the result to the shape asked.",
        )
    ]


def with_size_one_findings(exc: CheckFailed, got: Any, expected: torch.Tensor) -> CheckFailed:
    """`exc` with the size-1 finding in place of the generic 'wrong_layout' guess."""
    found = size_one_findings(got, expected)
    if found:
        exc.diagnoses[:] = [d for d in exc.diagnoses if d.code != "wrong_layout"] + found
    return exc


def running_sum_findings(got: Any, expected: torch.Tensor, *, what: str) -> list[Finding]:
    """A finding when row i of per-sample results (axis 0) is the sum of the true rows
    0..i: gradients accumulated in .grad across the samples of a loop."""
    t = as_tensor(got) if not isinstance(got, torch.Tensor) else got
    if t is None or t.shape != expected.shape or expected.dim() == 0 or expected.shape[0] < 2:
        return []
    g, r = t.detach().to(torch.float64), expected.detach().to(torch.float64)
    sums = r.cumsum(dim=0)
    scale = float(sums.abs().max()) if sums.numel() else 1.0
    tol = 1e-4 * max(1.0, scale)
    if torch.allclose(sums, r, rtol=1e-4, atol=tol) or not torch.allclose(
        g, sums, rtol=1e-4, atol=tol
    ):
        return []
    return [
        Finding(
            "accumulated_over_samples",
            f"row i of your {what} is the sum of the true rows 0..i: backward adds into the "
            "parameters' .grad, and it was not cleared between samples. Read each sample's "
            "gradient with torch.autograd.grad (it returns them and touches no .grad), or set "
            "the .grad fields to None before each backward and after the last.",
        )
    ]


# --- comparing ---------------------------------------------------------------------------


def check_param_grads(
    question: str,
    what: str,
    got: Mapping[str, Any],
    expected: Mapping[str, torch.Tensor],
    *,
    batch: int = 0,
    inputs_note: str = "",
    hints: Mapping[str, list[Finding]] | None = None,
    singletons: bool = False,
) -> None:
    """Compare each parameter's gradient with the reference; messages name the parameter.

    `what` is a phrase like "per-sample gradient"; the check reads
    "per-sample gradient for `weight` differs from the reference".
    `hints` adds findings for a parameter whose answer is None. Shapes must be the
    reference's, unless `singletons` forgives size-1 dimensions (:func:`fit_singletons`).
    Per-sample rows that are running sums over the batch are named as such.
    """
    for name, ref in expected.items():
        ctx = Context(
            batch=batch,
            inputs_note=inputs_note,
            none_hints=list((hints or {}).get(name, [])),
        )
        answer = fit_singletons(got[name], ref) if singletons else got[name]
        try:
            check_close(question, f"{what} for `{name}`", answer, ref, context=ctx)
        except CheckFailed as exc:
            with_size_one_findings(exc, answer, ref)
            if batch:
                exc.diagnoses += running_sum_findings(answer, ref, what="per-sample gradient")
            raise


# --- the module is left as it was --------------------------------------------------------


def snapshot(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{name: (the parameter object, a copy of its values)} before a student's call."""
    return {k: (p, p.detach().clone()) for k, p in model.named_parameters()}


def require_untouched(question: str, model: nn.Module, before: Mapping[str, Any]) -> None:
    """Fail, naming the parameter, if the call replaced or changed a module parameter."""
    now = dict(model.named_parameters())
    for name, (obj, values) in before.items():
        current = now.get(name)
        if current is not obj:
            raise CheckFailed(
                question,
                f"your function replaced the model's parameter `{name}`",
                [
                    "after the call, model."
                    + name
                    + " is another tensor than before (or is gone): the model the caller "
                    "passed was changed"
                ],
                [
                    Finding(
                        "parameters_replaced",
                        "do not assign new tensors to a module's parameters to differentiate "
                        "with respect to them: gradients then land on tensors the caller never "
                        "sees. Run the module with your own tensors through "
                        "torch.func.functional_call(model, params, (x,)) instead.",
                    )
                ],
            )
        if current.shape != values.shape or not torch.equal(current.detach(), values):
            raise CheckFailed(
                question,
                f"your function changed the values of the model's parameter `{name}`",
                ["computing a gradient must leave the parameters' values as they were"],
                [
                    Finding(
                        "parameters_modified",
                        "an in-place update (p -= …, p.copy_(…), an optimizer step) changed "
                        "the parameter; compute gradients without updating anything.",
                    )
                ],
            )


# --- which autograd entry points ran -----------------------------------------------------

# Public autograd entry points by the name a student knows them by: (module, attribute).
_ENTRY_POINTS: dict[str, list[tuple[Any, str]]] = {
    "backward": [(torch.Tensor, "backward"), (torch.autograd, "backward")],
    "torch.autograd.grad": [(torch.autograd, "grad")],
    "torch.autograd.functional.jacobian": [(torch.autograd.functional, "jacobian")],
    "torch.autograd.functional.hessian": [(torch.autograd.functional, "hessian")],
    "torch.func.grad": [(torch.func, "grad")],
    "torch.func.jacrev": [(torch.func, "jacrev")],
    "torch.func.jacfwd": [(torch.func, "jacfwd")],
    "torch.func.hessian": [(torch.func, "hessian")],
    "torch.func.vmap": [(torch.func, "vmap"), (torch, "vmap")],
}
# Entry points that return a function: calls of that function belong to the entry point.
_TRANSFORMS = {
    "torch.func.grad",
    "torch.func.jacrev",
    "torch.func.jacfwd",
    "torch.func.hessian",
    "torch.func.vmap",
}


class _Depth(threading.local):
    level = 0


# Recorded after "torch.autograd.grad" when that call had is_grads_batched=True.
BATCHED_GRAD = "torch.autograd.grad(is_grads_batched=True)"
_IS_GRADS_BATCHED_POSITION = 7  # grad(outputs, inputs, grad_outputs, retain_graph,
# create_graph, only_inputs, allow_unused, is_grads_batched, ...)


def _wrapper(name: str, original: Callable, hits: list[str], depth: _Depth) -> Callable:
    def wrapper(*args, **kwargs):
        # Only the outermost call counts: jacobian runs torch.autograd.grad inside, and
        # backward runs torch.autograd.backward, which the student did not call.
        if depth.level == 0:
            hits.append(name)
            if name == "torch.autograd.grad" and (
                kwargs.get("is_grads_batched")
                or (len(args) > _IS_GRADS_BATCHED_POSITION and args[_IS_GRADS_BATCHED_POSITION])
            ):
                hits.append(BATCHED_GRAD)
        depth.level += 1
        try:
            result = original(*args, **kwargs)
        finally:
            depth.level -= 1
        if name in _TRANSFORMS and callable(result):
            return _nested(result, depth)
        return result

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(original, "__name__", name)
    wrapper.__doc__ = getattr(original, "__doc__", None)
    return wrapper


def _nested(fn: Callable, depth: _Depth) -> Callable:
    def transformed(*args, **kwargs):
        depth.level += 1
        try:
            return fn(*args, **kwargs)
        finally:
            depth.level -= 1

    return transformed


@contextlib.contextmanager
def autograd_apis(*functions: Callable) -> Iterator[list[str]]:
    """Record the autograd entry points called (outermost calls only) while active.

    Catches calls however the name was reached: module attributes (`torch.autograd.grad`,
    `Tensor.backward`) are swapped for recorders, and so are names in the given functions'
    globals that are bound to an entry point (`from torch.func import jacrev` made before
    the check ran). Everything is restored on exit.
    """
    hits: list[str] = []
    depth = _Depth()
    originals: dict[int, tuple[str, Callable]] = {}
    saved: list[tuple[Any, str, Any]] = []

    def swap(owner: Any, attr: str, value: Any) -> None:
        saved.append(
            (owner, attr, owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr))
        )
        setattr(owner, attr, value)

    wrappers: dict[int, Callable] = {}
    for name, places in _ENTRY_POINTS.items():
        for owner, attr in places:
            original = getattr(owner, attr, None)
            if original is None:
                continue
            if id(original) not in wrappers:
                wrappers[id(original)] = _wrapper(name, original, hits, depth)
                originals[id(original)] = (name, original)
            swap(owner, attr, wrappers[id(original)])
    for fn in functions:
        scope = getattr(fn, "__globals__", None)
        if not isinstance(scope, dict):
            continue
        for key, value in list(scope.items()):
            if id(value) in wrappers and originals[id(value)][1] is value:
                saved.append((scope, key, value))
                scope[key] = wrappers[id(value)]
    try:
        # A student's function in another process (trusted grading) records there too.
        with forbid.watch("apis", frozenset(), hits):
            yield hits
    finally:
        for owner, attr, value in reversed(saved):
            if isinstance(owner, dict):
                owner[attr] = value
            else:
                setattr(owner, attr, value)


def entry_point(hit: str) -> str:
    """The entry point a hit of :func:`autograd_apis` stands for (a marker such as
    :data:`BATCHED_GRAD` belongs to `torch.autograd.grad`)."""
    return hit.split("(", 1)[0]


def require_api(
    question: str,
    name: str,
    used: list[str],
    asked: str | set[str],
    *,
    how: str,
    only: bool = False,
) -> None:
    """Fail unless one of the `asked` entry points was called by `name`; with `only`,
    also if it called another autograd entry point besides (part of the answer computed
    another way)."""
    asked = {asked} if isinstance(asked, str) else set(asked)
    called = [entry_point(u) for u in used]
    seen = ", ".join(dict.fromkeys(called)) or "no autograd function"
    if not asked & set(called):
        summary = f"`{name}` does not use {how}"
    elif only and set(called) - asked:
        others = ", ".join(dict.fromkeys(c for c in called if c not in asked))
        summary = f"`{name}` also uses {others}, where {how} was asked"
    else:
        return
    raise CheckFailed(
        question,
        summary,
        [f"autograd entry points your function called: {seen}"],
        [
            Finding(
                "wrong_api",
                f"this question asks for the gradient computed with {how}; the values may be "
                "right, but the point is to practise that way of asking torch.",
            )
        ],
    )
