"""Simulated students for 02_chain_rule."""

from . import Student

ASSIGNMENT = "02_chain_rule"
POINTS = 12

Q1 = "q1-answer"
Q2 = "q2-answer"
Q31 = "q3-1-answer"
Q32 = "q3-2-answer"
Q33 = "q3-3-answer"
Q41 = "q4-1-answer"


def _graph(**nodes) -> str:
    body = "".join(f"        {k!r}: {v!r},\n" for k, v in nodes.items())
    return f"def f_graph():\n    return {{\n{body}    }}\n"


_CORRECT_GRAPH = {
    "x": ("input",),
    "a": ("square", "x"),
    "b": ("log", "a"),
    "c": ("sin", "x"),
    "d": ("mul", "b", "c"),
    "e": ("reciprocal", "x"),
    "f": ("add", "d", "e"),
}

# 1 as a named constant divided by x, x² as a power: a correct encoding of the graph.
_GRAPH_DIV = _graph(
    t="input",
    one=("const", 1),
    r=("div", "one", "t"),
    p=("pow", "t", 2),
    l=("log", "p"),
    s=("sin", "t"),
    m=("mul", "s", "l"),
    out=("add", "r", "m"),
)

# The solution's plot, kept by students who change f_prime_autograd only.
_PLOT = """

def plot_derivatives(x):
    fig, ax = plt.subplots()
    ax.plot(x, f_prime(x), label="analytic")
    ax.plot(x, f_prime_autograd(x), "--", label="autograd")
    ax.legend()
    return fig
"""

# Q1 with the solution's dz_dx, for students who change dz_dy_and_dz_dx only.
_DZ_DX = """
def dz_dx(x):
    return 3 * x**2 * torch.cos(x**3 + 4)

"""

# Q1 with the solution's dz_dy_and_dz_dx, for students who change dz_dx only.
_DZ_DY_AND_DZ_DX = """

def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    inner = leaf**3 + 4
    inner.retain_grad()
    outer = torch.sin(inner)
    outer.backward(gradient=torch.ones_like(outer))
    return inner.grad, leaf.grad
"""

# The solution's f_prime_autograd, for students who change plot_derivatives only.
_F_PRIME_AUTOGRAD = """
def f_prime_autograd(x):
    xg = x.detach().clone().requires_grad_(True)
    out = f(xg)
    out.backward(torch.ones_like(out))
    return xg.grad

"""

