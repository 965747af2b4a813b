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
        "torch.autograd.grad for dz/dy and dz/dx at once; torch.func.vmap(grad(f)); a graph "
        "with 1 as a named constant divided by x and x² as a power",
        answers={
            Q2: _GRAPH_DIV,
            Q1: """
def dz_dx(x):
    inner = x**3 + 4
    return torch.cos(inner) * 3 * x**2


def dz_dy_and_dz_dx(x):
    x = x.detach().requires_grad_()
    y = x**3 + 4
    z = torch.sin(y)
    dz_dy, dz_dx_ = torch.autograd.grad(z, (y, x), grad_outputs=torch.ones_like(z))
    return dz_dy, dz_dx_
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
        says={
            "q2-graph": ("✗ Q2 graph of f", "missing node: reciprocal(x)", "extra edge: x → f")
        },
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
}
