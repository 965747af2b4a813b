"""Checks for assignment 02_chain_rule.

Each `check_*` takes the student's function(s). With `hidden=False` (the visible test in
the student's notebook) it uses the fixed examples of the notebook; with `hidden=True`
(the hidden test, run at grading time) it draws fresh random inputs and compares with
references computed by torch on the same inputs. Sample points avoid x = 0, where
f(x) = log(x²)·sin(x) + 1/x and its derivative are not defined; negative x is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from .. import graphs
from ..checking.checks import call, passed, require
from ..checking.compare import as_tensor, check_close
from ..checking.diagnose import Context, warning_findings
from ..checking.feedback import CheckFailed, Finding
from ..checking.forbid import autograd_calls, recording
from ..checking.plots import _lines, check_curves
from ..checking.sampling import describe, generator, uniform
from . import defer_hidden

F64 = torch.float64
POLE = ((-0.2, 0.2),)  # keep clear of x = 0


def _no_autograd(q: str, fn: Callable, *args):
    """Call `fn(*args)`; fail if it ran the autograd engine (an analytic answer must not)."""
    with autograd_calls() as engine:
        result, caught = call(q, fn, *args)
    require(
        q,
        not engine,
        "this answer must be worked out by hand, without autograd",
        [
            "write the derivative as a formula; autograd (backward, torch.autograd.grad, "
            "torch.func) was called while it ran"
        ],
        [Finding("used_autograd", "the analytic answer called autograd")],
    )
    return result, caught


def _pair(q: str, result, what: str) -> None:
    require(
        q,
        isinstance(result, tuple | list) and len(result) == 2,
        f"return a pair {what}",
        [f"got {type(result).__name__}"],
    )


# --- Q1 chain rule with an intermediate ---------------------------------------------------


def _q1_x(q: str, hidden: bool) -> tuple[torch.Tensor, str]:
    if not hidden:
        return torch.tensor([7.0, 0.5, -1.2], dtype=F64), "x = (7, 0.5, −1.2); dz/dx(7) ≈ 21.384"
    g = generator(q)
    n = int(torch.randint(3, 12, (1,), generator=g))
    return uniform(g, n, -2.5, 2.5), describe(n, -2.5, 2.5)


def _q1_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dz/dy, dz/dx) for y = x³ + 4, z = sin(y), from torch with y's gradient retained."""
    xr = x.detach().clone().requires_grad_(True)
    y = xr**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, xr.grad


def check_dz_dx(dz_dx, *, hidden: bool = False) -> None:
    q = "Q1.1 dz_dx (analytic)"
    x, note = _q1_x(q, hidden)
    got, _ = _no_autograd(q, dz_dx, x.clone())
    ctx = Context(factors={"3x², the derivative of the inner x³ + 4": 3 * x**2})
    check_close(q, "dz/dx = d/dx sin(x³ + 4)", got, _q1_reference(x)[1], context=ctx)
    passed(q, note)


def check_retained(dz_dy_and_dz_dx, *, hidden: bool = False) -> None:
    q = "Q1.2 dz/dy from a retained gradient"
    x, note = _q1_x(q, hidden)
    with autograd_calls() as engine:
        result, caught = call(q, dz_dy_and_dz_dx, x.clone())
    _pair(q, result, "(dz_dy, dz_dx)")
    # Reading .grad of a non-leaf without retain_grad() gives None and a torch warning;
    # `call` caught the warning (it must not reach stderr), here it becomes the diagnosis.
    hints = warning_findings(caught)
    dz_dy, dz_dx = _q1_reference(x)
    check_close(q, "dz/dy (y.grad)", result[0], dz_dy, context=Context(none_hints=hints))
    ctx = Context(factors={"3x², dy/dx": 3 * x**2}, none_hints=hints)
    check_close(q, "dz/dx (x.grad)", result[1], dz_dx, context=ctx)
    require(
        q,
        bool(engine),
        "compute both with autograd",
        ["call y.retain_grad() before backward, then read y.grad and x.grad"],
    )
    passed(q, note)


# --- Q2 the dependency graph --------------------------------------------------------------


def f(x: torch.Tensor) -> torch.Tensor:
    """The function of Q2–Q4: log(x²)·sin(x) + 1/x."""
    return torch.log(x**2) * torch.sin(x) + 1 / x


