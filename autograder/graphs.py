"""Dependency graphs: the one torch records, one a student writes by hand, and a drawing.

A student writes a graph as a dict, one entry per node, in any order and with any names::

    graph = {
        "x":    ("input",),             # a leaf: the variable we differentiate by
        "a":    ("square", "x"),        # or ("pow", "x", 2), or ("mul", "x", "x")
        "b":    ("log", "a"),
        "c":    ("sin", "x"),
        "d":    ("mul", "b", "c"),
        "e":    ("reciprocal", "x"),    # or ("pow", "x", -1), or ("div", 1, "x")
        "f":    ("add", "d", "e"),
    }

Each value is `(operation, *inputs)`: an input is the name of another node or a number
(a constant). A leaf may also be written as the bare string "input"; a named constant as
`("const", 1.0)`. Operation names are torch's (see `OPERATIONS`), with a few aliases
("ln" for log, "recip" for reciprocal, "*" for mul, ...).

`recorded(t)` reads the graph torch built for tensor `t` by walking `grad_fn.next_functions`
(leaves through `AccumulateGrad.variable`; an input torch does not track, such as a
Python number, is a constant whose value is read from the node when torch saved it and is
otherwise None). `compare(expected, got)` first brings both graphs to one normal form —
torch records 1/x as reciprocal(x)·1, x**-1 as pow(x, -1), x*x as mul(x, x) — then
pairs their nodes and lists missing and extra nodes and edges by the student's names.
`draw(graph)` draws either graph with matplotlib (a layered layout, no system tools).
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# --- the data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A constant input; `value` is None when torch did not keep it."""

    value: float | None = None

    def __str__(self) -> str:
        return "const" if self.value is None else f"{self.value:g}"


Input = str | Const


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[Input, ...] = ()


