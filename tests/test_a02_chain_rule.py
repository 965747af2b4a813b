"""02_chain_rule's checks, called directly on the instructor's solution and on mistakes.

The simulated students graded through nbgrader are in tests/students/a02_chain_rule.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwad

from autograder import graphs, notebooks
from autograder.assignments import a02
from autograder.checking.feedback import CheckFailed
from tests.conftest import ROOT

A = "02_chain_rule"


@pytest.fixture(scope="module")
def solution():
    """The source notebook's setup and solution cells run in one namespace."""
    import matplotlib

    matplotlib.use("Agg")
    dtype = torch.get_default_dtype()  # the setup cell sets float64 for the whole process
    source = notebooks.read(ROOT / "source" / A / f"{A}.ipynb")
    ns: dict = {}
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and (
            meta.get("solution") or meta.get("grade_id") in ("setup", "f-definition")
        ):
            code = "\n".join(
                line
                for line in notebooks.strip_markers(cell.source).splitlines()
                if not line.startswith("%")
            )
            exec(compile(code, f"<{meta['grade_id']}>", "exec"), ns)
    yield ns
    torch.set_default_dtype(dtype)


def _float32(fn):
    """The same answer computed in float32."""

    def to32(v):
        if isinstance(v, torch.Tensor):
            return v.float()
        if isinstance(v, dict):
            return {k: to32(t) for k, t in v.items()}
        if isinstance(v, tuple):
            return tuple(to32(t) for t in v)
        return v

    def wrapped(x, *args):
        return to32(fn(x.float(), *args))

    wrapped.__name__ = fn.__name__
    return wrapped


CHECKS = [
    ("check_dz_dx", "dz_dx"),
    ("check_retained", "dz_dy_and_dz_dx"),
    ("check_f_prime", "f_prime"),
    ("check_adjoints", "adjoints"),
    ("check_f_prime_autograd", "f_prime_autograd"),
    ("check_plot", "plot_derivatives"),
    ("check_tangents", "forward_tangents"),
]


@pytest.mark.parametrize("seed", range(8))
def test_solutions_pass_hidden_checks_on_many_draws_in_float64_and_float32(
    solution, monkeypatch, seed, capsys
):
    """Do the instructor's answers pass every hidden check, whatever the draw, also when
    computed in float32 (a correct float32 answer must not fail)?"""
    monkeypatch.setenv("AUTOGRADER_SEED", str(seed))
    for check, name in CHECKS:
        getattr(a02, check)(solution[name], hidden=True)
        getattr(a02, check)(_float32(solution[name]), hidden=True)
    a02.check_graph(solution["f_graph"], hidden=True)
    assert "✗" not in capsys.readouterr().out


def test_graph_copied_from_torch_is_refused(solution):
    """Is a graph read from torch instead of written by hand refused?"""

    def f_graph():
        x = torch.tensor(1.5, requires_grad=True)
        return graphs.recorded(solution["f"](x), normalised=True).to_spec()

    assert graphs.compare(a02.recorded_f(), f_graph()).ok  # it would pass otherwise
    with pytest.raises(CheckFailed) as info:
        a02.check_graph(f_graph)
    assert info.value.codes == ["graph_not_by_hand"]


def test_adjoint_of_x_missing_a_path_is_named(solution):
    def adjoints(x):
        out = solution["adjoints"](x)
        out["x"] = out["a"] * 2 * x + out["c"] * torch.cos(x)  # the path through e is lost
        return out

    with pytest.raises(CheckFailed) as info:
        a02.check_adjoints(adjoints)
    assert info.value.codes == ["missing_path"]
    assert "path through e" in str(info.value)


def test_forgotten_log_chain_factor_in_f_prime_is_named():
    def f_prime(x):
        return torch.sin(x) / x**2 + torch.log(x**2) * torch.cos(x) - 1 / x**2

    with pytest.raises(CheckFailed) as info:
        a02.check_f_prime(f_prime)
    assert info.value.codes[0] == "log_chain_factor"