def recorded_f() -> graphs.Graph:
    """The graph torch records for f, in normal form with nodes named after their operations
    (read before any backward, so the constant of 1/x is known)."""
    x = torch.tensor([1.5], dtype=F64, requires_grad=True)
    return graphs.recorded(f(x), {"x": x}, normalised=True)


_GRAPH_ADVICE = {
    "missing_node": "a step of f is not in your graph: every operation torch performs is a "
    "node of its own (1/x is one, x² is one).",
    "extra_node": "your graph has a node torch does not record: the graph of f holds the "
    "operations that compute f, nothing else (no derivatives).",
    "reversed_edge": "an edge points the wrong way: it goes from an operation's input to the "
    "operation (x → square → log: the log is taken of the square).",
    "missing_edge": "a node does not take the input it should: check what each operation is "
    "applied to.",
    "extra_edge": "a node takes an input it should not: check what each operation is applied to.",
    "wrong_inputs": "a node has its inputs in the wrong order or a wrong constant.",
}


def check_graph(f_graph, *, hidden: bool = False) -> None:
    q = "Q2 graph of f"
    with recording({"log", "sin"}) as computed:
        spec, _ = call(q, f_graph)
    require(
        q,
        not computed,
        "write the graph by hand",
        ["f_graph computed f with torch (it called " + ", ".join(sorted(set(computed))) + ")"],
        [Finding("graph_not_by_hand", "return the dict you wrote, without running f")],
    )
    try:
        mine = graphs.from_spec(spec)
    except graphs.GraphFormatError as exc:
        raise CheckFailed(
            q,
            "your graph cannot be read",
            [str(exc)],
            [
                Finding(
                    "graph_format",
                    "write the graph as {name: (operation, *inputs)}, e.g. "
                    "{'x': ('input',), 's': ('sin', 'x'), ...}",
                )
            ],
        ) from None
    diff = graphs.compare(recorded_f(), mine)
    if not diff.ok:
        codes = list(dict.fromkeys(diff.codes))
        raise CheckFailed(
            q,
            "your graph differs from the graph torch records for f",
            diff.lines()[:10],
            [Finding(f"graph_{c}", _GRAPH_ADVICE.get(c, c)) for c in codes],
        )
    if not hidden:
        passed(q, "same nodes and edges as torch's graph")
        return
    # Hidden: the graph must also compute f, on fresh points.
    g = generator(q)
    n = int(torch.randint(5, 15, (1,), generator=g))
    x = uniform(g, n, -4.0, 4.0, avoid=POLE)
    values = graphs.evaluate(mine, x)
    outputs = [s for s in mine.outputs if mine.nodes[s].op not in ("input", "const")]
    require(q, len(outputs) == 1, "your graph must end in one output node", [str(outputs)])
    check_close(q, f"your graph's output '{outputs[0]}'", values[outputs[0]], f(x))
    passed(q, "same nodes and edges as torch's graph, and it computes f; " + describe(n, -4, 4))


# --- Q3 the chain rule on the graph -------------------------------------------------------


def _f_prime(x):
    return 2 / x * torch.sin(x) + torch.log(x**2) * torch.cos(x) - 1 / x**2