@dataclass
class Graph:
    """Nodes by name, inputs before the nodes that use them."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def edges(self) -> list[tuple[str, str]]:
        return [(i, n) for n, node in self.nodes.items() for i in node.inputs if isinstance(i, str)]

    def consumers(self, name: str) -> list[str]:
        return [n for n, node in self.nodes.items() if name in node.inputs]

    @property
    def outputs(self) -> list[str]:
        used = {src for src, _ in self.edges()}
        return [n for n in self.nodes if n not in used]

    @property
    def leaves(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.op == "input"]

    def to_spec(self) -> dict[str, tuple]:
        """The graph in the hand-written format (constants as numbers, or None)."""
        return {
            n: (node.op, *(i.value if isinstance(i, Const) else i for i in node.inputs))
            for n, node in self.nodes.items()
        }

    def __str__(self) -> str:
        return "\n".join(
            f"{n} = {node.op}({', '.join(str(i) for i in node.inputs)})"
            for n, node in self.nodes.items()
        )


class GraphFormatError(ValueError):
    """A hand-written graph that cannot be read; the message names the node."""


# --- operations ---------------------------------------------------------------------------

UNARY = frozenset(
    "neg square sqrt reciprocal log exp sin cos tan tanh sigmoid relu abs sum mean".split()
)
BINARY = frozenset({"sub", "div", "pow"})  # exactly two inputs, order matters
COMMUTATIVE = frozenset({"add", "mul"})  # one or more inputs, order does not matter
OPERATIONS = sorted(UNARY | BINARY | COMMUTATIVE | {"input", "const"})

ALIASES = {
    "leaf": "input",
    "variable": "input",
    "var": "input",
    "constant": "const",
    "+": "add",
    "plus": "add",
    "-": "sub",
    "minus": "sub",
    "*": "mul",
    "times": "mul",
    "multiply": "mul",
    "/": "div",
    "divide": "div",
    "**": "pow",
    "power": "pow",
    "sq": "square",
    "recip": "reciprocal",
    "inv": "reciprocal",
    "ln": "log",
    "negative": "neg",
}

# Torch nodes that only change shape, dtype or copy: dropped by `normalise`.
_IDENTITY = frozenset({"clone", "view", "alias", "unsafeview", "reshape", "tocopy", "squeeze"})

_TORCH = {
    "add": lambda *a: functools.reduce(operator.add, a),
    "mul": lambda *a: functools.reduce(operator.mul, a),
    "sub": operator.sub,
    "div": operator.truediv,
    "pow": operator.pow,
    "neg": torch.neg,
    "square": torch.square,
    "sqrt": torch.sqrt,
    "reciprocal": torch.reciprocal,
    "log": torch.log,
    "exp": torch.exp,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "sum": torch.sum,
    "mean": torch.mean,
}


# --- reading a hand-written graph ---------------------------------------------------------


def from_spec(spec: Mapping[str, Any] | Graph) -> Graph:
    """Read the hand-written format (see the module docstring); GraphFormatError if unreadable."""
    if isinstance(spec, Graph):
        return spec
    if not isinstance(spec, Mapping) or not spec:
        raise GraphFormatError(
            f"a graph is a non-empty dict {{name: (operation, *inputs)}}, got {type(spec).__name__}"
        )
    nodes: dict[str, Node] = {}
    for name, value in spec.items():
        if not isinstance(name, str):
            raise GraphFormatError(f"node names are strings, got {name!r}")
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, tuple | list) or not value or not isinstance(value[0], str):
            raise GraphFormatError(
                f"node '{name}': write (operation, *inputs), e.g. ('sin', 'x'); got {value!r}"
            )
        op = value[0].strip().lower()
        op = ALIASES.get(op, op)
        if op not in OPERATIONS:
            raise GraphFormatError(
                f"node '{name}': unknown operation '{value[0]}'; use one of {', '.join(OPERATIONS)}"
            )
        nodes[name] = Node(op, tuple(_spec_input(name, v, spec) for v in value[1:]))
        _check_arity(name, nodes[name])
    return Graph(_topological(nodes))


def _spec_input(name: str, value: Any, spec: Mapping[str, Any]) -> Input:
    if isinstance(value, str):
        if value not in spec:
            raise GraphFormatError(
                f"node '{name}' takes '{value}' as an input, but no node is named '{value}'"
            )
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Const(float(value))
    raise GraphFormatError(
        f"node '{name}': an input is a node name or a number, got {type(value).__name__} {value!r}"
    )


def _check_arity(name: str, node: Node) -> None:
    n, op = len(node.inputs), node.op
    expected = (
        "no inputs"
        if op == "input" and n
        else "one number, e.g. ('const', 1)"
        if op == "const" and (n != 1 or not isinstance(node.inputs[0], Const))
        else "one input"
        if op in UNARY and n != 1
        else "two inputs"
        if op in BINARY and n != 2
        else "at least one input"
        if op in COMMUTATIVE and n < 1
        else None
    )
    if expected:
        raise GraphFormatError(f"node '{name}': '{op}' takes {expected}, got {n}")


def _topological(nodes: dict[str, Node]) -> dict[str, Node]:
    """Nodes reordered so inputs come first (stable); GraphFormatError on a cycle."""
    order: dict[str, Node] = {}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise GraphFormatError("the graph has a cycle: " + " → ".join(cycle))
        state[name] = 1
        for i in nodes[name].inputs:
            if isinstance(i, str):
                visit(i, path + [name])
        state[name] = 2
        order[name] = nodes[name]

    for name in nodes:
        visit(name, [])
    return order


# --- reading the graph torch recorded -----------------------------------------------------


def recorded(
    output: torch.Tensor,
    names: Mapping[str, torch.Tensor] | None = None,
    *,
    normalised: bool = False,
) -> Graph:
    """The graph torch recorded for `output`, read from `grad_fn.next_functions`.

    Leaves are named from `names` ({"x": x}) by identity, else "x" (one leaf) or "x0", "x1"...
    Other nodes are named after their operation ("log", "mul", "mul_2", ...). Read the
    graph before `backward()` frees it (or backward with retain_graph=True): afterwards
    the constants torch saved on nodes, such as the 1 of 1/x, are unknown (None). With
    `normalised=True` the graph is brought to the normal form of `normalise` and its nodes
    renamed after their operations in that form.
    """
    by_id = {id(t): n for n, t in (names or {}).items()}
    if output.grad_fn is None:
        if output.requires_grad:
            return Graph({by_id.get(id(output), "x"): Node("input")})
        raise GraphFormatError(
            "this tensor has no graph: nothing it was computed from requires grad"
        )
    keep: list[Any] = []  # hold every node object so no id() is reused during the walk
    seen: dict[int, str] = {}
    nodes: dict[str, Node] = {}
    leaf_vars: list[torch.Tensor] = []

    def visit(fn) -> str:
        if id(fn) in seen:
            return seen[id(fn)]
        keep.append(fn)
        if hasattr(fn, "variable"):  # AccumulateGrad: a leaf
            leaf_vars.append(fn.variable)
            name = f"\0leaf{len(leaf_vars) - 1}"
            seen[id(fn)] = name
            nodes[name] = Node("input")
            return name
        op, inputs = _torch_node(
            fn, [None if f is None else visit(f) for f, _ in fn.next_functions]
        )
        name = _fresh(op, nodes)
        seen[id(fn)] = name
        nodes[name] = Node(op, inputs)
        return name

    visit(output.grad_fn)
    # Name the leaves now that we know how many there are.
    rename = {}
    for k, var in enumerate(leaf_vars):
        default = "x" if len(leaf_vars) == 1 else f"x{k}"
        rename[f"\0leaf{k}"] = by_id.get(id(var), default)
    graph = _renamed(Graph(nodes), rename)
    if not normalised:
        return graph
    graph = normalise(graph)
    names_by_op: dict[str, Node] = {}
    for n, node in graph.nodes.items():
        names_by_op[n if node.op == "input" else _fresh(node.op, names_by_op)] = node
    return _renamed(graph, dict(zip(graph.nodes, names_by_op, strict=True)))


def _fresh(op: str, taken: Mapping[str, Any]) -> str:
    """`op`, or `op_2`, `op_3`, ... whichever is not taken yet."""
    name, k = op, 1
    while name in taken:
        k += 1
        name = f"{op}_{k}"
    return name


def _torch_node(fn, inputs: list[str | None]) -> tuple[str, tuple[Input, ...]]:
    cls = type(fn).__name__
    op = re.sub(r"Backward\d*$", "", cls).lower()
    args: list[Input] = []
    for pos, i in enumerate(inputs):
        attr = ("_saved_self", "_saved_other")[pos] if pos < 2 else None
        args.append(i if i is not None else Const(_saved_scalar(fn, attr)))
    if op == "rsub":  # c - x: torch keeps only x
        return "sub", (Const(None), *args)
    if op == "pow":
        if cls == "PowBackward0":  # x ** scalar
            return "pow", (args[0], Const(_saved_scalar(fn, "_saved_exponent")))
        if cls == "PowBackward2":  # scalar ** x
            return "pow", (Const(_saved_scalar(fn, "_saved_self")), args[0])
    return op, tuple(args)


def _saved_scalar(fn, attr: str | None) -> float | None:
    """A scalar torch saved on the node, if it did (and the graph was not freed)."""
    if attr is None:
        return None
    try:
        value = getattr(fn, attr)
    except (AttributeError, RuntimeError):
        return None
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _renamed(graph: Graph, rename: Mapping[str, str]) -> Graph:
    def r(i: Input) -> Input:
        return rename.get(i, i) if isinstance(i, str) else i

    return Graph(
        {
            rename.get(n, n): Node(node.op, tuple(r(i) for i in node.inputs))
            for n, node in graph.nodes.items()
        }
    )


# --- one normal form ----------------------------------------------------------------------


def _is(c: Input, value: float) -> bool:
    return isinstance(c, Const) and c.value is not None and math.isclose(c.value, value)


def _rewrite(name: str, node: Node) -> Input | Node | list[tuple[str, Node]]:
    """One rewrite of a node: an input it reduces to, an equivalent node, or new nodes."""
    op, ins = node.op, node.inputs
    if op in _IDENTITY and len(ins) == 1:
        return ins[0]
    if op == "const" and ins:
        return ins[0]
    if op == "pow" and len(ins) == 2:
        base, e = ins
        for value, result in ((2, "square"), (-1, "reciprocal"), (0.5, "sqrt")):
            if _is(e, value):
                return Node(result, (base,))
        if _is(e, 1):
            return base
    if op == "mul" and len(ins) == 2:
        a, b = ins
        if isinstance(a, Const):
            a, b = b, a
        if _is(b, 1):
            return a
        if _is(b, -1):
            return Node("neg", (a,))
        if isinstance(a, str) and a == b:
            return Node("square", (a,))
    if op == "div" and len(ins) == 2:
        a, b = ins
        if _is(b, 1):
            return a
        if isinstance(b, str) and _is(a, 1):
            return Node("reciprocal", (b,))
        if isinstance(b, str) and isinstance(a, Const) and a.value is not None:
            # c / x is recorded by torch as reciprocal(x) · c
            inverse = f"{name}_reciprocal"
            return [(inverse, Node("reciprocal", (b,))), (name, Node("mul", (inverse, a)))]
    if op in ("add", "sub") and len(ins) == 2 and _is(ins[1], 0):
        return ins[0]
    if op == "add" and len(ins) == 2 and _is(ins[0], 0):
        return ins[1]
    return node


def _key(node: Node) -> tuple:
    ins = node.inputs
    if node.op in COMMUTATIVE:
        ins = tuple(sorted(ins, key=repr))
    return (node.op, ins)


def normalise(graph: Graph | Mapping[str, Any]) -> Graph:
    """Equivalent spellings made equal: constants folded, x**2 and x*x as square(x),
    x**-1 and 1/x as reciprocal(x), ·1 and shape-only nodes dropped, and identical
    nodes merged (the first name in input-first order is kept)."""
    nodes = from_spec(graph).nodes
    for _ in range(50):
        alias: dict[str, Input] = {}
        seen: dict[tuple, str] = {}
        out: dict[str, Node] = {}

        def resolve(i: Input, alias=alias) -> Input:
            while isinstance(i, str) and i in alias:
                i = alias[i]
            return i

        for name, node in nodes.items():
            node = Node(node.op, tuple(resolve(i) for i in node.inputs))
            result = _rewrite(name, node)
            produced = result if isinstance(result, list) else None
            if isinstance(result, str | Const):
                alias[name] = result
                continue
            for new_name, new in produced or [(name, result)]:
                key = _key(new)
                if new.op != "input" and key in seen:
                    alias[new_name] = seen[key]
                    continue
                seen[key] = new_name
                out[new_name] = new
        if out == nodes:
            return Graph(out)
        nodes = out
    raise RuntimeError("normalise did not settle")  # pragma: no cover - rules only shrink


# --- comparing ----------------------------------------------------------------------------


@dataclass
class Difference:
    """What a hand-written graph misses or adds: (code, sentence) items, student's names."""

    items: list[tuple[str, str]] = field(default_factory=list)
    matched: dict[str, str] = field(default_factory=dict)  # expected node -> student's node

    @property
    def ok(self) -> bool:
        return not self.items

    @property
    def codes(self) -> list[str]:
        return [c for c, _ in self.items]

    def lines(self) -> list[str]:
        return [text for _, text in self.items]