@pytest.mark.parametrize(
    ("formula", "code"),
    [
        (
            lambda x: torch.sin(x) / x + torch.log(x**2) * torch.cos(x) - 1 / x**2,
            "log_chain_factor",
        ),
        (
            lambda x: 2 / x * torch.sin(x) + torch.log(x**2) * torch.cos(x) + 1 / x**2,
            "reciprocal_sign",
        ),
        (lambda x: 2 / x * torch.sin(x) - 1 / x**2, "product_rule"),
        (lambda x: torch.log(x**2) * torch.cos(x) - 1 / x**2, "product_rule"),
    ],
)
def test_a_wrong_f_prime_is_named_by_the_formula_written(formula, code):
    """Does a plausible wrong f'(x) fail, named after what the student wrote, on the visible
    and the hidden points?"""
    for hidden in (False, True):
        with pytest.raises(CheckFailed) as info:
            a02.check_f_prime(formula, hidden=hidden)
        assert info.value.codes[0] == code, str(info.value)


def test_dz_dx_with_the_inner_derivative_inside_is_named():
    """Is cos(3x²)·3x² (the inner derivative put inside the cos) named as such?"""
    for wrong in (lambda x: 3 * x**2 * torch.cos(3 * x**2), lambda x: torch.cos(3 * x**2)):
        for hidden in (False, True):
            with pytest.raises(CheckFailed) as info:
                a02.check_dz_dx(wrong, hidden=hidden)
            assert info.value.codes[0] == "inner_derivative_inside", str(info.value)


def test_plot_with_one_curve_is_refused(solution):
    import matplotlib.pyplot as plt

    def plot_derivatives(x):
        fig, ax = plt.subplots()
        ax.plot(x, solution["f_prime_autograd"](x), label="f'")
        ax.legend()
        return fig

    with pytest.raises(CheckFailed, match="two overlapping curves"):
        a02.check_plot(plot_derivatives)


# --- the method each question names, on every draw ------------------------------------------

SEEDS = range(6)


def _codes(check, fn, monkeypatch) -> list[list[str] | None]:
    """The codes of the visible check, then of the hidden one under each seed (None: passed)."""
    import matplotlib.pyplot as plt

    out = []
    for seed in (None, *SEEDS):
        kwargs = {}
        if seed is not None:
            monkeypatch.setenv("AUTOGRADER_SEED", str(seed))
            kwargs = {"hidden": True}
        try:
            check(fn, **kwargs)
            out.append(None)
        except CheckFailed as exc:
            out.append(exc.codes)
        plt.close("all")
    return out


def f(x):
    return torch.log(x**2) * torch.sin(x) + 1 / x


def _fp(x):
    return (2 / x) * torch.sin(x) + torch.log(x**2) * torch.cos(x) - 1 / x**2


def _dual_tangent(g, x):
    with fwad.dual_level():
        return fwad.unpack_dual(g(fwad.make_dual(x, torch.ones_like(x)))).tangent


def _central(g, x, h=1e-6):
    return (g(x + h) - g(x - h)) / (2 * h)


def _inner(t):
    return torch.sin(t**3 + 4)


def _backward_grad(x):
    xg = x.detach().clone().requires_grad_(True)
    out = f(xg)
    out.backward(torch.ones_like(out))
    return xg.grad


def retained_by_formula(x):
    leaf = x.detach().clone().requires_grad_(True)
    z = torch.sin(leaf**3 + 4)
    z.backward(torch.ones_like(z))
    return torch.cos(x**3 + 4), leaf.grad


def retained_by_division(x):
    leaf = x.detach().clone().requires_grad_(True)
    torch.sin(leaf**3 + 4).sum().backward()
    return leaf.grad / (3 * x**2), leaf.grad


