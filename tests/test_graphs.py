"""Unit tests for autograder.graphs: reading torch's graph, the normal form, comparing, drawing.

Fast (no nbgrader). The property tests build one random expression twice — once with
torch, in a randomly chosen spelling of each operation, and once as a hand-written graph
in another spelling, with random names and node order — and ask that the two compare equal.
"""

from __future__ import annotations

import operator

import matplotlib
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder import graphs
from autograder.graphs import Const, GraphFormatError, Node

matplotlib.use("Agg")

F64 = torch.float64

F_GRAPH = {
    "x": ("input",),
    "a": ("square", "x"),
    "b": ("log", "a"),
    "c": ("sin", "x"),
    "d": ("mul", "b", "c"),
    "e": ("reciprocal", "x"),
    "f": ("add", "d", "e"),
}


def _x(*values: float) -> torch.Tensor:
    return torch.tensor(values or (1.5, -2.0), dtype=F64, requires_grad=True)


# --- reading torch's graph ----------------------------------------------------------------


def test_recorded_graph_of_f_is_read_as_torch_built_it():
    """Does the reader see 1/x as reciprocal times the constant 1, and x**2 as pow(x, 2)?"""
    x = _x()
    g = graphs.recorded(torch.log(x**2) * torch.sin(x) + 1 / x, {"x": x})
    assert g.nodes == {
        "x": Node("input"),
        "pow": Node("pow", ("x", Const(2.0))),
        "log": Node("log", ("pow",)),
        "sin": Node("sin", ("x",)),
        "mul": Node("mul", ("log", "sin")),
        "reciprocal": Node("reciprocal", ("x",)),
        "mul_2": Node("mul", ("reciprocal", Const(1.0))),
        "add": Node("add", ("mul", "mul_2")),
    }
    assert g.outputs == ["add"]
    assert graphs.recorded(torch.log(x**2) * torch.sin(x) + 1 / x, normalised=True).to_spec() == {
        "x": ("input",),
        "square": ("square", "x"),
        "log": ("log", "square"),
        "sin": ("sin", "x"),
        "mul": ("mul", "log", "sin"),
        "reciprocal": ("reciprocal", "x"),
        "add": ("add", "mul", "reciprocal"),
    }


def test_leaves_are_named_through_accumulate_grad_variable():
    """Are two leaves told apart by the tensor behind AccumulateGrad, whatever their order?"""
    a, b = _x(1.0), _x(2.0)
    g = graphs.recorded(torch.sin(b) * a, {"a": a, "b": b})
    assert g.leaves == ["b", "a"] or g.leaves == ["a", "b"]
    assert g.nodes["sin"] == Node("sin", ("b",))
    assert sorted(g.nodes["mul"].inputs) == ["a", "sin"]
    unnamed = graphs.recorded(torch.sin(b) * a)
    assert sorted(unnamed.leaves) == ["x0", "x1"]


def test_constants_torch_does_not_track_are_none_or_their_saved_value():
    """Is a Python number a constant input, with its value when torch saved it?"""
    x = _x()
    assert graphs.recorded(x + 1).nodes["add"] == Node("add", ("x", Const(None)))
    assert graphs.recorded(2 * x).nodes["mul"] == Node("mul", ("x", Const(2.0)))
    assert graphs.recorded(3 - x).nodes["sub"] == Node("sub", (Const(None), "x"))
    assert graphs.recorded(2**x).nodes["pow"] == Node("pow", (Const(2.0), "x"))
    assert graphs.recorded(x).nodes == {"x": Node("input")}
    with pytest.raises(GraphFormatError, match="no graph"):
        graphs.recorded(torch.ones(2))