def _consts_match(a: Input, b: Input) -> bool:
    if isinstance(a, Const) and isinstance(b, Const):
        return a.value is None or b.value is None or math.isclose(a.value, b.value)
    return a == b


def _inputs_match(op: str, a: tuple[Input, ...], b: tuple[Input, ...]) -> bool:
    if len(a) != len(b):
        return False
    if op not in COMMUTATIVE:
        return all(_consts_match(x, y) for x, y in zip(a, b, strict=True))
    rest = list(b)
    for x in a:
        hit = next((k for k, y in enumerate(rest) if _consts_match(x, y)), None)
        if hit is None:
            return False
        rest.pop(hit)
    return True


def _mapped(node: Node, m: Mapping[str, str]) -> tuple[Input, ...]:
    """A node's inputs under a pairing (unpaired nodes stay unequal to everything)."""
    return tuple(m.get(i, "\0unpaired") if isinstance(i, str) else i for i in node.inputs)


def _pair(exp: Graph, got: Graph) -> dict[str, str]:
    """Pair expected nodes with the student's: leaves by name (or the only one), then
    identical structure bottom-up, then same operation with the most edges in common."""
    m: dict[str, str] = {}
    for leaf in exp.leaves:
        if leaf in got.nodes and got.nodes[leaf].op == "input":
            m[leaf] = leaf
    free_exp = [n for n in exp.leaves if n not in m]
    free_got = [n for n in got.leaves if n not in m.values()]
    if len(free_exp) == 1 and len(free_got) == 1:
        m[free_exp[0]] = free_got[0]

    def mapped(node: Node) -> tuple[Input, ...]:
        return _mapped(node, m)

    changed = True
    while changed:
        changed = False
        for r, rn in exp.nodes.items():
            if r in m or rn.op == "input":
                continue
            taken = set(m.values())
            for s, sn in got.nodes.items():
                if (
                    s not in taken
                    and sn.op == rn.op
                    and _inputs_match(rn.op, mapped(rn), sn.inputs)
                ):
                    m[r] = s
                    changed = True
                    break

    while True:
        taken = set(m.values())
        best: tuple[int, str, str] | None = None
        for r, rn in exp.nodes.items():
            if r in m:
                continue
            for s, sn in got.nodes.items():
                if s in taken or sn.op != rn.op:
                    continue
                score = sum((Counter(mapped(rn)) & Counter(sn.inputs)).values())
                score += len({m.get(c) for c in exp.consumers(r)} & set(got.consumers(s)))
                if best is None or score > best[0]:
                    best = (score, r, s)
        if best is None:
            return m
        m[best[1]] = best[2]