STUDENTS: dict[str, Student] = {
    "perfect": Student("the instructor's solutions"),
    "blank": Student("the unmodified release notebook", blank=True),
    # --- correct alternatives --------------------------------------------------------
    "alt_graph_renamed": Student(
        "a graph with pow(x, -1), x·x, own node names; helpers and dicts built step by step",
        answers={
            Q2: _graph(  # a negative power for 1/x, a self-multiply for x², own names
                total=("+", "inv", "prod"),
                prod=("*", "sine", "lg"),
                inv=("pow", "u", -1),
                lg=("ln", "usq"),
                sine=("sin", "u"),
                usq=("mul", "u", "u"),
                u=("leaf",),
            ),
            Q31: """
def _dlog_x_squared(x):
    return 2 / x


def f_prime(x):
    return _dlog_x_squared(x) * torch.sin(x) + torch.log(x * x) * torch.cos(x) - x**-2
""",
            Q32: """
def adjoints(x):
    sq = x * x
    lg = torch.log(sq)
    sn = torch.sin(x)
    grads = {"f": torch.ones_like(x)}
    grads["d"] = grads["f"]
    grads["e"] = grads["f"]
    grads["b"] = grads["d"] * sn
    grads["c"] = grads["d"] * lg
    grads["a"] = grads["b"] * (1 / sq)
    grads["x"] = grads["a"] * 2 * x + grads["c"] * torch.cos(x) + grads["e"] * (-(x**-2))
    return grads
""",
            Q41: """
def forward_tangents(x):
    t = {"x": torch.ones_like(x)}
    t["a"] = 2 * x * t["x"]
    t["b"] = t["a"] / (x * x)
    t["c"] = torch.cos(x) * t["x"]
    t["d"] = t["b"] * torch.sin(x) + torch.log(x * x) * t["c"]
    t["e"] = -t["x"] * x**-2
    t["f"] = t["d"] + t["e"]
    return t
""",
        },
        says={"q2-graph": ("✓ Q2 graph of f: passed",)},
    ),
    "alt_float32": Student(
        "every numerical answer computed in float32 (loses nothing)",
        answers={
            Q1: """
def dz_dx(x):
    x = x.float()
    return 3 * x**2 * torch.cos(x**3 + 4)


def dz_dy_and_dz_dx(x):
    x = x.to(torch.float32).requires_grad_(True)
    y = x**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.sum().backward()
    return y.grad, x.grad
""",
            Q31: """
def f_prime(x):
    x = x.float()
    return 2 / x * torch.sin(x) + torch.log(x**2) * torch.cos(x) - 1 / x**2
""",
            Q32: """
def adjoints(x):
    x = x.float()
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    one = torch.ones_like(x)
    a_bar = one * c / a
    x_bar = a_bar * 2 * x + one * b * torch.cos(x) - one / x**2
    return {"f": one, "d": one, "e": one, "b": one * c, "c": one * b, "a": a_bar, "x": x_bar}
""",
            Q33: """
def f_prime_autograd(x):
    x = x.float().requires_grad_(True)
    f(x).sum().backward()
    return x.grad
"""
            + _PLOT,
            Q41: """
def forward_tangents(x):
    x = x.float()
    dx = torch.ones_like(x)
    da = 2 * x * dx
    db = da / x**2
    dc = torch.cos(x) * dx
    dd = db * torch.sin(x) + torch.log(x**2) * dc
    de = -dx / x**2
    return {"x": dx, "a": da, "b": db, "c": dc, "d": dd, "e": de, "f": dd + de}
""",
        },
    ),
    "alt_autograd_grad": Student(
        "torch.autograd.backward(z, grad_tensors=…) with y.retain_grad(); "
        "torch.func.vmap(grad(f)); a graph with 1 as a named constant divided by x and x² as "
        "a power",
        answers={
            Q2: _GRAPH_DIV,
            Q1: """
def dz_dx(x):
    inner = x**3 + 4
    return torch.cos(inner) * 3 * x**2


def dz_dy_and_dz_dx(x):
    x = x.detach().requires_grad_()
    y = x**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    torch.autograd.backward(z, grad_tensors=torch.ones_like(z))
    return y.grad, x.grad
""",
            Q33: """
def f_prime_autograd(x):
    return torch.func.vmap(torch.func.grad(f))(x)
"""
            + _PLOT,
        },
        says={"q2-graph": ("✓ Q2 graph of f: passed",)},
    ),
    # --- realistic mistakes -----------------------------------------------------------
    "adjoint_missing_factor": Student(
        "forgets the inner derivatives: 3x² in dz/dx, 1/a in the adjoint of a",
        answers={
            Q1: """
def dz_dx(x):
    return torch.cos(x**3 + 4)


def dz_dy_and_dz_dx(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, x.grad
""",
            Q32: """
def adjoints(x):
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    f_ = torch.ones_like(x)
    d_ = f_
    e_ = f_
    b_ = d_ * c
    c_ = d_ * b
    a_ = b_                       # the factor 1/a is forgotten
    x_ = a_ * 2 * x + c_ * torch.cos(x) - e_ / x**2
    return {"f": f_, "d": d_, "e": e_, "b": b_, "c": c_, "a": a_, "x": x_}
""",
        },
        lost={"q1-1-analytic": "missing_chain_factor", "q3-2-adjoints": "missing_chain_factor"},
        says={
            "q3-2-adjoints": (
                "∂f/∂node is wrong for a (a = x²)",
                "[missing_chain_factor]: node a",
                "1/a",
                "Mismatched elements",
            )
        },
    ),
    "graph_missing_reciprocal": Student(
        "1/x trouble: the reciprocal node left out of the graph, its tangent's sign flipped",
        answers={
            Q2: _graph(
                **{k: v for k, v in _CORRECT_GRAPH.items() if k != "e"} | {"f": ("add", "d", "x")}
            ),
            Q41: """
def forward_tangents(x):
    dot_x = torch.ones_like(x)
    dot_a = 2 * x * dot_x
    dot_b = dot_a / x**2
    dot_c = torch.cos(x) * dot_x
    dot_d = dot_b * torch.sin(x) + torch.log(x**2) * dot_c
    dot_e = dot_x / x**2           # d/dx (1/x) taken as +1/x²
    return {"x": dot_x, "a": dot_a, "b": dot_b, "c": dot_c, "d": dot_d, "e": dot_e,
            "f": dot_d + dot_e}
""",
        },
        lost={"q2-graph": "graph_missing_node", "q4-1-tangents": "sign_flipped"},
        says={"q2-graph": ("✗ Q2 graph of f", "missing node: reciprocal(x)", "extra edge: x → f")},
    ),
    "analytic_uses_autograd": Student(
        "the 'analytic' derivative calls autograd; plots a tensor that requires grad",
        answers={
            Q31: """
def f_prime(x):
    xx = x.detach().clone().requires_grad_(True)
    f(xx).sum().backward()
    return xx.grad
""",
            Q33: """
def f_prime_autograd(x):
    xg = x.detach().clone().requires_grad_(True)
    out = f(xg)
    out.backward(torch.ones_like(out))
    return xg.grad


def plot_derivatives(x):
    xg = x.detach().clone().requires_grad_(True)
    out = f(xg)
    out.backward(torch.ones_like(out))
    fig, ax = plt.subplots()
    ax.plot(xg, f_prime(x), label="analytic")
    ax.plot(xg, xg.grad, "--", label="autograd")
    ax.legend()
    return fig
""",
        },
        lost={"q3-1-analytic": "used_autograd", "q3-4-plot": "numpy_requires_grad"},
        says={"q3-1-analytic": ("without autograd",)},
    ),
    "nonleaf_grad": Student(
        "reads y.grad without retain_grad(); builds f with += on a saved tensor (the "
        "plot calls it too)",
        answers={
            Q1: """
def dz_dx(x):
    return 3 * x**2 * torch.cos(x**3 + 4)


def dz_dy_and_dz_dx(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**3 + 4
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, x.grad          # y is not a leaf and retain_grad() was not called
""",
            Q33: """
def f_prime_autograd(x):
    xg = x.detach().clone().requires_grad_(True)
    total = xg.reciprocal()                      # 1/x
    total += torch.log(xg**2) * torch.sin(xg)    # + log(x²)·sin(x), in place
    total.backward(torch.ones_like(total))
    return xg.grad
"""
            + _PLOT,
        },
        lost={
            "q1-2-retained": "nonleaf_grad",
            "q3-3-autograd": "inplace_modified",
            "q3-4-plot": "inplace_modified",
        },
        says={"q1-2-retained": ("non-leaf tensor", "retain_grad()")},
    ),
    "detached_intermediate": Student(
        "detaches y to make it a leaf (x.grad stays None); writes log(x²) as 2·log(x), "
        "NaN for x < 0, so the plot's analytic curve is wrong too",
        answers={
            Q1: """
def dz_dx(x):
    return 3 * x**2 * torch.cos(x**3 + 4)


def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = (leaf**3 + 4).detach().requires_grad_(True)   # y as a leaf, so that y.grad is kept
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, leaf.grad
""",
            Q31: """
def f_prime(x):
    # log(x²) = 2·log(x)
    return 2 / x * torch.sin(x) + 2 * torch.log(x) * torch.cos(x) - 1 / x**2
""",
        },
        lost={"q1-2-retained": "detached", "q3-1-analytic": "nonfinite", "q3-4-plot": None},
    ),
    "reciprocal_sign": Student(
        "d/dx (1/x) taken as +1/x²; backward(gradient=out) instead of ones, so the "
        "plot shows two wrong curves",
        answers={
            Q31: """
def f_prime(x):
    return 2 / x * torch.sin(x) + torch.log(x**2) * torch.cos(x) + 1 / x**2
""",
            Q33: """
def f_prime_autograd(x):
    xg = x.detach().clone().requires_grad_(True)
    out = f(xg)
    out.backward(gradient=out)
    return xg.grad
"""
            + _PLOT,
        },
        lost={
            "q3-1-analytic": "reciprocal_sign",
            "q3-3-autograd": "gradient_is_y",
            "q3-4-plot": None,
        },
    ),
    "graph_reversed_edge": Student(
        "log and square composed the wrong way round in the graph: b → a instead of a → b",
        answers={Q2: _graph(**_CORRECT_GRAPH | {"a": ("square", "b"), "b": ("log", "x")})},
        lost={"q2-graph": "graph_reversed_edge"},
        says={"q2-graph": ("reversed edge: you have b → a, torch records a → b",)},
    ),
    "graph_extra_node": Student(
        "a node torch does not record (cos x, the derivative of sin) added to the graph",
        answers={Q2: _graph(**_CORRECT_GRAPH | {"g": ("cos", "x")})},
        lost={"q2-graph": "graph_extra_node"},
        says={"q2-graph": ("extra node: 'g' = cos(x)",)},
    ),
    # --- a method the question rules out, with the right values ----------------------
    "dual_numbers_by_hand": Student(
        "Q1.1, Q3.1 and Q4.1 by torch's forward-mode dual numbers, as the notebook shows for "
        "Q4 (the tangents of every node from one dual pass); x̄ of Q3.2 from a dual number, "
        "the other adjoints by hand",
        answers={
            Q1: """
import torch.autograd.forward_ad as fwAD


def dz_dx(x):
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        return fwAD.unpack_dual(torch.sin(dual**3 + 4)).tangent


def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, leaf.grad
""",
            Q31: """
import torch.autograd.forward_ad as fwAD


def f_prime(x):
    with fwAD.dual_level():
        return fwAD.unpack_dual(f(fwAD.make_dual(x, torch.ones_like(x)))).tangent
""",
            Q32: """
def adjoints(x):
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    one = torch.ones_like(x)
    return {"f": one, "d": one, "e": one, "b": c, "c": b, "a": c / a, "x": f_prime(x)}
""",
            Q41: """
def forward_tangents(x):
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        a = dual**2
        b = torch.log(a)
        c = torch.sin(dual)
        d = b * c
        e = 1 / dual
        nodes = {"x": dual, "a": a, "b": b, "c": c, "d": d, "e": e, "f": d + e}
        return {k: fwAD.unpack_dual(v).tangent.clone() for k, v in nodes.items()}
""",
        },
        lost={
            "q1-1-analytic": "used_autograd",
            "q3-1-analytic": "used_autograd",
            "q3-2-adjoints": "used_autograd",
            "q4-1-tangents": "used_autograd",
        },
        says={"q4-1-tangents": ("forward-mode AD",)},
    ),
    "jacfwd_by_hand": Student(
        "the formula of Q1.1 and every tangent of Q4.1 from torch.func.vmap(jacfwd(...))",
        answers={
            Q1: """
def dz_dx(x):
    return torch.func.vmap(torch.func.jacfwd(lambda t: torch.sin(t**3 + 4)))(x)


def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, leaf.grad
""",
            Q41: """
def _d(g, x):
    return torch.func.vmap(torch.func.jacfwd(g))(x)


def forward_tangents(x):
    return {
        "x": torch.ones_like(x),
        "a": _d(lambda t: t**2, x),
        "b": _d(lambda t: torch.log(t**2), x),
        "c": _d(torch.sin, x),
        "d": _d(lambda t: torch.log(t**2) * torch.sin(t), x),
        "e": _d(lambda t: 1 / t, x),
        "f": _d(f, x),
    }
""",
        },
        lost={"q1-1-analytic": "used_autograd", "q4-1-tangents": "used_autograd"},
    ),
    "finite_differences": Student(
        "central differences with h = 1e-6 (accurate to ~1e-10 in float64) for dz/dx, f', "
        "x̄ and the tangents, and for f_prime_autograd, which the plot then draws",
        answers={
            Q1: """
H = 1e-6


def dz_dx(x):
    z = lambda t: torch.sin(t**3 + 4)
    return (z(x + H) - z(x - H)) / (2 * H)


def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, leaf.grad
""",
            Q31: """
def f_prime(x):
    return (f(x + H) - f(x - H)) / (2 * H)
""",
            Q32: """
def adjoints(x):
    a = x**2
    one = torch.ones_like(x)
    c = torch.sin(x)
    return {"f": one, "d": one, "e": one, "b": c, "c": torch.log(a), "a": c / a,
            "x": (f(x + H) - f(x - H)) / (2 * H)}
""",
            Q33: """
def f_prime_autograd(x):
    h = 1e-6
    return (f(x + h) - f(x - h)) / (2 * h)
"""
            + _PLOT,
            Q41: """
def _nodes(x):
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    return {"x": x, "a": a, "b": b, "c": c, "d": b * c, "e": 1 / x, "f": b * c + 1 / x}


def forward_tangents(x):
    up, down = _nodes(x + H), _nodes(x - H)
    return {k: (up[k] - down[k]) / (2 * H) for k in up}
""",
        },
        lost={
            "q1-1-analytic": "numerical_difference",
            "q3-1-analytic": "numerical_difference",
            "q3-2-adjoints": "numerical_difference",
            "q3-3-autograd": "numerical_difference",
            "q3-4-plot": "numerical_difference",
            "q4-1-tangents": "numerical_difference",
        },
    ),
    "retained_by_formula": Student(
        "dz/dy written as cos(x³ + 4) next to one backward for dz/dx (no retain_grad)",
        answers={
            Q1: _DZ_DX
            + """
def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    z = torch.sin(leaf**3 + 4)
    z.backward(torch.ones_like(z))
    return torch.cos(x**3 + 4), leaf.grad
""",
        },
        lost={"q1-2-retained": "not_retained"},
        says={"q1-2-retained": ("never called retain_grad()",)},
    ),
    "retained_by_division": Student(
        "dz/dy read back from the leaf: x.grad / 3x² (0/0 at x = 0)",
        answers={
            Q1: _DZ_DX
            + """
def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    torch.sin(leaf**3 + 4).sum().backward()
    return leaf.grad / (3 * x**2), leaf.grad
""",
        },
        lost={"q1-2-retained": "not_retained"},
    ),
    "grad_of_y_and_x": Student(
        "one torch.autograd.grad(z, (y, x)) for both, y's gradient never retained",
        answers={
            Q1: _DZ_DX
            + """
def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    z = torch.sin(y)
    return torch.autograd.grad(z, (y, leaf), grad_outputs=torch.ones_like(z))
""",
        },
        lost={"q1-2-retained": "not_retained"},
    ),
    "two_passes": Student(
        "y.retain_grad(), then one backward for dz/dy and a second one for dz/dx",
        answers={
            Q1: _DZ_DX
            + """
def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z), retain_graph=True)
    dz_dy = y.grad.clone()
    leaf.grad = None
    z.backward(torch.ones_like(z))
    return dz_dy, leaf.grad
""",
        },
        lost={"q1-2-retained": "several_passes"},
        says={"q1-2-retained": ("autograd ran 2 times",)},
    ),
    "callers_x": Student(
        "backward on the caller's x itself (requires_grad_ and .grad left on it)",
        answers={
            Q1: _DZ_DX
            + """
def dz_dy_and_dz_dx(x):
    x.requires_grad_(True)
    y = x**3 + 4
    y.retain_grad()
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, x.grad
""",
        },
        lost={"q1-2-retained": "changed_input"},
    ),
    "adjoints_as_numbers": Student(
        "f̄ = 1.0 (and so d̄ = ē = 1.0) and ẋ = 1.0 as Python numbers, not tensors shaped like x",
        answers={
            Q32: """
def adjoints(x):
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    f_bar = 1.0
    d_bar = f_bar * 1
    e_bar = f_bar * 1
    b_bar = d_bar * c
    c_bar = d_bar * b
    a_bar = b_bar / a
    x_bar = a_bar * 2 * x + c_bar * torch.cos(x) - e_bar / x**2
    return {"f": f_bar, "d": d_bar, "e": e_bar, "b": b_bar, "c": c_bar, "a": a_bar, "x": x_bar}
""",
            Q41: """
def forward_tangents(x):
    dot_x = 1.0
    dot_a = 2 * x * dot_x
    dot_b = dot_a / x**2
    dot_c = torch.cos(x) * dot_x
    dot_d = dot_b * torch.sin(x) + torch.log(x**2) * dot_c
    dot_e = -dot_x / x**2
    return {"x": dot_x, "a": dot_a, "b": dot_b, "c": dot_c, "d": dot_d, "e": dot_e,
            "f": dot_d + dot_e}
""",
        },
        lost={"q3-2-adjoints": "scalar_node", "q4-1-tangents": "scalar_node"},
        says={"q3-2-adjoints": ("is a single number, not a tensor shaped like x",)},
    ),
    "adjoints_by_backward": Student(
        "the adjoints read from retained gradients after one backward (what the test "
        "compares with), not worked out by hand",
        answers={
            Q32: """
def adjoints(x):
    xr = x.detach().clone().requires_grad_(True)
    a = xr**2
    b = torch.log(a)
    c = torch.sin(xr)
    d = b * c
    e = 1 / xr
    out = d + e
    for t in (a, b, c, d, e, out):
        t.retain_grad()
    out.backward(torch.ones_like(out))
    return {"f": out.grad, "d": d.grad, "e": e.grad, "b": b.grad, "c": c.grad, "a": a.grad,
            "x": xr.grad}
""",
        },
        lost={"q3-2-adjoints": "used_autograd"},
    ),
    "formula_as_autograd": Student(
        "f_prime_autograd returns the formula of Q3.1: no autograd runs, in Q3.3 or in the plot",
        answers={
            Q33: """
def f_prime_autograd(x):
    return f_prime(x)
"""
            + _PLOT,
        },
        lost={"q3-3-autograd": "method_missing", "q3-4-plot": "method_missing"},
    ),
    "plot_own_grid": Student(
        "both functions plotted on one axes, on a grid of its own (linspace avoiding 0)",
        answers={
            Q33: _F_PRIME_AUTOGRAD
            + """
def plot_derivatives(x):
    grid = torch.cat([torch.linspace(-6, -0.3, 100), torch.linspace(0.3, 6, 100)])
    fig, ax = plt.subplots()
    ax.plot(grid, f_prime(grid), label="analytic")
    ax.plot(grid, f_prime_autograd(grid), "--", label="autograd")
    ax.legend()
    return fig
""",
        },
        lost={"q3-4-plot": "own_grid"},
    ),
    "plot_two_axes": Student(
        "the two curves side by side, one subplot each",
        answers={
            Q33: _F_PRIME_AUTOGRAD
            + """
def plot_derivatives(x):
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(x, f_prime(x), label="analytic")
    right.plot(x, f_prime_autograd(x), "--", label="autograd")
    left.legend()
    right.legend()
    return fig
""",
        },
        lost={"q3-4-plot": "separate_axes"},
    ),
    "plot_autograd_twice": Student(
        "plots f_prime_autograd twice (solid and dashed), the formula never",
        answers={
            Q33: _F_PRIME_AUTOGRAD
            + """
def plot_derivatives(x):
    fig, ax = plt.subplots()
    ax.plot(x, f_prime_autograd(x), label="analytic")
    ax.plot(x, f_prime_autograd(x), "--", label="autograd")
    ax.legend()
    return fig
""",
        },
        lost={"q3-4-plot": "one_function_twice"},
    ),
    "plot_analytic_twice_own_grid": Student(
        "the analytic curve in two subplots, on a grid of its own: autograd never runs",
        answers={
            Q33: _F_PRIME_AUTOGRAD
            + """
def plot_derivatives(x):
    xs = torch.cat([torch.linspace(-6, -0.3, 50), torch.linspace(0.3, 6, 50)])
    fig, (a1, a2) = plt.subplots(1, 2)
    a1.plot(xs, f_prime(xs))
    a1.set_xlabel("x")
    a1.set_ylabel("f'")
    a2.plot(xs, f_prime(xs), "--")
    a2.set_xlabel("x")
    a2.set_ylabel("f'")
    return fig
""",
        },
        lost={"q3-4-plot": "method_missing"},
    ),
    "graph_from_torch": Student(
        "the graph recorded by torch when the cell runs (graphs.recorded, as the notebook "
        "shows), kept in a global that f_graph returns: f_graph itself calls no torch",
        answers={
            Q2: """
_x = torch.tensor(1.5, requires_grad=True)
_GRAPH = graphs.recorded(f(_x), {"x": _x}, normalised=True).to_spec()


def f_graph():
    return dict(_GRAPH)
""",
        },
        lost={"q2-graph": "graph_not_by_hand"},
        says={"q2-graph": ("`_GRAPH` (which `f_graph` uses) is taken from torch",)},
    ),
    "graph_from_reference": Student(
        "the check's own reference graph (a02.recorded_f()) read once into a global, its "
        "spec returned by f_graph",
        answers={
            Q2: """
REFERENCE = a02.recorded_f()


def f_graph():
    return REFERENCE.to_spec()
""",
        },
        lost={"q2-graph": "graph_not_by_hand"},
    ),
    # --- correct alternatives the words allow -----------------------------------------
    "alt_helpers_and_apis": Student(
        "cos written as sin(u + π/2); a hand-written graph kept in a global dict and "
        "compared with torch's in its own cell; adjoints and tangents through helpers of "
        "local derivatives; f' by forward-mode dual numbers for Q3.3 (autograd too); the "
        "plot from numpy arrays with labelled axes",
        answers={
            Q1: """
def dz_dx(x):
    y = x**3 + 4
    return torch.sin(y + math.pi / 2) * 3 * x**2


def dz_dy_and_dz_dx(x):
    x_copy = torch.tensor(x.tolist(), requires_grad=True)
    y = x_copy**3 + 4
    y.retain_grad()
    torch.sin(y).sum().backward()
    return y.grad, x_copy.grad
""",
            Q2: """
GRAPH = {
    "x": ("input",),
    "sq": ("pow", "x", 2),
    "lg": ("log", "sq"),
    "sn": ("sin", "x"),
    "prod": ("mul", "lg", "sn"),
    "inv": ("div", 1, "x"),
    "out": ("add", "prod", "inv"),
}


def f_graph():
    return GRAPH


_xt = torch.tensor(1.5, requires_grad=True)
print(graphs.compare(graphs.recorded(f(_xt), {"x": _xt}), f_graph()).lines() or "same graph")
""",
            Q32: """
LOCAL = {
    "a": lambda x: 2 * x,
    "b": lambda a: 1 / a,
    "c": lambda x: torch.cos(x),
    "e": lambda x: -1 / x**2,
}


def adjoints(x):
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    bar = {"f": torch.ones_like(x)}
    bar["d"] = bar["f"].clone()
    bar["e"] = bar["f"].clone()
    bar["b"] = bar["d"] * c
    bar["c"] = bar["d"] * b
    bar["a"] = bar["b"] * LOCAL["b"](a)
    bar["x"] = bar["a"] * LOCAL["a"](x) + bar["c"] * LOCAL["c"](x) + bar["e"] * LOCAL["e"](x)
    return bar
""",
            Q33: """
import torch.autograd.forward_ad as fwAD


def f_prime_autograd(x):
    with fwAD.dual_level():
        return fwAD.unpack_dual(f(fwAD.make_dual(x, torch.ones_like(x)))).tangent


def plot_derivatives(x):
    xs = x.numpy()
    fig, ax = plt.subplots()
    ax.plot(xs, f_prime(x).numpy(), lw=3, alpha=0.4)
    ax.plot(xs, f_prime_autograd(x).numpy(), "k:")
    ax.set_xlabel("x")
    ax.set_ylabel("f'(x): formula and autograd")
    return fig
""",
            Q41: """
def forward_tangents(x):
    dot = {"x": torch.ones_like(x)}
    dot["a"] = LOCAL["a"](x) * dot["x"]
    dot["b"] = LOCAL["b"](x**2) * dot["a"]
    dot["c"] = LOCAL["c"](x) * dot["x"]
    dot["d"] = dot["b"] * torch.sin(x) + torch.log(x**2) * dot["c"]
    dot["e"] = LOCAL["e"](x) * dot["x"]
    dot["f"] = dot["d"] + dot["e"]
    return dot
""",
        },
        says={"q2-graph": ("✓ Q2 graph of f: passed",)},
        prints=("same graph",),
    ),
    "dz_dx_inner_inside": Student(
        "Q1.1 with the inner derivative put inside the cos: 3x²·cos(3x²)",
        answers={
            Q1: """
def dz_dx(x):
    return 3 * x**2 * torch.cos(3 * x**2)
"""
            + _DZ_DY_AND_DZ_DX
        },
        lost={"q1-1-analytic": "inner_derivative_inside"},
    ),
    "product_rule_one_term": Student(
        "Q3.1 differentiates log(x²)·sin(x) as (log(x²))'·sin(x) only: one term of the "
        "product rule",
        answers={
            Q31: """
def f_prime(x):
    return 2 / x * torch.sin(x) - 1 / x**2
"""
        },
        lost={"q3-1-analytic": "product_rule", "q3-4-plot": None},
    ),
    "log_as_log_x": Student(
        "Q3.1 differentiates log(x²) as 1/x, as if it were log x",
        answers={
            Q31: """
def f_prime(x):
    return torch.sin(x) / x + torch.log(x**2) * torch.cos(x) - 1 / x**2
"""
        },
        lost={"q3-1-analytic": "log_chain_factor", "q3-4-plot": None},
    ),
    "alt_sum_of_paths": Student(
        "Q3.1 written as the sum over the three paths of the products of local "
        "derivatives, Q1.1 as dz/dy · dy/dx",
        answers={
            Q31: """
def f_prime(x):
    a, b, c = x**2, torch.log(x**2), torch.sin(x)
    via_a = 1.0 * c * (1 / a) * (2 * x)   # x -> a -> b -> d -> f
    via_c = 1.0 * b * torch.cos(x)        # x -> c -> d -> f
    via_e = 1.0 * (-1 / x**2)             # x -> e -> f
    return via_a + via_c + via_e
""",
            Q1: """
def dz_dx(x):
    y = x**3 + 4
    dz_dy = torch.cos(y)
    dy_dx = 3 * x**2
    return dz_dy * dy_dx
"""
            + _DZ_DY_AND_DZ_DX,
        },
    ),
    "plot_returns_axes": Student(
        "the plot right, but the Axes returned where the question asks for the figure",
        answers={
            Q33: _F_PRIME_AUTOGRAD
            + """
def plot_derivatives(x):
    fig, ax = plt.subplots()
    ax.plot(x, f_prime(x), label="analytic")
    ax.plot(x, f_prime_autograd(x), "--", label="autograd")
    ax.legend()
    return ax
""",
        },
        lost={"q3-4-plot": "not_a_figure"},
        says={"q3-4-plot": ("returned an Axes, not the figure",)},
    ),
    "alt_plot_pyplot_state": Student(
        "the plot drawn with pyplot's current figure, returned with plt.gcf()",
        answers={
            Q33: _F_PRIME_AUTOGRAD
            + """
def plot_derivatives(x):
    plt.figure()
    plt.plot(x, f_prime(x), label="analytic")
    plt.plot(x, f_prime_autograd(x), "--", label="autograd")
    plt.legend()
    return plt.gcf()
""",
        },
    ),
    # --- numpy's conversions of the input (np.asarray, np.array) ------------------------
    "fd_through_np_array": Student(
        "dz/dx by a central difference on copies np.array(x), each stepped in place",
        answers={
            Q1: """
import numpy as np


def dz_dx(x):
    h = 1e-6
    up, down = np.array(x), np.array(x)
    up += h
    down -= h
    slope = (np.sin(up**3 + 4) - np.sin(down**3 + 4)) / (2 * h)
    return torch.from_numpy(slope)
"""
            + _DZ_DY_AND_DZ_DX,
        },
        lost={"q1-1-analytic": "numerical_difference"},
    ),
    "alt_formula_through_asarray": Student(
        "dz/dx and f' by the formulas, computed in numpy on np.asarray(x) (loses nothing)",
        answers={
            Q1: """
import numpy as np


def dz_dx(x):
    xn = np.asarray(x)
    return torch.from_numpy(3 * xn**2 * np.cos(xn**3 + 4))
"""
            + _DZ_DY_AND_DZ_DX,
            Q31: """
import numpy as np


def f_prime(x):
    xn = np.asarray(x, dtype=np.float64)
    out = (2 / xn) * np.sin(xn) + np.log(xn**2) * np.cos(xn) - 1 / xn**2
    return torch.as_tensor(out, dtype=x.dtype)
""",
        },
    ),
    # --- autograd ran, but the returned values came from elsewhere -------------------------
    "retained_then_formula": Student(
        "Q1.2 runs backward with y retained, then returns cos(y) and the formula for dz/dx",
        answers={
            Q1: _DZ_DX
            + """

def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    inner = leaf**3 + 4
    inner.retain_grad()
    torch.sin(inner).backward(gradient=torch.ones_like(inner))
    return torch.cos(x**3 + 4), dz_dx(x)
""",
        },
        lost={"q1-2-retained": "result_not_from_autograd"},
    ),
    "formula_on_data": Student(
        "Q3.3 runs backward, then returns the formula for f' evaluated on xg.data",
        answers={
            Q33: """
def f_prime_autograd(x):
    xg = x.detach().clone().requires_grad_(True)
    f(xg).sum().backward()
    t = xg.data
    return (2 / t) * torch.sin(t) + torch.log(t**2) * torch.cos(t) - 1 / t**2
"""
            + _PLOT,
        },
        lost={"q3-3-autograd": "result_not_from_autograd"},
    ),
    "alt_grad_copies": Student(
        "gradients returned as copies: .clone(), .detach(), a float32 cast, rebuilt from "
        ".tolist() (loses nothing)",
        answers={
            Q1: _DZ_DX
            + """

def dz_dy_and_dz_dx(x):
    leaf = x.detach().clone().requires_grad_(True)
    inner = leaf**3 + 4
    inner.retain_grad()
    outer = torch.sin(inner)
    outer.backward(gradient=torch.ones_like(outer))
    return inner.grad.clone(), leaf.grad.detach()
""",
            Q33: """
def f_prime_autograd(x):
    xg = x.detach().clone().requires_grad_(True)
    f(xg).sum().backward()
    return torch.tensor(xg.grad.tolist(), dtype=x.dtype)
"""
            + _PLOT,
        },
    ),
}