@pytest.mark.parametrize(
    "spelling",
    [
        lambda x: torch.log(x**2) * torch.sin(x) + 1 / x,
        lambda x: torch.log(x * x) * torch.sin(x) + x**-1,
        lambda x: x.square().log() * x.sin() + x.reciprocal(),
        lambda x: torch.reciprocal(x) + torch.sin(x) * torch.log(torch.pow(x, 2)),
        lambda x: torch.log(x.pow(2)) * torch.sin(x) + torch.div(1, x),
        lambda x: (x**2).clone().log() * torch.sin(x) + 1.0 / x,
    ],
)
def test_every_spelling_of_f_normalises_to_the_hand_written_graph(spelling):
    x = _x()
    diff = graphs.compare(graphs.recorded(spelling(x)), F_GRAPH)
    assert diff.ok, diff.lines()
    assert diff.matched["x"] == "x"


# --- the hand-written format --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([("input",)], "non-empty dict"),
        ({}, "non-empty dict"),
        ({"a": ("log",)}, "node 'a': 'log' takes one input, got 0"),
        ({"a": ("sin", "b")}, "no node is named 'b'"),
        ({"x": "input", "a": ("logarithm", "x")}, "unknown operation 'logarithm'"),
        ({"a": ("sin", "b"), "b": ("cos", "a")}, "cycle: a → b → a"),
        ({"x": "input", "a": ("pow", "x")}, "'pow' takes two inputs"),
        ({"x": "input", "a": ("add", "x", [1])}, "an input is a node name or a number"),
        ({"x": "input", "c": ("const", "x")}, "'const' takes one number"),
        ({"x": 3}, "write (operation, *inputs)"),
    ],
)
def test_unreadable_graphs_say_which_node_and_why(spec, message):
    with pytest.raises(GraphFormatError) as info:
        graphs.from_spec(spec)
    assert message in str(info.value)


def test_aliases_constants_and_bare_input_strings_are_read():
    g = graphs.from_spec({"t": "leaf", "one": ("constant", 1), "r": ("/", "one", "t")})
    assert g.nodes["t"] == Node("input")
    assert g.nodes["r"] == Node("div", ("one", "t"))
    assert graphs.normalise(g).to_spec() == {"t": ("input",), "r": ("reciprocal", "t")}


# --- comparing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        F_GRAPH,
        {  # negative power, self-multiply, student's own names, reversed order
            "out": ("+", "inv", "prod"),
            "inv": ("pow", "t", -1),
            "prod": ("*", "s", "lg"),
            "s": ("sin", "t"),
            "lg": ("ln", "sq"),
            "sq": ("mul", "t", "t"),
            "t": "input",
        },
        {  # 1 as a named constant, x**2 as a power
            "x": "input",
            "one": ("const", 1),
            "r": ("div", "one", "x"),
            "p": ("pow", "x", 2),
            "l": ("log", "p"),
            "s": ("sin", "x"),
            "m": ("mul", "s", "l"),
            "y": ("add", "r", "m"),
        },
        {  # torch's own spelling, with the multiply-by-1
            "x": "input",
            "a": ("pow", "x", 2.0),
            "b": ("log", "a"),
            "c": ("sin", "x"),
            "d": ("mul", "b", "c"),
            "r": ("reciprocal", "x"),
            "e": ("mul", "r", 1),
            "f": ("add", "d", "e"),
        },
    ],
)
def test_equivalent_hand_written_graphs_compare_equal(spec):
    x = _x()
    assert graphs.compare(graphs.recorded(torch.log(x**2) * torch.sin(x) + 1 / x), spec).ok


def _diff(spec) -> graphs.Difference:
    x = _x()
    return graphs.compare(graphs.recorded(torch.log(x**2) * torch.sin(x) + 1 / x), spec)


def test_missing_branch_is_named():
    spec = {k: v for k, v in F_GRAPH.items() if k != "e"} | {"f": ("add", "d", "x")}
    diff = _diff(spec)
    assert diff.codes == ["missing_node", "extra_edge"]
    assert "missing node: reciprocal(x)" in diff.lines()[0]
    assert "used by f" in diff.lines()[0]
    assert "extra edge: x → f" in diff.lines()[1]


def test_reversed_edge_is_named_as_reversed():
    diff = _diff(F_GRAPH | {"a": ("square", "b"), "b": ("log", "x")})
    assert "reversed_edge" in diff.codes
    assert "reversed edge: you have b → a, torch records a → b" in diff.lines()