def _expr(g: Graph, name: str, shown: Mapping[str, str], depth: int = 3) -> str:
    """`name` as an expression, nodes the student has written shown by their name."""
    if name in shown:
        return shown[name]
    node = g.nodes[name]
    if node.op == "input" or depth == 0:
        return name
    args = ", ".join(
        _expr(g, i, shown, depth - 1) if isinstance(i, str) else str(i) for i in node.inputs
    )
    return f"{node.op}({args})"


def _list(names: list[str]) -> str:
    return ", ".join(names) if names else "nothing"


def compare(expected: Graph | Mapping[str, Any], got: Graph | Mapping[str, Any]) -> Difference:
    """Differences of `got` (e.g. a student's graph) from `expected` (e.g. torch's), both
    normalised first. Nodes and edges are named by `got`'s names where it has them."""
    exp, mine = normalise(expected), normalise(got)
    m = _pair(exp, mine)
    back = {s: r for r, s in m.items()}
    items: list[tuple[str, str]] = []

    for r, rn in exp.nodes.items():
        if r not in m:
            what = _expr(exp, r, m)
            users = [m.get(c, _expr(exp, c, m, 1)) for c in exp.consumers(r)]
            items.append(
                (
                    "missing_node",
                    f"missing node: {what} (operation '{rn.op}', used by {_list(users)})",
                )
            )
    for s, sn in mine.nodes.items():
        if s not in back:
            args = ", ".join(str(i) for i in sn.inputs)
            items.append(
                (
                    "extra_node",
                    f"extra node: '{s}' = {sn.op}({args}): torch's graph has no such operation",
                )
            )

    missing: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    for r, s in m.items():
        rn, sn = exp.nodes[r], mine.nodes[s]
        want = Counter(m[i] for i in rn.inputs if isinstance(i, str) and i in m)
        have = Counter(i for i in sn.inputs if isinstance(i, str) and i in back)
        missing += [(i, s) for i in (want - have).elements()]
        extra += [(i, s) for i in (have - want).elements()]
        complete = all(i in m for i in rn.inputs if isinstance(i, str)) and all(
            i in back for i in sn.inputs if isinstance(i, str)
        )
        if want == have and complete and not _inputs_match(rn.op, _mapped(rn, m), sn.inputs):
            wanted = ", ".join(str(i) for i in _mapped(rn, m))
            items.append(
                (
                    "wrong_inputs",
                    f"node '{s}': {sn.op}({', '.join(str(i) for i in sn.inputs)}) should be "
                    f"{sn.op}({wanted}) (order of inputs or a constant)",
                )
            )
    for a, b in list(missing):
        if (b, a) in extra:
            missing.remove((a, b))
            extra.remove((b, a))
            items.append(
                ("reversed_edge", f"reversed edge: you have {b} → {a}, torch records {a} → {b}")
            )
    items += [
        ("missing_edge", f"missing edge: {a} → {b} ({b} should take {a} as an input)")
        for a, b in missing
    ]
    items += [
        ("extra_edge", f"extra edge: {a} → {b} (torch's {b} does not take {a})") for a, b in extra
    ]
    return Difference(items, m)