def _np_f_prime(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 / x * np.sin(x) + np.log(x**2) * np.cos(x) - 1 / x**2


def _grid(q: str, hidden: bool) -> tuple[torch.Tensor, str]:
    if not hidden:
        x = torch.tensor([-4.0, -2.5, -1.0, -0.5, 0.5, 1.0, 2.5, 4.0], dtype=F64)
        return x, "x = ±0.5, ±1, ±2.5, ±4"
    g = generator(q)
    n = int(torch.randint(10, 40, (1,), generator=g))
    return uniform(g, n, -5.0, 5.0, avoid=POLE).sort().values, describe(n, -5, 5, POLE)


def _plot_grid(q: str, hidden: bool) -> tuple[torch.Tensor, str]:
    if not hidden:
        x = torch.cat([torch.linspace(-6, -0.3, 80), torch.linspace(0.3, 6, 80)]).to(F64)
        return x, "x in [−6, −0.3] ∪ [0.3, 6]"
    g = generator(q)
    n = int(torch.randint(60, 160, (1,), generator=g))
    return uniform(g, n, -6.0, 6.0, avoid=POLE).sort().values, describe(n, -6, 6, POLE)


def _mistakes(x: torch.Tensor, ref: torch.Tensor) -> list[tuple[Finding, torch.Tensor]]:
    """Wrong versions of f'(x) that students write, each with what went wrong."""
    s, c, lg = torch.sin(x), torch.cos(x), torch.log(x**2)
    product = (
        "product_rule",
        "(uv)' = u'v + uv' for log(x²)·sin(x): a term of the product rule is missing",
    )
    return [
        (
            Finding(
                "log_chain_factor",
                "d/dx log(x²) is (1/x²)·2x = 2/x: the chain-rule factor 2x of the inner x² is "
                "missing (you have sin(x)/x²)",
            ),
            ref - 2 / x * s + s / x**2,
        ),
        (
            Finding("reciprocal_sign", "d/dx (1/x) = −1/x²: that term's sign is flipped"),
            ref + 2 / x**2,
        ),
        (Finding(*product), ref - lg * c),
        (Finding(*product), ref - 2 / x * s),
    ]


def check_f_prime(f_prime, *, hidden: bool = False) -> None:
    q = "Q3.1 f_prime (analytic)"
    x, note = _grid(q, hidden)
    got, _ = _no_autograd(q, f_prime, x.clone())
    ref = _f_prime(x)
    check_close(q, "f'(x)", got, ref, context=Context(mistakes=_mistakes(x, ref)))
    passed(q, note)


NODES = {  # name -> what it is, in the order the adjoints are computed (reverse)
    "f": "f = d + e",
    "d": "d = b·c",
    "e": "e = 1/x",
    "b": "b = log a",
    "c": "c = sin x",
    "a": "a = x²",
    "x": "x, the input",
}


def _node_values(x: torch.Tensor) -> dict[str, torch.Tensor]:
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    d = b * c
    e = 1 / x
    return {"x": x, "a": a, "b": b, "c": c, "d": d, "e": e, "f": d + e}


def retained_adjoints(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂f/∂node for every node, as torch's retained gradients (one backward)."""
    xr = x.detach().clone().requires_grad_(True)
    values = _node_values(xr)
    for t in values.values():
        if not t.is_leaf:
            t.retain_grad()
    values["f"].backward(torch.ones_like(values["f"]))
    return {name: values[name].grad for name in NODES}


def _as_node_tensor(value, like: torch.Tensor):
    """A number or 0-d tensor given for a whole batch (∂f/∂f = 1) stands for every point."""
    t = as_tensor(value)
    if t is not None and t.dim() == 0 and like.dim() > 0:
        return t.expand_as(like)
    return value


def _node_dict(q: str, result, name: str) -> Mapping:
    require(
        q,
        isinstance(result, Mapping),
        f"{name} must return a dict {{node name: tensor}}",
        [f"got {type(result).__name__}"],
    )
    missing = [n for n in NODES if n not in result]
    require(
        q,
        not missing,
        f"{name} has no entry for node(s) {', '.join(missing)}",
        ["the nodes are " + "; ".join(NODES.values())],
    )
    return result


def _check_nodes(q: str, kind: str, got: Mapping, refs, contexts, extra=None) -> None:
    """Check every node; one failure message names every wrong node."""
    failures: list[tuple[str, CheckFailed]] = []
    for name, meaning in NODES.items():
        what = f"{kind}{name} (node {meaning})"
        try:
            check_close(
                q,
                what,
                _as_node_tensor(got[name], refs[name]),
                refs[name],
                context=contexts.get(name),
            )
        except CheckFailed as exc:
            if extra:
                exc.diagnoses += extra(name, got[name])
            failures.append((name, exc))
    if not failures:
        return
    details, findings = [], []
    for name, exc in failures:
        details.append(f"node {name}: {exc.summary}")
        details += [f"  {line}" for line in exc.details[:3]]
        findings += [Finding(d.code, f"node {name}: {d.message}") for d in exc.diagnoses]
    names = ", ".join(f"{name} ({NODES[name]})" for name, _ in failures)
    raise CheckFailed(q, f"{kind}node is wrong for {names}", details, findings)


def check_adjoints(adjoints, *, hidden: bool = False) -> None:
    q = "Q3.2 adjoints"
    x, note = _grid(q, hidden)
    result, _ = _no_autograd(q, adjoints, x.clone())
    got = _node_dict(q, result, "adjoints")
    refs = retained_adjoints(x)
    v = _node_values(x)
    contexts = {
        "a": Context(factors={"∂b/∂a = 1/a (the derivative of log a)": 1 / v["a"]}),
        "b": Context(factors={"∂d/∂b = c = sin x": v["c"]}),
        "c": Context(factors={"∂d/∂c = b = log x²": v["b"]}),
    }
    paths = {  # the three edges leaving x, each one term of ∂f/∂x
        "a (x → a = x²)": refs["a"] * 2 * x,
        "c (x → c = sin x)": refs["c"] * torch.cos(x),
        "e (x → e = 1/x)": refs["e"] * (-1 / x**2),
    }

    def missing_path(name: str, value) -> list[Finding]:
        t = as_tensor(value)
        if name != "x" or t is None or t.shape != x.shape:
            return []
        for path, term in paths.items():
            if torch.allclose(t.to(F64), refs["x"] - term, rtol=1e-6, atol=1e-8):
                return [
                    Finding(
                        "missing_path",
                        f"the path through {path} is missing: x feeds a, c and e, so "
                        "∂f/∂x is the sum ā·2x + c̄·cos x + ē·(−1/x²)",
                    )
                ]
        return []

    _check_nodes(q, "∂f/∂", got, refs, contexts, missing_path)
    passed(q, "every node matches torch's retained gradient; " + note)


def check_f_prime_autograd(f_prime_autograd, *, hidden: bool = False) -> None:
    q = "Q3.3 f_prime_autograd"
    x, note = _grid(q, hidden)
    got, _ = call(q, f_prime_autograd, x.clone())
    check_close(q, "f'(x) by autograd", got, retained_adjoints(x)["x"], context=Context(y=f(x)))
    passed(q, note)


def check_plot(plot_derivatives, *, hidden: bool = False) -> None:
    q = "Q3.4 plot"
    x, note = _plot_grid(q, hidden)
    fig, _ = call(q, plot_derivatives, x.clone())
    try:
        check_curves(q, fig, {"f'(x)": _np_f_prime}, rtol=1e-4, atol=1e-4)
        lines = _lines(fig)
        overlap = [
            xs
            for _, xs, ys in lines
            if np.all(np.abs(xs) > 1e-9) and np.allclose(ys, _np_f_prime(xs), rtol=1e-4, atol=1e-4)
        ]
        at_zero = any(np.any(np.abs(xs) <= 1e-9) for _, xs, _ in lines)
        require(
            q,
            len(overlap) >= 2,
            "the figure should show two overlapping curves of f'(x): analytic and autograd",
            [f"{len(overlap)} curve(s) equal f'(x) within rtol 1e-4, atol 1e-4"],
            [
                Finding(
                    "grid_at_zero",
                    "a curve is plotted at x = 0, where f' is not defined: plot on the grid "
                    "you are given",
                )
            ]
            if at_zero
            else [],
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


# --- Q4 forward accumulation --------------------------------------------------------------


def forward_tangents_reference(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂node/∂x for every node, from torch's forward-mode AD (dual numbers)."""
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        dual = fwAD.make_dual(x.detach().clone(), torch.ones_like(x))
        values = _node_values(dual)
        return {n: fwAD.unpack_dual(values[n]).tangent.clone() for n in NODES}


def check_tangents(forward_tangents, *, hidden: bool = False) -> None:
    q = "Q4.1 forward tangents"
    x, note = _grid(q, hidden)
    result, _ = _no_autograd(q, forward_tangents, x.clone())
    got = _node_dict(q, result, "forward_tangents")
    refs = forward_tangents_reference(x)
    contexts = {
        "b": Context(factors={"ȧ = 2x, the tangent of a = x²": 2 * x}),
        "a": Context(factors={"2x": 2 * x}),
    }
    _check_nodes(q, "d/dx of ", got, refs, contexts)
    passed(q, "every node matches torch's forward-mode tangent; " + note)


defer_hidden(globals())