def test_extra_node_is_named():
    diff = _diff(F_GRAPH | {"g": ("cos", "x")})
    assert diff.codes == ["extra_node"]
    assert "'g' = cos(x)" in diff.lines()[0]


def test_wrong_input_order_of_a_non_commutative_node_is_named():
    x = _x()
    diff = graphs.compare(
        graphs.recorded(torch.sin(x) - x), {"x": "input", "s": ("sin", "x"), "d": ("sub", "x", "s")}
    )
    assert diff.codes == ["wrong_inputs"]
    assert "sub(s, x)" in diff.lines()[0]


# --- properties on random expressions -----------------------------------------------------

UNARY = ["sin", "cos", "exp", "log", "neg", "square", "reciprocal"]
BINARY = ["add", "mul", "sub"]

expressions = st.recursive(
    st.just(("x",)),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(UNARY), inner),
        st.tuples(st.sampled_from(BINARY), inner, inner),
    ),
    max_leaves=6,
)

TORCH_SPELLINGS = {
    "square": [lambda a: a**2, lambda a: a * a, torch.square, lambda a: a.pow(2)],
    "reciprocal": [lambda a: 1 / a, lambda a: a**-1, torch.reciprocal, lambda a: torch.div(1, a)],
    "neg": [operator.neg, torch.neg, lambda a: a * -1],
    "sin": [torch.sin, lambda a: a.sin()],
    "cos": [torch.cos],
    "exp": [torch.exp],
    "log": [torch.log, lambda a: a.log()],
    "add": [operator.add, torch.add],
    "mul": [operator.mul, torch.mul],
    "sub": [operator.sub],
}

# "A" and "B" stand for the operands; numbers are constants.
HAND_SPELLINGS = {
    "square": [("square", "A"), ("pow", "A", 2), ("mul", "A", "A"), ("sq", "A")],
    "reciprocal": [("reciprocal", "A"), ("pow", "A", -1), ("div", 1, "A"), ("recip", "A")],
    "neg": [("neg", "A"), ("mul", "A", -1)],
    "add": [("add", "A", "B"), ("add", "B", "A"), ("+", "A", "B")],
    "mul": [("mul", "A", "B"), ("mul", "B", "A"), ("*", "A", "B")],
    "sub": [("sub", "A", "B")],
    "log": [("log", "A"), ("ln", "A")],
}


def _torch_value(expr, x, draw):
    if expr == ("x",):
        return x
    args = [_torch_value(e, x, draw) for e in expr[1:]]
    return draw(st.sampled_from(TORCH_SPELLINGS[expr[0]]))(*args)


def _hand_spec(expr, draw) -> tuple[dict, str]:
    """(spec with placeholder names, root name); repeated subexpressions sometimes shared."""
    spec: dict = {}
    memo: dict = {}

    def build(e) -> str:
        if e == ("x",):
            spec.setdefault("n0", ("input",))
            return "n0"
        if e in memo and draw(st.booleans()):
            return memo[e]
        kids = dict(zip("AB", (build(k) for k in e[1:]), strict=False))
        form = draw(st.sampled_from(HAND_SPELLINGS.get(e[0], [(e[0], "A")])))
        name = f"n{len(spec)}"
        spec[name] = (form[0], *(kids.get(i, i) if isinstance(i, str) else i for i in form[1:]))
        memo[e] = name
        return name

    return spec, build(expr)


def _student_like(spec: dict, root: str, draw) -> tuple[dict, str]:
    """The same graph under fresh names, in a random order."""
    names = draw(
        st.lists(
            st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=5),
            min_size=len(spec),
            max_size=len(spec),
            unique=True,
        )
    )
    rename = dict(zip(spec, names, strict=True))
    items = [
        (rename[n], (v[0], *(rename.get(i, i) if isinstance(i, str) else i for i in v[1:])))
        for n, v in spec.items()
    ]
    return dict(draw(st.permutations(items))), rename[root]