# --- running a hand-written graph ---------------------------------------------------------


def evaluate(
    graph: Graph | Mapping[str, Any], inputs: Mapping[str, torch.Tensor] | torch.Tensor
) -> dict[str, torch.Tensor]:
    """Compute every node of the graph with torch; a single tensor binds the only leaf."""
    g = from_spec(graph)
    if isinstance(inputs, torch.Tensor):
        if len(g.leaves) != 1:
            raise GraphFormatError(f"the graph has {len(g.leaves)} inputs; pass a dict of them")
        inputs = {g.leaves[0]: inputs}
    values: dict[str, torch.Tensor] = {}

    def arg(i: Input) -> Any:
        if isinstance(i, str):
            return values[i]
        if i.value is None:
            raise GraphFormatError("a constant of unknown value cannot be evaluated")
        return i.value

    for name, node in g.nodes.items():
        if node.op == "input":
            if name not in inputs:
                raise GraphFormatError(f"no value given for the input '{name}'")
            values[name] = inputs[name]
        elif node.op == "const":
            values[name] = torch.as_tensor(arg(node.inputs[0]))
        else:
            values[name] = _TORCH[node.op](*(arg(i) for i in node.inputs))
    return values


# --- drawing ------------------------------------------------------------------------------


def _layout(g: Graph) -> dict[str, tuple[float, float]]:
    """Layers left to right by longest path from an input. In a layer each node sits at the
    mean height of its inputs, pushed apart to one unit between nodes (fewer crossings)."""
    layer: dict[str, int] = {}
    for n, node in g.nodes.items():  # inputs come first
        ins = [i for i in node.inputs if isinstance(i, str)]
        layer[n] = 1 + max((layer[i] for i in ins), default=-1)
    pos: dict[str, tuple[float, float]] = {}
    for k in range(max(layer.values(), default=-1) + 1):
        col = [n for n in g.nodes if layer[n] == k]
        want = {}
        for row, n in enumerate(col):
            ys = [pos[i][1] for i in g.nodes[n].inputs if isinstance(i, str)]
            want[n] = sum(ys) / len(ys) if ys else (len(col) - 1) / 2 - row
        col.sort(key=lambda n: -want[n])  # top to bottom; ties keep graph order
        ys = []
        for n in col:
            ys.append(min(want[n], ys[-1] - 1) if ys else want[n])
        shift = sum(want[n] - y for n, y in zip(col, ys, strict=True)) / len(col)
        for n, y in zip(col, ys, strict=True):
            pos[n] = (float(k), y + shift)
    return pos


