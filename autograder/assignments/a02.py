"""Checks for assignment 02_chain_rule.

Each `check_*` takes the student's function(s). With `hidden=False` (the visible test in
the student's notebook) it uses the fixed examples of the notebook; with `hidden=True`
(the hidden test, run at grading time) it draws fresh random inputs and compares with
references computed by torch on the same inputs. Sample points avoid x = 0, where
f(x) = log(x²)·sin(x) + 1/x and its derivative are not defined; negative x is valid.

Each call of the student's function is recorded (:mod:`autograder.checking.methods`) and
held to the method its question names: a formula or a computation by hand may use no
autograd (neither reverse nor forward mode) and no numerical differencing; "by autograd"
needs autograd to run; Q1.2 needs `retain_grad` and one backward pass; Q2's graph must
not come from torch, neither while `f_graph` runs nor from a value it returns that was
made with torch beforehand (:func:`_torch_graph_evidence`).
"""

from __future__ import annotations

import ast
import symtable
from collections.abc import Mapping

import numpy as np
import torch

from .. import graphs
from ..checking import methods
from ..checking.checks import call, passed, require
from ..checking.compare import as_tensor, check_close
from ..checking.diagnose import Context, warning_findings
from ..checking.feedback import CheckFailed, Finding
from ..checking.forbid import function_source, recording
from ..checking.plots import check_curves, plotted_lines
from ..checking.sampling import describe, generator, uniform
from . import defer_hidden

F64 = torch.float64
POLE = ((-0.2, 0.2),)  # keep clear of x = 0

# The methods the questions name (see autograder.checking.methods).
FORMULA = methods.Rule(
    frozenset(),
    frozenset({methods.REVERSE, methods.FORWARD, methods.NUMERICAL}),
    "a formula, worked out by hand without autograd (and without finite differences)",
)
BY_HAND = methods.Rule(
    frozenset(),
    frozenset({methods.REVERSE, methods.FORWARD, methods.NUMERICAL}),
    "every node computed by hand from its local derivatives (no autograd, neither backward "
    "nor forward-mode dual numbers, and no finite differences)",
)
RETAINED = methods.Rule(
    frozenset({methods.REVERSE}),
    frozenset({methods.FORWARD, methods.NUMERICAL}),
    "autograd: one backward, with the gradient of y retained",
)
BY_AUTOGRAD = methods.Rule(
    frozenset({methods.REVERSE, methods.FORWARD}),
    frozenset({methods.NUMERICAL}),
    "f'(x) computed by autograd",
)
PLOTTED = methods.Rule(
    frozenset({methods.REVERSE, methods.FORWARD}),
    frozenset({methods.NUMERICAL}),
    "a plot of your f_prime and of your f_prime_autograd (autograd must run while plotting)",
)


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
    # Both signs and an exact 0 on every draw: at x = 0 the chain-rule factor 3x² is 0, so
    # dz/dy read back as x.grad / 3x² is 0/0 there, while the retained y.grad is cos 4.
    g = generator(q)
    n = int(torch.randint(1, 6, (1,), generator=g))
    x = torch.cat([uniform(g, n, -2.5, -0.1), torch.zeros(1, dtype=F64), uniform(g, n, 0.1, 2.5)])
    x = x[torch.randperm(x.numel(), generator=g)]
    return x, describe(x.numel(), -2.5, 2.5) + ", x = 0 among them"


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
    got, _ = call(q, dz_dx, x.clone(), rule=FORMULA)
    inside = Finding(
        "inner_derivative_inside",
        "your answer has cos of 3x², the inner derivative, where the chain rule keeps the "
        "inner function inside: cos(x³ + 4), multiplied by the inner derivative outside.",
    )
    ctx = Context(
        factors={"3x², the derivative of the inner x³ + 4": 3 * x**2},
        mistakes=[(inside, torch.cos(3 * x**2)), (inside, 3 * x**2 * torch.cos(3 * x**2))],
    )
    check_close(q, "dz/dx = d/dx sin(x³ + 4)", got, _q1_reference(x)[1], context=ctx)
    passed(q, note)