@st.composite
def cases(draw):
    expr = draw(expressions)
    x = torch.tensor([0.7, -1.3, 2.1], dtype=F64, requires_grad=True)
    value = _torch_value(expr, x, draw)
    spec, root = _hand_spec(expr, draw)
    spec, root = _student_like(spec, root, draw)
    return expr, x, value, spec, root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_hand_written_graph_equals_recorded_graph_in_any_spelling(case):
    """Whatever spelling torch and the student use, do the two graphs compare equal, and
    does the hand-written graph compute the same values?"""
    expr, x, value, spec, root = case
    diff = graphs.compare(graphs.recorded(value, {"x": x}), spec)
    assert diff.ok, (expr, spec, diff.lines())
    computed = graphs.evaluate(spec, x.detach())[root]
    torch.testing.assert_close(computed, value.detach(), equal_nan=True)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_normal_form_is_idempotent(case):
    _, x, value, spec, _ = case
    for g in (graphs.recorded(value, {"x": x}), graphs.from_spec(spec)):
        once = graphs.normalise(g)
        assert graphs.normalise(once).nodes == once.nodes


@settings(max_examples=100, deadline=None)
@given(cases(), st.sampled_from(["tanh", "sigmoid", "relu"]))
def test_an_extra_node_is_always_reported_by_its_name(case, op):
    _, x, value, spec, _ = case
    leaf = next(n for n, v in spec.items() if v[0] == "input")
    diff = graphs.compare(graphs.recorded(value), spec | {"EXTRA": (op, leaf)})
    assert diff.codes == ["extra_node"]
    assert "'EXTRA'" in diff.lines()[0]


@settings(max_examples=100, deadline=None)
@given(cases())
def test_changing_the_output_operation_is_always_a_difference(case):
    expr, x, value, spec, root = case
    op = spec[root][0]
    if op == "input":
        return
    swap = {"sin": "cos", "cos": "sin", "exp": "tanh", "log": "exp", "ln": "exp"}
    unary = len(spec[root]) == 2
    new = swap.get(op, "tanh") if unary else ("sub" if op not in ("sub", "-") else "add")
    if not unary and op in ("pow", "div"):
        return  # square / reciprocal spelled with a constant: a different arity
    assert not graphs.compare(graphs.recorded(value), spec | {root: (new, *spec[root][1:])}).ok


# --- evaluating and drawing ---------------------------------------------------------------


def test_evaluate_computes_every_node():
    x = torch.tensor([0.5, -3.0], dtype=F64)
    values = graphs.evaluate(F_GRAPH, x)
    torch.testing.assert_close(values["f"], torch.log(x**2) * torch.sin(x) + 1 / x)
    torch.testing.assert_close(values["a"], x**2)
    with pytest.raises(GraphFormatError, match="2 inputs"):
        graphs.evaluate({"a": "input", "b": "input", "c": ("add", "a", "b")}, x)


@pytest.mark.parametrize("normalised", [False, True])
def test_drawing_has_one_box_per_node_and_one_arrow_per_edge(normalised):
    from matplotlib.text import Annotation

    x = _x()
    g = graphs.recorded(torch.log(x * x) * torch.sin(x) + 1 / x, normalised=normalised)
    fig = graphs.draw(g, title="f")
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if isinstance(t, Annotation)]
    boxes = [t for t in ax.texts if not isinstance(t, Annotation)]
    assert len(boxes) == len(g.nodes)
    assert len(arrows) == len(g.edges())
    labels = {t.get_text() for t in boxes}
    assert ("mul (1)" in labels) != normalised
    fig.canvas.draw()  # arrows attached to boxes must render
    matplotlib.pyplot.close(fig)


def test_drawing_a_hand_written_graph_shows_names_and_operations():
    fig = graphs.draw(F_GRAPH, highlight={"e": "tab:red"})
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"x", "a\nsquare", "e\nreciprocal", "f\nadd"} <= texts
    matplotlib.pyplot.close(fig)