def _label(name: str, node: Node) -> str:
    consts = [str(i) for i in node.inputs if isinstance(i, Const)]
    op = node.op + (f" ({', '.join(consts)})" if consts else "")
    if node.op == "input" or re.fullmatch(rf"{re.escape(node.op)}(_\d+)?", name):
        return name if node.op == "input" else op
    return f"{name}\n{op}"


def draw(
    graph: Graph | Mapping[str, Any],
    *,
    ax=None,
    title: str | None = None,
    highlight: Mapping[str, str] | None = None,
):
    """Draw a graph (inputs on the left, output on the right); return the Figure.

    `highlight` colours nodes by name, e.g. {"e": "tab:red"}.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    g = from_spec(graph)
    pos = _layout(g)
    width = max(x for x, _ in pos.values()) + 1
    top = max(y for _, y in pos.values())
    bottom = min(y for _, y in pos.values())
    height = top - bottom + 1
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.9 * width + 0.6, 0.9 * height + 0.9))
    else:
        fig = ax.figure
    colours = dict(highlight or {})
    boxes = {}
    for n, node in g.nodes.items():
        face = colours.get(n, "#dbe9f6" if node.op == "input" else "#f4f4f4")
        boxes[n] = ax.text(
            *pos[n],
            _label(n, node),
            ha="center",
            va="center",
            fontsize=9,
            bbox={"boxstyle": "round,pad=0.4", "fc": face, "ec": "#555555"},
            zorder=3,
        )
    seen: Counter = Counter()
    for src, dst in g.edges():
        seen[(src, dst)] += 1
        rad = 0.25 * (seen[(src, dst)] - 1)  # a second edge between the same nodes bends
        ax.annotate(
            "",
            xy=(0, 0.5),
            xycoords=boxes[dst],
            xytext=(1, 0.5),
            textcoords=boxes[src],
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#333333",
                "shrinkA": 1,
                "shrinkB": 1,
                "connectionstyle": f"arc3,rad={rad}",
            },
            zorder=2,
        )
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(bottom - 0.5, top + 0.5)
    ax.set_axis_off()
    # No ticks either: hidden, they were still laid out for every draw (to place the
    # title), about a third of the time such a figure took to render.
    ax.xaxis.set_major_locator(NullLocator())
    ax.yaxis.set_major_locator(NullLocator())
    if title:
        ax.set_title(title)
    return fig