def check_retained(dz_dy_and_dz_dx, *, hidden: bool = False) -> None:
    q = "Q1.2 dz/dy from a retained gradient"
    x, note = _q1_x(q, hidden)
    with recording({"retain_grad"}) as retained:
        result, caught = call(q, dz_dy_and_dz_dx, x.clone(), rule=RETAINED)
    runs = methods.engine_runs(methods.LAST_CALL[q][2])
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
        bool(retained),
        "dz/dy must be the gradient torch retains on y",
        [
            "`dz_dy_and_dz_dx` never called retain_grad(): its dz/dy was not read from y.grad "
            "after one backward"
        ],
        [
            Finding(
                "not_retained",
                "the question asks for the gradient torch keeps on the intermediate y: call "
                "y.retain_grad() before z.backward(torch.ones_like(z)), then return y.grad "
                "and x.grad (not cos(y) by formula, not x.grad divided by 3x², not a second "
                "autograd call for y).",
            )
        ],
    )
    require(
        q,
        runs == 1,
        "compute both gradients in one backward pass",
        [f"autograd ran {runs} times in one call of `dz_dy_and_dz_dx`"],
        [
            Finding(
                "several_passes",
                f"autograd ran {runs} times: one backward computes dz/dy on the way to dz/dx, "
                "and with y.retain_grad() it keeps both. Call backward once.",
            )
        ],
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


GRAPH_ADVICE = {
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


# Names through which a graph is taken from torch instead of written: the package's reader
# of recorded graphs (and 02's reference), and the attributes that walk torch's graph.
_FROM_TORCH = frozenset({"recorded", "recorded_f", "grad_fn", "next_functions"})
_MAX_FOLLOW = 40  # definitions followed from the answer, at most


def _python_only(source: str) -> str:
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _top_level_names(source: str) -> set[str]:
    """Names a cell defines at top level, as the grader's judge lists them (functions,
    classes, plain assignments)."""
    try:
        tree = ast.parse(_python_only(source))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _definitions(fn) -> dict[str, str]:
    """name -> source of the notebook cells that define it at top level.

    In the grader (a function in the student's kernel), the judge's own reading of the
    submitted notebook; in a notebook's kernel, the cells run so far (IPython's `In`).
    Both list a name's cells the same way, so the check decides alike in both places.
    """
    if getattr(type(fn), "_autograder_each", None) is not None:  # the grader's stand-in
        sources = getattr(getattr(fn, "_session", None), "sources", None)
        return dict(sources) if isinstance(sources, dict) else {}
    cells = getattr(fn, "__globals__", {}).get("In")
    out: dict[str, str] = {}
    if isinstance(cells, list):
        for cell in cells:
            if isinstance(cell, str):
                for name in _top_level_names(cell):
                    out[name] = out.get(name, "") + "\n" + cell
    return out


_FILLS = {"update", "setdefault", "__setitem__"}


def _role(node: ast.stmt, name: str) -> str | None:
    """ "bind" if the top-level statement (re)binds `name`, "fill" if it adds to the object
    `name` holds (G[k] = …, G.update(…), or a loop or block doing so), else None."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return "bind" if node.name == name else None
    if isinstance(node, ast.Import | ast.ImportFrom):
        bound = {(a.asname or a.name).split(".")[0] for a in node.names}
        return "bind" if name in bound else None
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(target)):
                return "bind"
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Store):
            return "fill"
        if (
            isinstance(sub, ast.Subscript | ast.Attribute)
            and isinstance(sub.ctx, ast.Store)
            and isinstance(sub.value, ast.Name)
            and sub.value.id == name
        ):
            return "fill"
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in _FILLS
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id == name
        ):
            return "fill"
    return None


def _defining_statements(source: str, name: str) -> list[ast.stmt]:
    """The top-level statements of `source` that make what `name` holds: its last binding
    and the statements that fill it afterwards."""
    try:
        tree = ast.parse(_python_only(source))
    except SyntaxError:
        return []
    found: list[ast.stmt] = []
    for node in tree.body:
        role = _role(node, name)
        if role == "bind":
            found = [node]
        elif role == "fill":
            found.append(node)
    return found


def _global_names(code: str) -> set[str]:
    """The global names a piece of code refers to (not its local variables)."""
    try:
        top = symtable.symtable(code, "<answer>", "exec")
    except SyntaxError:
        return set()
    names: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        names |= {s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced()}
        tables += table.get_children()
    return names


def _uses_of_torch_graph(code: str, definitions: Mapping[str, str]) -> list[str]:
    """The names of `_FROM_TORCH` that `code` uses: as attributes (graphs.recorded,
    t.grad_fn), as imports, or as global names the notebook does not define itself (so
    imported: a variable of the student's own called `recorded` is not one)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _FROM_TORCH:
            found.append(node.attr)
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] in _FROM_TORCH:
            found.append(node.name.split(".")[-1])
    found += sorted((_global_names(code) & _FROM_TORCH) - set(definitions))
    return list(dict.fromkeys(found))


def _torch_graph_evidence(fn) -> list[str]:
    """Where the graph `fn` returns was taken from torch: uses of graphs.recorded,
    a02.recorded_f, grad_fn or next_functions in `fn` itself or in the definitions of the
    global values it returns or uses (followed through the notebook's cells), e.g. a graph
    recorded in another cell and returned by `fn`."""
    name = getattr(fn, "__name__", "f_graph")
    definitions = _definitions(fn)
    text = definitions.get(name, "")
    own = _defining_statements(text, name)
    if not own:  # no notebook cells to read: the function's own source, if any
        text = function_source(fn)
        own = _defining_statements(text, name)
    evidence: list[str] = []
    seen = {name}
    todo = [(name, text, own)]
    while todo and len(seen) <= _MAX_FOLLOW:
        current, text, statements = todo.pop(0)
        for stmt in statements:
            code = ast.unparse(stmt)
            for what in _uses_of_torch_graph(code, definitions):
                evidence.append(
                    f"`{current}`"
                    + ("" if current == name else f" (which `{name}` uses)")
                    + f" is taken from torch (`{what}`): {code.splitlines()[0][:80]}"
                )
            for ref in sorted(_global_names(code) - seen):
                seen.add(ref)
                # a name the notebook assigns or defines, else one bound beside the code
                # that uses it (an import in the same cell)
                where = definitions.get(ref) or text
                found = _defining_statements(where, ref)
                if found:
                    todo.append((ref, where, found))
    return list(dict.fromkeys(evidence))


def _not_by_hand(q: str, details: list[str]) -> CheckFailed:
    return CheckFailed(
        q,
        "write the graph by hand",
        details,
        [
            Finding(
                "graph_not_by_hand",
                "the graph must be the dict you wrote, node by node: not a graph recorded by "
                "torch (graphs.recorded, grad_fn.next_functions), whether read while f_graph "
                "runs or in another cell beforehand.",
            )
        ],
    )


def check_graph(f_graph, *, hidden: bool = False) -> None:
    q = "Q2 graph of f"
    with recording({"log", "sin"}) as computed:
        spec, _ = call(q, f_graph)
    if computed:
        raise _not_by_hand(
            q,
            ["f_graph computed f with torch (it called " + ", ".join(sorted(set(computed))) + ")"],
        )
    evidence = _torch_graph_evidence(f_graph)
    if evidence:
        raise _not_by_hand(q, evidence[:3])
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
            [Finding(f"graph_{c}", GRAPH_ADVICE.get(c, c)) for c in codes],
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


def f_prime_reference(x):
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
    return _two_sided(g, n, 5.0), describe(n, -5, 5, POLE) + ", both signs"


def _plot_grid(q: str, hidden: bool) -> tuple[torch.Tensor, str]:
    if not hidden:
        x = torch.cat([torch.linspace(-6, -0.3, 80), torch.linspace(0.3, 6, 80)]).to(F64)
        return x, "x in [−6, −0.3] ∪ [0.3, 6]"
    g = generator(q)
    n = int(torch.randint(60, 160, (1,), generator=g))
    return _two_sided(g, n, 6.0), describe(n, -6, 6, POLE) + ", both signs"


def _two_sided(g: torch.Generator, n: int, high: float) -> torch.Tensor:
    """n sorted points in [−high, −0.2] ∪ [0.2, high], half of them negative: every draw
    has negative x (where log x, for log(x²) written 2·log x, is NaN) and positive x."""
    low = POLE[0][1]
    k = n // 2
    return torch.cat([uniform(g, k, -high, -low), uniform(g, n - k, low, high)]).sort().values


def known_mistakes(x: torch.Tensor, ref: torch.Tensor) -> list[tuple[Finding, torch.Tensor]]:
    """Wrong versions of f'(x) that students write, each with what went wrong."""
    s, c, lg = torch.sin(x), torch.cos(x), torch.log(x**2)
    product = "(uv)' = u'v + uv' for log(x²)·sin(x): your answer has only one of its two terms"
    return [
        (
            Finding(
                "log_chain_factor",
                "your answer differentiates log(x²) as 1/x² (its log term is sin(x)/x²): the "
                "chain-rule factor, the derivative of the inner x², is missing",
            ),
            ref - 2 / x * s + s / x**2,
        ),
        (
            Finding(
                "reciprocal_sign",
                "your answer differentiates 1/x as +1/x²: the derivative of 1/x = x⁻¹ is "
                "−x⁻², so that term's sign is flipped",
            ),
            ref + 2 / x**2,
        ),
        (Finding("product_rule", product), ref - lg * c),
        (Finding("product_rule", product), ref - 2 / x * s),
        (
            Finding(
                "log_chain_factor",
                "your answer differentiates log(x²) as 1/x, as if it were log x (its log term "
                "is sin(x)/x): apply the chain rule to the inner x²",
            ),
            ref - 2 / x * s + s / x,
        ),
    ]


def check_f_prime(f_prime, *, hidden: bool = False) -> None:
    q = "Q3.1 f_prime (analytic)"
    x, note = _grid(q, hidden)
    got, _ = call(q, f_prime, x.clone(), rule=FORMULA)
    ref = f_prime_reference(x)
    check_close(q, "f'(x)", got, ref, context=Context(mistakes=known_mistakes(x, ref)))
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


def node_values(x: torch.Tensor) -> dict[str, torch.Tensor]:
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    d = b * c
    e = 1 / x
    return {"x": x, "a": a, "b": b, "c": c, "d": d, "e": e, "f": d + e}


def retained_adjoints(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂f/∂node for every node, as torch's retained gradients (one backward)."""
    xr = x.detach().clone().requires_grad_(True)
    values = node_values(xr)
    for t in values.values():
        if not t.is_leaf:
            t.retain_grad()
    values["f"].backward(torch.ones_like(values["f"]))
    return {name: values[name].grad for name in NODES}


def _node_tensor(q: str, what: str, value, like: torch.Tensor) -> None:
    """Fail unless a node's entry is a tensor shaped like x, as the question promises (a
    number such as 1.0 for ∂f/∂f is not: every entry is element-wise)."""
    if isinstance(value, torch.Tensor) and value.shape == like.shape:
        return
    t = as_tensor(value)
    if t is not None and t.dim() == 0:
        raise CheckFailed(
            q,
            f"{what} is a single number, not a tensor shaped like x",
            [f"got {_short(value)}; x has shape {tuple(like.shape)}"],
            [
                Finding(
                    "scalar_node",
                    "every entry of the dict is element-wise, one value per point of x: give "
                    "a tensor shaped like x even where the value is the same everywhere "
                    "(torch.ones_like(x) for ∂f/∂f = 1).",
                )
            ],
        )
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(
            q,
            f"{what} is not a tensor",
            [f"expected a tensor shaped like x {tuple(like.shape)}, got {type(value).__name__}"],
        )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
            _node_tensor(q, what, got[name], refs[name])
            check_close(q, what, got[name], refs[name], context=contexts.get(name))
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
    result, _ = call(q, adjoints, x.clone(), rule=BY_HAND)
    got = _node_dict(q, result, "adjoints")
    refs = retained_adjoints(x)
    v = node_values(x)
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
                        "∂f/∂x has three terms, one per node that uses x: "
                        "ā·∂a/∂x + c̄·∂c/∂x + ē·∂e/∂x",
                    )
                ]
        return []

    _check_nodes(q, "∂f/∂", got, refs, contexts, missing_path)
    passed(q, "every node matches torch's retained gradient; " + note)


def check_f_prime_autograd(f_prime_autograd, *, hidden: bool = False) -> None:
    q = "Q3.3 f_prime_autograd"
    x, note = _grid(q, hidden)
    got, _ = call(q, f_prime_autograd, x.clone(), rule=BY_AUTOGRAD)
    check_close(q, "f'(x) by autograd", got, retained_adjoints(x)["x"], context=Context(y=f(x)))
    passed(q, note)


def check_plot(plot_derivatives, *, hidden: bool = False) -> None:
    q = "Q3.4 plot"
    x, note = _plot_grid(q, hidden)
    # The analytic curve computes cos (autograd's derivative of sin runs in C++ and calls
    # none from Python); the autograd curve runs autograd (the rule requires it).
    with recording({"cos"}) as analytic:
        fig, _ = call(q, plot_derivatives, x.clone(), rule=PLOTTED)
    try:
        check_curves(q, fig, {"f'(x)": _np_f_prime}, rtol=1e-4, atol=1e-4, figure=True)
        _two_curves_on_x(q, plotted_lines(fig), x.numpy(), bool(analytic))
    finally:
        _close(fig)
    passed(q, note)


def _two_curves_on_x(q: str, lines, given: np.ndarray, cos_computed: bool) -> None:
    """Two curves equal to f'(x), on one axes, against the given x, not one computation
    drawn twice."""
    curves = [
        (ax, xs, ys)
        for ax, xs, ys in lines
        if np.all(np.abs(xs) > 1e-9) and np.allclose(ys, _np_f_prime(xs), rtol=1e-4, atol=1e-4)
    ]
    at_zero = any(np.any(np.abs(xs) <= 1e-9) for _, xs, _ in lines)
    require(
        q,
        len(curves) >= 2,
        "the figure should show two overlapping curves of f'(x): analytic and autograd",
        [f"{len(curves)} curve(s) equal f'(x) within rtol 1e-4, atol 1e-4"],
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
    on_x = [
        (ax, ys)
        for ax, xs, ys in curves
        if xs.shape == given.shape and np.allclose(xs, given, rtol=1e-6, atol=1e-9)
    ]
    if len(on_x) < 2:
        _, xs, _ = next(c for c in curves if not any(c[2] is ys for _, ys in on_x))
        raise CheckFailed(
            q,
            "a curve is not plotted against the given x",
            [
                f"a curve of f'(x) has {len(xs)} points from {xs.min():.3g} to {xs.max():.3g}; "
                f"the x given to plot_derivatives has {len(given)} points from "
                f"{given.min():.3g} to {given.max():.3g}"
            ],
            [
                Finding(
                    "own_grid",
                    "the curve is plotted on another grid than the x passed to your "
                    "function: plot against that x.",
                )
            ],
        )
    by_axes: dict[int, list[np.ndarray]] = {}
    for ax, ys in on_x:
        by_axes.setdefault(id(ax), []).append(ys)
    shared = [ys for ys in by_axes.values() if len(ys) >= 2]
    if not shared:
        raise CheckFailed(
            q,
            "the curves are on separate axes",
            [f"the curves of f'(x) are on {len(by_axes)} different axes"],
            [Finding("separate_axes", "the question asks for both curves on one set of axes.")],
        )
    # Both computations: autograd ran (the rule), and the formula's cos was computed, or
    # the curves differ in their last digits as two computations of f' do.
    identical = all(np.array_equal(ys[0], other) for ys in shared for other in ys[1:])
    require(
        q,
        cos_computed or not identical,
        "both curves come from one computation",
        [
            "the two curves are equal to the last digit, and no cos was computed while "
            "plotting: the analytic f_prime was not drawn"
        ],
        [
            Finding(
                "one_function_twice",
                "plot f_prime(x), your formula, and f_prime_autograd(x), by autograd: the "
                "figure shows one of them twice.",
            )
        ],
    )


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
        values = node_values(dual)
        return {n: fwAD.unpack_dual(values[n]).tangent.clone() for n in NODES}


def check_tangents(forward_tangents, *, hidden: bool = False) -> None:
    q = "Q4.1 forward tangents"
    x, note = _grid(q, hidden)
    result, _ = call(q, forward_tangents, x.clone(), rule=BY_HAND)
    got = _node_dict(q, result, "forward_tangents")
    refs = forward_tangents_reference(x)
    contexts = {
        "b": Context(factors={"ȧ = 2x, the tangent of a = x²": 2 * x}),
        "a": Context(factors={"2x": 2 * x}),
    }
    _check_nodes(q, "d/dx of ", got, refs, contexts)
    passed(q, "every node matches torch's forward-mode tangent; " + note)


defer_hidden(globals())