def retained_two_grads(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    z = torch.sin(y)
    (gy,) = torch.autograd.grad(z.sum(), y, retain_graph=True)
    (gx,) = torch.autograd.grad(z.sum(), leaf)
    return gy, gx


def retained_then_second_pass(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    (gy,) = torch.autograd.grad(z.sum(), y, retain_graph=True)
    z.sum().backward()
    return gy, leaf.grad


def retained_on_callers_x(x):
    x.requires_grad_(True)
    y = x**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, x.grad


def _adjoints_with(x_bar):
    def adjoints(x):
        a, c = x**2, torch.sin(x)
        one = torch.ones_like(x)
        return {"f": one, "d": one, "e": one, "b": c, "c": torch.log(a), "a": c / a, "x": x_bar(x)}

    return adjoints


def adjoints_with_numbers(x):
    a, c = x**2, torch.sin(x)
    return {"f": 1.0, "d": 1.0, "e": 1.0, "b": c, "c": torch.log(a), "a": c / a, "x": _fp(x)}


def tangents_by_dual_numbers(x):
    """The notebook's forward-mode cell, applied to every node."""
    with fwad.dual_level():
        values = a02.node_values(fwad.make_dual(x, torch.ones_like(x)))
        return {k: fwad.unpack_dual(v).tangent.clone() for k, v in values.items()}


def tangents_by_jacfwd(x):
    def j(g):
        return torch.func.vmap(torch.func.jacfwd(g))(x)

    return {
        "x": torch.ones_like(x),
        "a": j(lambda t: t**2),
        "b": j(lambda t: torch.log(t**2)),
        "c": j(torch.sin),
        "d": j(lambda t: torch.log(t**2) * torch.sin(t)),
        "e": j(lambda t: 1 / t),
        "f": j(f),
    }


def tangents_by_difference(x):
    up, down = a02.node_values(x + 1e-6), a02.node_values(x - 1e-6)
    return {k: (up[k] - down[k]) / 2e-6 for k in up}


def tangents_with_number(x):
    a = x**2
    return {
        "x": 1.0,  # ẋ = 1 as a number, not a tensor shaped like x
        "a": 2 * x,
        "b": 2 / x,
        "c": torch.cos(x),
        "d": 2 / x * torch.sin(x) + torch.log(a) * torch.cos(x),
        "e": -1 / a,
        "f": _fp(x),
    }


def _plot(first, second, *, grid=None, one_axes=True):
    import matplotlib.pyplot as plt

    def plot_derivatives(x):
        xs = x if grid is None else grid
        fig, axes = plt.subplots(1, 1 if one_axes else 2)
        left, right = (axes, axes) if one_axes else axes
        left.plot(xs, first(xs), label="analytic")
        right.plot(xs, second(xs), "--", label="autograd")
        for ax in {left, right}:
            ax.legend()
        return fig

    return plot_derivatives


OWN_GRID = torch.cat([torch.linspace(-6, -0.3, 50), torch.linspace(0.3, 6, 50)]).double()

WRONG = {
    # Q1.1: a formula, no AD of either mode, no differences
    "dz_dx by dual numbers": (a02.check_dz_dx, lambda x: _dual_tangent(_inner, x), "used_autograd"),
    "dz_dx by vmap(jacfwd)": (
        a02.check_dz_dx,
        lambda x: torch.func.vmap(torch.func.jacfwd(_inner))(x),
        "used_autograd",
    ),
    "dz_dx by central difference": (
        a02.check_dz_dx,
        lambda x: _central(_inner, x),
        "numerical_difference",
    ),
    "dz_dx by complex step": (
        a02.check_dz_dx,
        lambda x: _inner(x + 1e-20j).imag / 1e-20,
        "numerical_difference",
    ),
    # Q1.2: retain_grad and one backward
    "dz/dy as cos(y)": (a02.check_retained, retained_by_formula, "not_retained"),
    "dz/dy as x.grad / 3x²": (a02.check_retained, retained_by_division, "not_retained"),
    "dz/dy by a second autograd.grad": (a02.check_retained, retained_two_grads, "not_retained"),
    "retain_grad, and a second pass": (
        a02.check_retained,
        retained_then_second_pass,
        "several_passes",
    ),
    "backward on the caller's x": (a02.check_retained, retained_on_callers_x, "changed_input"),
    # Q3.1: a formula
    "f_prime by dual numbers": (a02.check_f_prime, lambda x: _dual_tangent(f, x), "used_autograd"),
    "f_prime by central difference": (
        a02.check_f_prime,
        lambda x: _central(f, x),
        "numerical_difference",
    ),
    # Q3.2: by hand, every node shaped like x
    "x̄ by dual numbers": (
        a02.check_adjoints,
        _adjoints_with(lambda x: _dual_tangent(f, x)),
        "used_autograd",
    ),
    "x̄ by central difference": (
        a02.check_adjoints,
        _adjoints_with(lambda x: _central(f, x)),
        "numerical_difference",
    ),
    "x̄ by backward": (a02.check_adjoints, _adjoints_with(_backward_grad), "used_autograd"),
    "adjoints as numbers": (a02.check_adjoints, adjoints_with_numbers, "scalar_node"),
    # Q3.3: autograd must run
    "f_prime_autograd as the formula": (a02.check_f_prime_autograd, _fp, "method_missing"),
    "f_prime_autograd by central difference": (
        a02.check_f_prime_autograd,
        lambda x: _central(f, x),
        "numerical_difference",
    ),
    # Q3.4: both functions, on the given x, on one axes
    "plot of the formula twice": (a02.check_plot, _plot(_fp, _fp), "method_missing"),
    "plot of autograd twice": (
        a02.check_plot,
        _plot(_backward_grad, _backward_grad),
        "one_function_twice",
    ),
    "plot on a grid of its own": (
        a02.check_plot,
        _plot(_fp, _backward_grad, grid=OWN_GRID),
        "own_grid",
    ),
    "plot on two axes": (
        a02.check_plot,
        _plot(_fp, _backward_grad, one_axes=False),
        "separate_axes",
    ),
    "plot with a difference quotient": (
        a02.check_plot,
        _plot(_fp, lambda x: _central(f, x)),
        "numerical_difference",
    ),
    # Q4.1: by hand; forward-mode AD is not by hand either
    "tangents by dual numbers": (a02.check_tangents, tangents_by_dual_numbers, "used_autograd"),
    "tangents by vmap(jacfwd)": (a02.check_tangents, tangents_by_jacfwd, "used_autograd"),
    "tangents by central difference": (
        a02.check_tangents,
        tangents_by_difference,
        "numerical_difference",
    ),
    "tangent of x as a number": (a02.check_tangents, tangents_with_number, "scalar_node"),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_a_method_the_question_rules_out_fails_on_every_draw(name, monkeypatch):
    """Does an answer reaching the right values by a method its question rules out (or
    breaking its promise about the result) fail the visible check and every hidden draw,
    naming the cause?"""
    check, fn, code = WRONG[name]
    visible, *hidden = _codes(check, fn, monkeypatch)
    assert visible is not None and code in visible, visible
    for codes in hidden:
        assert codes is not None, "a hidden draw passed"
        # x.grad / 3x² is 0/0 at the hidden x = 0, before the method is looked at
        assert code in codes or (fn is retained_by_division and "nonfinite" in codes), codes


def plot_with_sine_for_cosine(x):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    analytic = 2 / x * torch.sin(x) + torch.log(x**2) * torch.sin(x + torch.pi / 2) - 1 / x**2
    ax.plot(x.numpy(), analytic.numpy(), label="analytic")
    ax.plot(x.numpy(), _backward_grad(x).numpy(), ":", label="autograd")
    ax.set_xlabel("x")
    ax.set_ylabel("f'(x)")
    return fig


def retained_by_functional_backward(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    torch.autograd.backward(z, grad_tensors=torch.ones_like(z))
    return y.grad, leaf.grad


RIGHT = {
    "dz_dx with sin(u + π/2) for cos u": (
        a02.check_dz_dx,
        lambda x: 3 * x**2 * torch.sin(x**3 + 4 + torch.pi / 2),
    ),
    "torch.autograd.backward with retain_grad": (
        a02.check_retained,
        retained_by_functional_backward,
    ),
    "f_prime_autograd by dual numbers": (
        a02.check_f_prime_autograd,
        lambda x: _dual_tangent(f, x),
    ),
    "f_prime_autograd by torch.autograd.grad of the sum": (
        a02.check_f_prime_autograd,
        lambda x: torch.autograd.grad(f(xg := x.detach().requires_grad_()).sum(), xg)[0],
    ),
    "f_prime_autograd by functional.jacobian of the sum": (
        a02.check_f_prime_autograd,
        lambda x: torch.autograd.functional.jacobian(lambda t: f(t).sum(), x),
    ),
    "plot with sin(x + π/2) for cos x, numpy arrays, axis labels": (
        a02.check_plot,
        plot_with_sine_for_cosine,
    ),
    "plot of the formula and dual numbers": (
        a02.check_plot,
        _plot(_fp, lambda x: _dual_tangent(f, x)),
    ),
}


@pytest.mark.parametrize("name", list(RIGHT))
def test_an_alternative_the_words_allow_passes_on_every_draw(name, monkeypatch):
    check, fn = RIGHT[name]
    assert _codes(check, fn, monkeypatch) == [None] * (1 + len(SEEDS))


# --- Q2: a graph taken from torch, seen in the notebook's cells ------------------------------

SETUP = (
    "import torch\nfrom autograder import graphs\nfrom autograder.assignments import a02\n\n"
    "def f(x):\n    return torch.log(x**2) * torch.sin(x) + 1 / x\n"
)
HAND = """
def f_graph():
    graph = {"x": ("input",)}
    graph["a"] = ("square", "x")
    graph["b"] = ("log", "a")
    graph["c"] = ("sin", "x")
    graph["d"] = ("mul", "b", "c")
    graph["e"] = ("reciprocal", "x")
    graph["f"] = ("add", "d", "e")
    return graph
"""
LITERAL = (
    "{'x': ('input',), 'a': ('square', 'x'), 'b': ('log', 'a'), 'c': ('sin', 'x'), "
    "'d': ('mul', 'b', 'c'), 'e': ('reciprocal', 'x'), 'f': ('add', 'd', 'e')}"
)


def _kernel(*cells: str) -> dict:
    """The namespace of a notebook kernel that ran `cells`, with IPython's `In`."""
    ns: dict = {"In": [""]}
    for cell in (SETUP, *cells):
        ns["In"].append(cell)
        exec(compile(cell, f"<cell {len(ns['In'])}>", "exec"), ns)
    return ns


GRAPHS_FROM_TORCH = {
    "recorded in another cell": (
        "_x = torch.tensor(1.5, requires_grad=True)\n"
        "G = graphs.recorded(f(_x), {'x': _x}).to_spec()\n",
        "def f_graph():\n    return G\n",
    ),
    "recorded graph object, spec taken inside": (
        "_x = torch.tensor(1.5, requires_grad=True)\n"
        "G = graphs.recorded(f(_x), {'x': _x}, normalised=True)\n\n"
        "def f_graph():\n    return G.to_spec()\n",
    ),
    "the check's own reference": (
        "SPEC = a02.recorded_f().to_spec()\n",
        "def f_graph():\n    return dict(SPEC)\n",
    ),
    "through a helper and a copy": (
        "def build():\n    x = torch.tensor(1.5, requires_grad=True)\n"
        "    return graphs.recorded(f(x), {'x': x}).to_spec()\n\nCACHE = build()\n",
        "def f_graph():\n    return {k: tuple(v) for k, v in CACHE.items()}\n",
    ),
    "an imported reader": (
        "from autograder.graphs import recorded as rec\n"
        "_x = torch.tensor(1.5, requires_grad=True)\nG = rec(f(_x), {'x': _x}).to_spec()\n",
        "def f_graph():\n    return G\n",
    ),
    "a walk of grad_fn": (
        "def walk(fn, out):\n    for child, _ in fn.next_functions:\n"
        "        if child is not None:\n            out.append(type(child).__name__)\n"
        "            walk(child, out)\n    return out\n\n"
        "NODES = walk(f(torch.tensor(1.5, requires_grad=True)).grad_fn, [])\n",
        f"def f_graph():\n    return {LITERAL} if NODES else {{}}\n",
    ),
}


@pytest.mark.parametrize("name", list(GRAPHS_FROM_TORCH))
def test_a_graph_taken_from_torch_beforehand_is_refused(name, monkeypatch):
    """Is a graph read from torch in the notebook's cells, then returned by f_graph,
    refused on every draw, while f_graph itself calls no torch at all?"""
    ns = _kernel(*GRAPHS_FROM_TORCH[name])
    assert graphs.compare(a02.recorded_f(), ns["f_graph"]()).ok  # right, if written by hand
    codes = _codes(a02.check_graph, ns["f_graph"], monkeypatch)
    assert codes == [["graph_not_by_hand"]] * (1 + len(SEEDS))


HAND_WRITTEN = {
    "built in the function": (HAND,),
    "a global dict literal": (f"GRAPH = {LITERAL}\n\ndef f_graph():\n    return GRAPH\n",),
    "a dict of its own called recorded": (
        f"recorded = {LITERAL}\n\ndef f_graph():\n    grad_fn = dict(recorded)\n"
        "    return grad_fn\n",
    ),
    "a global dict filled in a loop": (
        "G = {}\nfor k, v in " + LITERAL + ".items():\n    G[k] = v\n",
        "def f_graph():\n    return dict(G)\n",
    ),
    "checked against torch in its own cell, and after": (
        HAND + "\n_x = torch.tensor(1.5, requires_grad=True)\n"
        "print(graphs.compare(graphs.recorded(f(_x), {'x': _x}), f_graph()).lines())\n",
        "xf = torch.tensor(1.5, requires_grad=True)\n"
        "torch_graph = graphs.recorded(f(xf), {'x': xf})\n",
    ),
}


@pytest.mark.parametrize("name", list(HAND_WRITTEN))
def test_a_hand_written_graph_passes_whatever_else_the_notebook_records(name, monkeypatch):
    ns = _kernel(*HAND_WRITTEN[name])
    assert _codes(a02.check_graph, ns["f_graph"], monkeypatch) == [None] * (1 + len(SEEDS))
