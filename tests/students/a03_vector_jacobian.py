"""Simulated students for 03_vector_jacobian."""

import re

from . import Student

ASSIGNMENT = "03_vector_jacobian"
POINTS = 17

Q1 = "q1-answer"
Q2 = "q2-vjp-answer"
Q23 = "q2-3-jacobian-answer"
Q3 = "q3-answer"
Q4 = "q4-answer"
Q5 = "q5-answer"
Q61 = "q6-1-analytic-answer"
Q62 = "q6-2-rows-answer"
Q63 = "q6-3-functional-answer"
Q64 = "q6-4-vmap-answer"

# The solution's batched-Jacobian loop; students below vary one line of it.
_ROWS = """
def jacobian_rows(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    rows = []
    for k in range(y.shape[1]):
        onehot = torch.zeros_like(y)
        onehot[:, k] = 1.0
        x.grad = None
        y.backward(onehot, retain_graph=True)
        rows.append(x.grad)
    return torch.stack(rows, dim=1)
"""

# The solution's answers to the functions a student below leaves right, so that an answer
# cell holding two functions changes only the one that is wrong.
_VJP_FROM_JACOBIAN = """
def vjp_from_jacobian(J, v):
    return np.asarray(v) @ np.asarray(J)
"""
_VJP = """

def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    f(x).backward(v)
    return x.grad
"""
_PREDICTED = """
def predicted_grads(x, vs):
    return 2 * x * torch.cumsum(vs, dim=0)
"""
_ACCUMULATED = """

def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    grads = []
    for v in vs:
        y.backward(v, retain_graph=True)
        grads.append(x.grad.clone())
    return torch.stack(grads)
"""
_GRAD_G = """
def grad_g(x):
    x0, x1 = x[:, 0], x[:, 1]
    c = torch.cos(x0 * x1**2)
    return torch.stack([x1 + x1**2 * c, x0 + 2 * x0 * x1 * c], dim=1)
"""
_BATCHED = """

def batched_gradient(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    y.backward(torch.ones_like(y))
    return x.grad
"""


def _define(name: str, body: str) -> str:
    """An answer cell holding `def name(f, x):` with the given body."""
    lines = body.strip("\n").splitlines()
    return f"def {name}(f, x):\n" + "\n".join("    " + line for line in lines) + "\n"


# The batched Jacobian, each of the three ways.
WAYS = {
    "loop": """
x = x.detach().clone().requires_grad_(True)
y = f(x)
rows = []
for k in range(y.shape[1]):
    v = torch.zeros_like(y)
    v[:, k] = 1.0
    x.grad = None
    y.backward(v, retain_graph=True)
    rows.append(x.grad)
return torch.stack(rows, dim=1)
""",
    # torch.autograd.functional.jacobian, reshaped: the Jacobian of f(x).sum(0) is (3, N, 2).
    "functional": """
return torch.autograd.functional.jacobian(lambda t: f(t).sum(0), x).permute(1, 0, 2)
""",
    "vmap": """
return torch.func.vmap(torch.func.jacrev(f))(x)
""",
}
Q6_CELLS = {Q62: "jacobian_rows", Q63: "jacobian_functional", Q64: "jacobian_vmap"}

# The ways used in the (rows, functional, vmap) cells: the solution's, then two rotations,
# so that every Q6 cell is answered each of the three ways by perfect, rotated_1, rotated_2.
ROTATIONS = [
    ("loop", "functional", "vmap"),
    ("functional", "vmap", "loop"),
    ("vmap", "loop", "functional"),
]


def _ways(rows: str, functional: str, vmap: str) -> dict[str, str]:
    """The three Q6 cells answered with the given ways (whatever the cell's title)."""
    chosen = dict(zip(Q6_CELLS, (rows, functional, vmap), strict=True))
    return {gid: _define(Q6_CELLS[gid], WAYS[way]) for gid, way in chosen.items()}


STUDENTS: dict[str, Student] = {
    "perfect": Student(
        "the instructor's solutions",
        # The visible tests report the curriculum's numbers.
        says={
            "q1-vjp-y3x2": ("v = (1, 1) gives (6, 12), v = (1, 10) gives (6, 120)",),
            "q2-1-vjp-from-jacobian": ("v = (1, 10, 100) gives (26, 1240)",),
            "q2-2-vjp": ("200, 2222, (100, 100), (6, 120), (26, 1240)",),
            "q2-3-jacobian-example": ("[[6, 0], [2, 24], [0, 10]]",),
            "q3-1-predicted": ("gives 2, 22, 222, 2222",),
            "q3-2-accumulated": ("gives 2, 22, 222, 2222",),
            "q4-q-grads": ("a.grad = (36, 81), b.grad = (−12, −8)",),
        },
        # The loop and vmap timings at N = 300, and their agreement.
        prints=(
            "N = 300 points",
            re.compile(r"row-by-row loop \(jacobian_rows\)\s+[\d.]+ ms"),
            re.compile(r"vmap\(jacrev\(f\)\) \(jacobian_vmap\)\s+[\d.]+ ms"),
            "row-by-row loop time / vmap time:",
            "all three agree: True",
        ),
    ),
    "blank": Student("the unmodified release notebook", blank=True),
    # --- correct alternatives --------------------------------------------------------
    "alt_functional": Student(
        "torch.func.vjp, autograd.functional.vjp, autograd.grad per row, jacfwd, "
        "the Jacobian of the batch sum, J.T @ v, torch.autograd.backward per row of vs",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    _, pullback = torch.func.vjp(lambda t: 3 * t**2, x)
    (g,) = pullback(v)
    return g
""",
            Q2: """
def vjp_from_jacobian(J, v):
    return np.asarray(J).T @ np.asarray(v)


def vjp(f, x, v):
    _, g = torch.autograd.functional.vjp(f, x, v)
    return g
""",
            Q3: """
def predicted_grads(x, vs):
    return torch.stack([2 * x * vs[: k + 1].sum(0) for k in range(len(vs))])


def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    seen = []
    for v in vs:
        torch.autograd.backward(y, v, retain_graph=True)
        seen.append(x.grad.detach().clone())
    return torch.stack(seen)
""",
            Q4: """
def q_grads(a, b, v):
    _, pullback = torch.func.vjp(lambda a, b: 3 * a**3 - b**2, a, b)
    return pullback(v)
""",
            Q5: """
def grad_g(x):
    u, w = x.unbind(-1)
    c = torch.cos(u * w * w)
    return torch.stack([w + w * w * c, u + 2 * u * w * c], dim=-1)


def batched_gradient(f, x):
    return torch.func.vmap(torch.func.grad(f))(x)
""",
            Q62: """
def jacobian_rows(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    rows = []
    for k in range(y.shape[1]):
        e_k = torch.zeros_like(y)
        e_k[:, k] = 1.0
        (row,) = torch.autograd.grad(y, x, e_k, retain_graph=True)
        rows.append(row)
    return torch.stack(rows, dim=1)
""",
            Q63: """
def jacobian_functional(f, x):
    # the rows of f are independent: the Jacobian of the batch sum is (3, N, 2)
    return torch.autograd.functional.jacobian(lambda t: f(t).sum(0), x).permute(1, 0, 2)
""",
            Q64: """
def jacobian_vmap(f, x):
    return torch.func.vmap(torch.func.jacfwd(f))(x)
""",
        },
    ),
    "alt_float32": Student(
        "every answer computed in float32 (loses nothing)",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    x = x.float().requires_grad_(True)
    (3 * x**2).backward(v.float())
    return x.grad
""",
            Q2: """
def vjp_from_jacobian(J, v):
    return np.asarray(v, dtype=np.float32) @ np.asarray(J, dtype=np.float32)


def vjp(f, x, v):
    x = x.float().requires_grad_(True)
    f(x).backward(v.float())
    return x.grad
""",
            Q23: """
def jacobian_example(x):
    x1, x2 = x.float()
    zero = torch.zeros(())
    return torch.stack([
        torch.stack([6 * x1, zero]),
        torch.stack([2 * x1, 6 * x2**2]),
        torch.stack([zero, torch.full((), 10.0)]),
    ])
""",
            Q3: """
def predicted_grads(x, vs):
    return 2 * x.float() * torch.cumsum(vs.float(), dim=0)


def accumulated_grads(f, x, vs):
    x = x.float().requires_grad_(True)
    y = f(x)
    grads = []
    for v in vs.float():
        y.backward(v, retain_graph=True)
        grads.append(x.grad.clone())
    return torch.stack(grads)
""",
            Q4: """
def q_grads(a, b, v):
    a = a.float().requires_grad_(True)
    b = b.float().requires_grad_(True)
    (3 * a**3 - b**2).backward(v.float())
    return a.grad, b.grad
""",
            Q5: """
def grad_g(x):
    x0, x1 = x.float().unbind(1)
    c = torch.cos(x0 * x1**2)
    return torch.stack([x1 + x1**2 * c, x0 + 2 * x0 * x1 * c], dim=1)


def batched_gradient(f, x):
    x = x.float().requires_grad_(True)
    f(x).sum().backward()
    return x.grad
""",
            Q61: """
def jacobian_f(x):
    x = x.float()
    x1, x2 = x[:, 0], x[:, 1]
    c = torch.cos(x1 + x2**2)
    J = torch.empty(len(x), 3, 2)
    J[:, 0, 0], J[:, 0, 1] = x2, x1
    J[:, 1, 0], J[:, 1, 1] = c, 2 * x2 * c
    J[:, 2, 0], J[:, 2, 1] = 2 * x1, -3.0
    return J
""",
            Q62: _ROWS.replace("x.detach().clone()", "x.float()"),
            Q63: """
def jacobian_functional(f, x):
    full = torch.autograd.functional.jacobian(f, x.float())
    return torch.stack([full[i, :, i, :] for i in range(len(x))])
""",
            Q64: """
def jacobian_vmap(f, x):
    return torch.func.vmap(torch.func.jacrev(f))(x.float())
""",
        },
    ),
    "alt_helpers": Student(
        "torch.autograd.grad instead of backward, einsum, helper functions, .grad "
        "zeroed with zero_() after copying",
        answers={
            Q1: """
def _leaf(t):
    return t.detach().clone().requires_grad_(True)


def vjp_y3x2(x, v):
    inp = _leaf(x)
    return torch.autograd.grad(3 * inp**2, inp, grad_outputs=v)[0]
""",
            Q2: """
def vjp_from_jacobian(J, v):
    J, v = np.asarray(J), np.asarray(v)
    return np.einsum("i,ij->j", v, J)


def vjp(f, x, v):
    inp = x.detach().requires_grad_()
    out = f(inp)
    (g,) = torch.autograd.grad(out, inp, grad_outputs=v)
    return g
""",
            Q4: """
def q_grads(a, b, v):
    leaves = [t.detach().clone().requires_grad_(True) for t in (a, b)]
    Q = 3 * leaves[0] ** 3 - leaves[1] ** 2
    return torch.autograd.grad(Q, leaves, grad_outputs=v)
""",
            Q5: """
def grad_g(x):
    a, b = x[:, 0], x[:, 1]
    inner = a * b**2
    return torch.stack([b + b**2 * torch.cos(inner), a + 2 * a * b * torch.cos(inner)], dim=1)


def batched_gradient(f, x):
    pts = x.detach().requires_grad_()
    (g,) = torch.autograd.grad(f(pts).sum(), pts)
    return g
""",
            Q62: """
def _one_hot_column(y, k):
    e = torch.zeros_like(y)
    e[:, k] = 1
    return e


def jacobian_rows(f, x):
    pts = x.detach().clone().requires_grad_(True)
    out = f(pts)
    rows = []
    for k in range(out.shape[-1]):
        out.backward(_one_hot_column(out, k), retain_graph=True)
        rows.append(pts.grad.clone())
        pts.grad.zero_()
    return torch.stack(rows, dim=-2)
""",
        },
    ),
    # Each Q6 cell names its way: another way gets the values, not the point.
    "rotated_1": Student(
        "the Q6 cells answered by functional.jacobian, vmap(jacrev) and a backward loop: "
        "each cell another way than it asks",
        answers=_ways(*ROTATIONS[1]),
        lost={"q6-2-rows": "wrong_api", "q6-3-functional": "wrong_api", "q6-4-vmap": "wrong_api"},
    ),
    "rotated_2": Student(
        "the Q6 cells answered by vmap(jacrev), a backward loop and functional.jacobian: "
        "each cell another way than it asks",
        answers=_ways(*ROTATIONS[2]),
        lost={"q6-2-rows": "wrong_api", "q6-3-functional": "wrong_api", "q6-4-vmap": "wrong_api"},
    ),
    # --- realistic mistakes -----------------------------------------------------------
    "accumulated_rows": Student(
        ".grad not cleared between rows: row k is the sum of the true rows 0..k",
        answers={
            Q62: _ROWS.replace("        x.grad = None\n", "").replace(
                "rows.append(x.grad)", "rows.append(x.grad.clone())"
            )
        },
        lost={"q6-2-rows": "accumulated_rows"},
        says={
            "q6-2-rows": (
                "row k of your Jacobian is the sum of the true rows 0..k",
                "Mismatched elements",
            )
        },
    ),
    "transposed": Student(
        "Jacobians written inputs × outputs (one row per input)",
        answers={
            Q23: """
def jacobian_example(x):
    x1, x2 = float(x[0]), float(x[1])
    return torch.tensor([[6 * x1, 2 * x1, 0.0], [0.0, 6 * x2**2, 10.0]])
""",
            Q61: """
def jacobian_f(x):
    x1, x2 = x[:, 0], x[:, 1]
    c = torch.cos(x1 + x2**2)
    d_dx1 = torch.stack([x2, c, 2 * x1], dim=1)
    d_dx2 = torch.stack([x1, 2 * x2 * c, -3 + 0 * x1], dim=1)
    return torch.stack([d_dx1, d_dx2], dim=1)
""",
        },
        lost={"q2-3-jacobian-example": "transposed", "q6-1-analytic": "transposed"},
        says={"q6-1-analytic": ("looks transposed",)},
    ),
    "vjp_swapped": Student(
        "J @ v instead of vᵀJ; multiplies backward(v)'s result by v again",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    x = x.detach().clone().requires_grad_(True)
    (3 * x**2).backward(v)
    return x.grad * v          # "weight by v" once more
""",
            Q2: """
def vjp_from_jacobian(J, v):
    return J @ v


def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    f(x).backward(v)
    return x.grad
""",
        },
        lost={"q1-vjp-y3x2": "v_applied_twice", "q2-1-vjp-from-jacobian": "v_and_j_swapped"},
        says={"q2-1-vjp-from-jacobian": ("v and J look swapped",)},
    ),
    "batch_layout": Student(
        "the full (N, 3, N, 2) Jacobian of the batch; the batch axis moved to axis 1",
        answers={
            Q63: """
def jacobian_functional(f, x):
    return torch.autograd.functional.jacobian(f, x)
""",
            Q64: """
def jacobian_vmap(f, x):
    per_sample = torch.func.vmap(torch.func.jacrev(f))(x)
    return per_sample.permute(1, 0, 2)       # outputs first
""",
        },
        lost={
            "q6-3-functional": "block_diagonal",
            "q6-4-vmap": "batch_axis",
            "q6-5-large-batch": "batch_axis",
        },
        says={
            "q6-3-functional": ("J[i, :, i, :]",),
            "q6-4-vmap": (
                "the batch axis (N = 5) is axis 1, not axis 0",
                "torch.stack(rows, dim=1)",
            ),
        },
    ),
    "graph_freed": Student(
        "backward twice without retain_graph=True; reads x.grad without calling backward",
        answers={
            Q3: """
def predicted_grads(x, vs):
    return 2 * x * torch.cumsum(vs, dim=0)


def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    grads = []
    for v in vs:
        y.backward(v)
        grads.append(x.grad.clone())
    return torch.stack(grads)
""",
            Q5: """
def grad_g(x):
    x0, x1 = x[:, 0], x[:, 1]
    c = torch.cos(x0 * x1**2)
    return torch.stack([x1 + x1**2 * c, x0 + 2 * x0 * x1 * c], dim=1)


def batched_gradient(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    return x.grad
""",
        },
        lost={"q3-2-accumulated": "graph_freed", "q5-2-batched-gradient": "no_backward"},
    ),
    "integer_tensors": Student(
        "stores x.grad itself after each call (aliased); the example's a and b typed as integers",
        answers={
            Q3: """
def predicted_grads(x, vs):
    return 2 * x * torch.cumsum(vs, dim=0)


def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    out = []
    for v in vs:
        y.backward(v, retain_graph=True)
        out.append(x.grad)
    return torch.stack(out)
""",
            Q4: """
def q_grads(a, b, v):
    a = torch.tensor([2, 3], requires_grad=True)
    b = torch.tensor([6, 4], requires_grad=True)
    Q = 3 * a**3 - b**2
    Q.backward(v)
    return a.grad, b.grad
""",
        },
        lost={"q3-2-accumulated": "grad_aliased", "q4-q-grads": "integer_requires_grad"},
        says={"q3-2-accumulated": ("Store x.grad.clone()",)},
    ),
    "notebook_numbers": Student(
        "answers right for the notebook's example only: the vector-Jacobian products of the "
        "example hard-coded (they pass the visible test, not the hidden one); v ignored, "
        "which is right for v = (1, 1) only",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    return torch.tensor([6.0, 12.0]) if float(v[1]) == 1.0 else torch.tensor([6.0, 120.0])
""",
            Q4: """
def q_grads(a, b, v):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    (3 * a**3 - b**2).sum().backward()
    return a.grad, b.grad
""",
        },
        # Hard-coded numbers run no backward at all: the visible test fails too.
        lost={"q1-vjp-y3x2": "method_missing", "q4-q-grads": "ignored_v"},
    ),
    # --- the method a question names, bypassed ---------------------------------------
    "formula_not_backward": Student(
        "the closed formulas 6xv, 9a²v and −2bv where backward(v) is asked",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    return 6 * x * v
""",
            Q4: """
def q_grads(a, b, v):
    return 9 * a**2 * v, -2 * b * v
""",
        },
        lost={"q1-vjp-y3x2": "method_missing", "q4-q-grads": "method_missing"},
    ),
    "finite_differences": Student(
        "central differences (h = 1e-6) wherever a derivative is asked, right to ~1e-9",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    h = 1e-6
    return (3 * (x + h) ** 2 - 3 * (x - h) ** 2) / (2 * h) * v
""",
            Q2: _VJP_FROM_JACOBIAN
            + """

def vjp(f, x, v):
    h = 1e-6
    flat = x.detach().reshape(-1)
    columns = []
    for j in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[j] = h
        up = f((flat + e).reshape(x.shape)).reshape(-1)
        down = f((flat - e).reshape(x.shape)).reshape(-1)
        columns.append((up - down) / (2 * h))
    J = torch.stack(columns, dim=1)
    return (v.reshape(-1) @ J).reshape(x.shape)
""",
            Q23: """
def jacobian_example(x):
    h = 1e-6
    columns = []
    for j in range(2):
        e = torch.zeros(2)
        e[j] = h
        columns.append((example(x + e) - example(x - e)) / (2 * h))
    return torch.stack(columns, dim=1)
""",
            Q3: _PREDICTED
            + """

def accumulated_grads(f, x, vs):
    h = 1e-6
    flat = x.detach().reshape(-1)
    columns = []
    for j in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[j] = h
        up = f((flat + e).reshape(x.shape)).reshape(-1)
        down = f((flat - e).reshape(x.shape)).reshape(-1)
        columns.append((up - down) / (2 * h))
    J = torch.stack(columns, dim=1)
    per_call = vs.reshape(len(vs), -1) @ J
    return per_call.cumsum(0).reshape(len(vs), *x.shape)
""",
            Q5: """
def grad_g(x):
    h = 1e-6
    e0, e1 = torch.tensor([h, 0.0]), torch.tensor([0.0, h])
    return torch.stack([(g(x + e0) - g(x - e0)) / (2 * h), (g(x + e1) - g(x - e1)) / (2 * h)], 1)


def batched_gradient(f, x):
    h = 1e-6
    e0, e1 = torch.tensor([h, 0.0]), torch.tensor([0.0, h])
    return torch.stack([(f(x + e0) - f(x - e0)) / (2 * h), (f(x + e1) - f(x - e1)) / (2 * h)], 1)
""",
            Q61: """
def jacobian_f(x):
    h = 1e-6
    e0, e1 = torch.tensor([h, 0.0]), torch.tensor([0.0, h])
    return torch.stack([(f(x + e0) - f(x - e0)) / (2 * h), (f(x + e1) - f(x - e1)) / (2 * h)], -1)
""",
            Q62: """
def jacobian_rows(f, x):
    h = 1e-6
    e0, e1 = torch.tensor([h, 0.0]), torch.tensor([0.0, h])
    return torch.stack([(f(x + e0) - f(x - e0)) / (2 * h), (f(x + e1) - f(x - e1)) / (2 * h)], -1)
""",
        },
        lost={
            "q1-vjp-y3x2": "numerical_difference",
            "q2-2-vjp": "numerical_difference",
            "q2-3-jacobian-example": "numerical_difference",
            "q3-2-accumulated": "numerical_difference",
            "q5-1-grad-g": "numerical_difference",
            "q5-2-batched-gradient": "numerical_difference",
            "q6-1-analytic": "numerical_difference",
            "q6-2-rows": "numerical_difference",
        },
    ),
    "forward_mode": Student(
        "forward-mode AD (torch.func.jvp, jacfwd) where a reverse VJP, a formula or "
        "another way is asked",
        answers={
            # J is diagonal: the JVP J·v has the values of vᵀJ
            Q1: """
def vjp_y3x2(x, v):
    _, jv = torch.func.jvp(lambda t: 3 * t**2, (x,), (v,))
    return jv
""",
            Q2: _VJP_FROM_JACOBIAN
            + """

def vjp(f, x, v):
    J = torch.func.jacfwd(f)(x).reshape(v.numel(), x.numel())
    return (v.reshape(-1) @ J).reshape(x.shape)
""",
            Q23: """
def jacobian_example(x):
    return torch.func.jacfwd(example)(x)
""",
            Q3: """
def predicted_grads(x, vs):
    each = [torch.func.jvp(lambda t: t**2, (x,), (torch.ones_like(x),))[1] * v for v in vs]
    return torch.cumsum(torch.stack(each), dim=0)
"""
            + _ACCUMULATED,
            Q5: """
def grad_g(x):
    return torch.func.vmap(torch.func.jacfwd(g))(x)
"""
            + _BATCHED,
            Q61: """
def jacobian_f(x):
    return torch.func.vmap(torch.func.jacfwd(f))(x)
""",
            Q62: """
def jacobian_rows(f, x):
    return torch.func.vmap(torch.func.jacfwd(f))(x)
""",
            Q63: """
def jacobian_functional(f, x):
    return torch.func.vmap(torch.func.jacfwd(f))(x)
""",
        },
        lost={
            "q1-vjp-y3x2": "not_a_vjp",
            "q2-2-vjp": "not_a_vjp",
            "q2-3-jacobian-example": "used_autograd",
            "q3-1-predicted": "used_autograd",
            "q5-1-grad-g": "used_autograd",
            "q6-1-analytic": "used_autograd",
            "q6-2-rows": "wrong_api",
            "q6-3-functional": "wrong_api",
        },
    ),
    "jacobian_then_product": Student(
        "the whole Jacobian built first (jacrev, one backward per output, "
        "functional.jacobian), then multiplied by v; VJPs summed by hand; loops over samples",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    J = torch.func.jacrev(lambda t: 3 * t**2)(x)
    return v @ J
""",
            Q2: _VJP_FROM_JACOBIAN
            + """

def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    y = f(x).reshape(-1)
    rows = []
    for i in range(y.numel()):
        x.grad = None
        y[i].backward(retain_graph=True)
        rows.append(x.grad.reshape(-1).clone())
    J = torch.stack(rows)
    return (v.reshape(-1) @ J).reshape(x.shape)
""",
            Q3: _PREDICTED
            + """

def accumulated_grads(f, x, vs):
    _, pullback = torch.func.vjp(f, x)
    total = torch.zeros_like(x)
    out = []
    for v in vs:
        total = total + pullback(v)[0]
        out.append(total)
    return torch.stack(out)
""",
            Q4: """
def q_grads(a, b, v):
    J_a, J_b = torch.autograd.functional.jacobian(lambda a, b: 3 * a**3 - b**2, (a, b))
    return v @ J_a, v @ J_b
""",
            Q62: """
def jacobian_rows(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    J = torch.zeros(y.shape[0], y.shape[1], x.shape[1])
    for i in range(y.shape[0]):
        for k in range(y.shape[1]):
            (grad,) = torch.autograd.grad(y[i, k], x, retain_graph=True)
            J[i, k] = grad[i]
    return J
""",
            Q64: """
def jacobian_vmap(f, x):
    return torch.stack([torch.func.jacrev(f)(point) for point in x])
""",
        },
        lost={
            "q1-vjp-y3x2": "not_a_vjp",
            # its first functions have one output: its one backward per output is a
            # backward from ones, v multiplied in afterwards
            "q2-2-vjp": "v_after_backward",
            "q3-2-accumulated": "summed_by_hand",
            "q4-q-grads": "not_a_vjp",
            "q6-2-rows": "one_backward_per_row",
            "q6-4-vmap": "wrong_api",
        },
    ),
    "callers_tensors": Student(
        "backward on the caller's own tensors (x, a, b switched to requires_grad); y "
        "rebuilt for every backward; all Jacobian rows in one batched pass",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    x.requires_grad_(True)
    (3 * x**2).backward(v)
    return x.grad
""",
            Q2: _VJP_FROM_JACOBIAN
            + """

def vjp(f, x, v):
    x.requires_grad_(True)
    x.grad = None
    f(x).backward(v)
    return x.grad
""",
            Q3: _PREDICTED
            + """

def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    grads = []
    for v in vs:
        f(x).backward(v)      # a fresh graph each time: no retain_graph needed
        grads.append(x.grad.clone())
    return torch.stack(grads)
""",
            Q4: """
def q_grads(a, b, v):
    a.requires_grad_(True)
    b.requires_grad_(True)
    (3 * a**3 - b**2).backward(v)
    return a.grad, b.grad
""",
            Q62: """
def jacobian_rows(f, x):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    m = y.shape[1]
    onehots = torch.zeros(m, *y.shape)
    for k in range(m):
        onehots[k, :, k] = 1.0
    (rows,) = torch.autograd.grad(y, x, onehots, is_grads_batched=True)
    return rows.permute(1, 0, 2)
""",
        },
        lost={
            "q1-vjp-y3x2": "changed_input",
            "q2-2-vjp": "changed_input",
            "q3-2-accumulated": "rebuilt_graph",
            "q4-q-grads": "changed_input",
            "q6-2-rows": "one_backward_per_row",
        },
    ),
    "torch_not_numpy": Student(
        "vᵀJ of Q2.1 in torch, returned as a tensor; .grad cleared between the calls of "
        "Q3.2 and the sum taken by hand; vᵀJ of Q2.2 flattened",
        answers={
            Q2: """
def vjp_from_jacobian(J, v):
    return torch.as_tensor(v) @ torch.as_tensor(J)


def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    f(x).backward(v)
    return x.grad.reshape(-1)
""",
            Q3: _PREDICTED
            + """

def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    each = []
    for v in vs:
        x.grad = None
        y.backward(v, retain_graph=True)
        each.append(x.grad)
    return torch.cumsum(torch.stack(each), dim=0)
""",
        },
        lost={
            "q2-1-vjp-from-jacobian": "not_numpy",
            "q2-2-vjp": None,
            "q3-2-accumulated": "summed_by_hand",
        },
    ),
    "torch_then_numpy": Student(
        "vᵀJ of Q2.1 computed in torch and converted back to numpy, Q2.2's returned as a "
        "numpy array; .grad cleared between the calls of Q3.2 (each entry one call's gradient)",
        answers={
            Q2: """
def vjp_from_jacobian(J, v):
    return (torch.from_numpy(np.asarray(v)) @ torch.from_numpy(np.asarray(J))).numpy()


def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    f(x).backward(v)
    return x.grad.numpy()
""",
            Q3: _PREDICTED
            + """

def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    grads = []
    for v in vs:
        x.grad = None
        y.backward(v, retain_graph=True)
        grads.append(x.grad)
    return torch.stack(grads)
""",
        },
        lost={
            "q2-1-vjp-from-jacobian": "not_numpy",
            "q2-2-vjp": "wrong_type",
            "q3-2-accumulated": "not_accumulated",
        },
    ),
    "grad_cumsum": Student(
        "Q3.1 measured with backward instead of predicted by formula; Q3.2 by "
        "torch.autograd.grad per row and a cumsum (no accumulation in .grad)",
        answers={
            Q3: """
def predicted_grads(x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = x**2
    out = []
    for v in vs:
        y.backward(v, retain_graph=True)
        out.append(x.grad.clone())
    return torch.stack(out)


def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    each = [torch.autograd.grad(y, x, v, retain_graph=True)[0] for v in vs]
    return torch.cumsum(torch.stack(each), dim=0)
""",
        },
        lost={"q3-1-predicted": "used_autograd", "q3-2-accumulated": "summed_by_hand"},
    ),
    "scalar_x_only": Student(
        "Q3.1's formula written for the notebook's 0-dimensional x only (x.item())",
        answers={
            Q3: """
def predicted_grads(x, vs):
    return 2 * x.item() * torch.cumsum(vs, dim=0)
"""
            + _ACCUMULATED,
        },
        lost={"q3-1-predicted": None},
    ),
    "ignores_f": Student(
        "the notebook's analytic Jacobian and gradient returned whatever f is given",
        answers={
            Q5: _GRAD_G
            + """

def batched_gradient(f, x):
    return grad_g(x)
""",
            Q62: """
def jacobian_rows(f, x):
    return jacobian_f(x)
""",
            Q64: """
def jacobian_vmap(f, x):
    return jacobian_f(x)
""",
        },
        lost={
            "q5-2-batched-gradient": "method_missing",
            "q6-2-rows": "method_missing",
            "q6-4-vmap": "method_missing",
            "q6-5-large-batch": None,
        },
    ),
    # --- more correct alternatives ------------------------------------------------------
    "alt_apis": Student(
        "other legitimate APIs: torch.autograd.backward, np.dot, torch.func.vjp per row, "
        "one autograd.grad per input, forward-mode dual numbers for 'by autograd', "
        "functional.jacobian vectorised or forward-mode, vmap of a lambda, imported names",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    leaf = x.detach().clone().requires_grad_(True)
    torch.autograd.backward(3 * leaf**2, v)
    return leaf.grad
""",
            Q2: """
def vjp_from_jacobian(J, v):
    return np.dot(np.asarray(v), np.asarray(J))


def vjp(f, x, v):
    _, pullback = torch.func.vjp(f, x)
    return pullback(v)[0]
""",
            Q23: """
def jacobian_example(x):
    x1, x2 = x.tolist()
    return torch.tensor([[6 * x1, 0.0], [2 * x1, 6 * x2**2], [0.0, 10.0]])
""",
            Q3: """
def predicted_grads(x, vs):
    return vs.cumsum(0) * (2 * x)


def accumulated_grads(f, x, vs):
    leaf = x.detach().clone().requires_grad_(True)
    y = f(leaf)
    history = []
    for k in range(vs.shape[0]):
        y.backward(vs[k], retain_graph=True)
        history.append(leaf.grad.detach().clone())
    return torch.stack(history, dim=0)
""",
            Q4: """
def q_grads(a, b, v):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    Q = 3 * a**3 - b**2
    (ga,) = torch.autograd.grad(Q, a, v, retain_graph=True)
    (gb,) = torch.autograd.grad(Q, b, v)
    return ga, gb
""",
            Q5: _GRAD_G
            + """

def batched_gradient(f, x):
    import torch.autograd.forward_ad as fwAD

    columns = []
    with fwAD.dual_level():
        for j in range(x.shape[1]):
            tangent = torch.zeros_like(x)
            tangent[:, j] = 1.0
            columns.append(fwAD.unpack_dual(f(fwAD.make_dual(x, tangent))).tangent)
    return torch.stack(columns, dim=1)
""",
            Q61: """
def jacobian_f(x):
    x1, x2 = x[:, 0], x[:, 1]
    c = torch.cos(x1 + x2**2)
    J = torch.zeros(x.shape[0], 3, 2)
    J[:, 0, 0] = x2
    J[:, 0, 1] = x1
    J[:, 1, 0] = c
    J[:, 1, 1] = 2 * x2 * c
    J[:, 2, 0] = 2 * x1
    J[:, 2, 1] = -3.0
    return J
""",
            Q62: """
def jacobian_rows(f, x):
    y, pullback = torch.func.vjp(f, x)
    rows = []
    for k in range(y.shape[-1]):
        e_k = torch.zeros_like(y)
        e_k[..., k] = 1.0
        rows.append(pullback(e_k)[0])
    return torch.stack(rows, dim=1)
""",
            Q63: """
def jacobian_functional(f, x):
    summed = torch.autograd.functional.jacobian(
        lambda t: f(t).sum(0), x, vectorize=True, strategy="forward-mode"
    )
    return summed.movedim(1, 0)
""",
            Q64: """
from torch.func import jacrev, vmap


def jacobian_vmap(f, x):
    return vmap(lambda point: jacrev(f)(point))(x)
""",
        },
    ),
    "alt_sum_trick": Student(
        "v pushed back inside the graph instead of as backward's argument: "
        "(y * v).sum().backward(), torch.dot, torch.autograd.grad of a weighted sum",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    x = x.detach().clone().requires_grad_(True)
    (3 * x**2 * v).sum().backward()
    return x.grad
""",
            Q2: _VJP_FROM_JACOBIAN
            + """

def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad((f(x) * v).sum(), x)
    return g
""",
            Q4: """
def q_grads(a, b, v):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    torch.dot(3 * a**3 - b**2, v).backward()
    return a.grad, b.grad
""",
        },
    ),
    "v_after_backward": Student(
        "backward from ones, multiplied by v afterwards: right numbers where J is diagonal "
        "(y = 3x², Q = 3a³ − b²), not vᵀJ computed as asked",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    x = x.detach().clone().requires_grad_(True)
    (3 * x**2).backward(torch.ones_like(x))
    return x.grad * v
""",
            Q4: """
def q_grads(a, b, v):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    (3 * a**3 - b**2).sum().backward()
    return a.grad * v, b.grad * v
""",
        },
        lost={"q1-vjp-y3x2": "v_after_backward", "q4-q-grads": "v_after_backward"},
        says={"q1-vjp-y3x2": ("equals vᵀJ only where J is diagonal",)},
    ),
    "grad_g_inner_power": Student(
        "Q5.1 with the inner x₀x₁² differentiated in x₁ as x₀: x₀ + x₀·cos(x₀x₁²)",
        answers={
            Q5: """
def grad_g(x):
    x0, x1 = x[:, 0], x[:, 1]
    c = torch.cos(x0 * x1**2)
    return torch.stack([x1 + x1**2 * c, x0 + x0 * c], dim=1)
"""
            + _BATCHED
        },
        lost={"q5-1-grad-g": "inner_power_rule"},
    ),
    "grad_g_swapped_columns": Student(
        "Q5.1 with ∂g/∂x₁ in column 0 and ∂g/∂x₀ in column 1",
        answers={
            Q5: """
def grad_g(x):
    x0, x1 = x[:, 0], x[:, 1]
    c = torch.cos(x0 * x1**2)
    return torch.stack([x0 + 2 * x0 * x1 * c, x1 + x1**2 * c], dim=1)
"""
            + _BATCHED
        },
        lost={"q5-1-grad-g": "swapped_partials"},
    ),
    "grad_g_no_inner_factor": Student(
        "Q5.1 with the sin term differentiated to cos(x₀x₁²) alone in both partials",
        answers={
            Q5: """
def grad_g(x):
    x0, x1 = x[:, 0], x[:, 1]
    c = torch.cos(x0 * x1**2)
    return torch.stack([x1 + c, x0 + c], dim=1)
"""
            + _BATCHED
        },
        lost={"q5-1-grad-g": "missing_chain_factor"},
    ),
    "alt_partials_one_by_one": Student(
        "Q5.1 and Q2.3 written partial derivative by partial derivative, with named "
        "inner functions; Q2.3 as a torch tensor built from its rows",
        answers={
            Q5: """
def grad_g(x):
    x0, x1 = x[:, 0], x[:, 1]
    inner = x0 * x1**2
    d_inner_d0 = x1**2
    d_inner_d1 = 2 * x0 * x1
    dg_d0 = x1 + torch.cos(inner) * d_inner_d0
    dg_d1 = x0 + torch.cos(inner) * d_inner_d1
    return torch.stack([dg_d0, dg_d1], dim=-1)
"""
            + _BATCHED,
            Q23: """
def jacobian_example(x):
    x1, x2 = x[0], x[1]
    zero = torch.zeros_like(x1)
    rows = [
        torch.stack([6 * x1, zero]),
        torch.stack([2 * x1, 6 * x2**2]),
        torch.stack([zero, torch.full_like(x1, 10.0)]),
    ]
    return torch.stack(rows)
""",
        },
    ),
    "finite_differences_numpy": Student(
        "central differences computed outside torch: on numpy arrays from x.numpy(), and on "
        "Python floats from x.tolist()",
        answers={
            Q23: """
def jacobian_example(x):
    xn = x.detach().numpy()
    h = 1e-6
    columns = []
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        up = example(torch.from_numpy(xn + e)).numpy()
        down = example(torch.from_numpy(xn - e)).numpy()
        columns.append((up - down) / (2 * h))
    return torch.from_numpy(np.stack(columns, axis=1))
""",
            Q5: """
def _g_at(a, b):
    return float(g(torch.tensor([a, b], dtype=torch.float64)))


def grad_g(x):
    h = 1e-6
    rows = []
    for a, b in x.tolist():
        rows.append(
            [
                (_g_at(a + h, b) - _g_at(a - h, b)) / (2 * h),
                (_g_at(a, b + h) - _g_at(a, b - h)) / (2 * h),
            ]
        )
    return torch.tensor(rows, dtype=torch.float64)


def batched_gradient(f, x):
    return torch.func.vmap(torch.func.grad(f))(x)
""",
        },
        lost={
            "q2-3-jacobian-example": "numerical_difference",
            "q5-1-grad-g": "numerical_difference",
        },
    ),
    "jacobian_f_no_chain_factor": Student(
        "Q6.1 with ∂f₂/∂x₂ = cos(x₁ + x₂²): the inner derivative 2x₂ left out",
        answers={
            Q61: """
def jacobian_f(x):
    x1, x2 = x[:, 0], x[:, 1]
    c = torch.cos(x1 + x2**2)
    rows = [
        torch.stack([x2, x1], dim=1),
        torch.stack([c, c], dim=1),
        torch.stack([2 * x1, torch.full_like(x1, -3.0)], dim=1),
    ]
    return torch.stack(rows, dim=1)
"""
        },
        lost={"q6-1-analytic": "missing_chain_factor"},
    ),
    "jacobian_f_minus_sin": Student(
        "Q6.1 with sin differentiated as −sin in the row of f₂",
        answers={
            Q61: """
def jacobian_f(x):
    x1, x2 = x[:, 0], x[:, 1]
    s = torch.sin(x1 + x2**2)
    rows = [
        torch.stack([x2, x1], dim=1),
        torch.stack([-s, -2 * x2 * s], dim=1),
        torch.stack([2 * x1, torch.full_like(x1, -3.0)], dim=1),
    ]
    return torch.stack(rows, dim=1)
"""
        },
        lost={"q6-1-analytic": "wrong_outer_derivative"},
    ),
    "jacobian_example_missing_partial": Student(
        "Q2.3 with ∂y₂/∂x₁ = 0: y₂ = x₁² + 2x₂³ read as a function of x₂ only",
        answers={
            Q23: """
def jacobian_example(x):
    x1, x2 = float(x[0]), float(x[1])
    return np.array([[6 * x1, 0.0], [0.0, 6 * x2**2], [0.0, 10.0]])
"""
        },
        lost={"q2-3-jacobian-example": "missing_partial"},
    ),
    "jacobian_example_power_kept": Student(
        "Q2.3 with ∂y₂/∂x₂ = 6x₂³: the exponent brought down but not lowered",
        answers={
            Q23: """
def jacobian_example(x):
    x1, x2 = float(x[0]), float(x[1])
    return np.array([[6 * x1, 0.0], [2 * x1, 6 * x2**3], [0.0, 10.0]])
"""
        },
        lost={"q2-3-jacobian-example": "power_rule"},
    ),
    # --- numpy's conversions of the input (np.asarray, np.array) ------------------------
    "fd_through_np_array_of_list": Student(
        "the Jacobian and ∇g by central differences on np.asarray(x) and np.array(x.tolist())",
        answers={
            Q23: """
def jacobian_example(x):
    xn = np.asarray(x, dtype=np.float64)
    h = 1e-6
    columns = []
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        up = example(torch.from_numpy(xn + e)).numpy()
        down = example(torch.from_numpy(xn - e)).numpy()
        columns.append((up - down) / (2 * h))
    return np.stack(columns, axis=1)
""",
            Q5: """
def grad_g(x):
    xn = np.array(x.tolist())
    h = 1e-6
    columns = []
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        up = g(torch.from_numpy(xn + e)).numpy()
        down = g(torch.from_numpy(xn - e)).numpy()
        columns.append((up - down) / (2 * h))
    return torch.from_numpy(np.stack(columns, axis=1)).to(x.dtype)
"""
            + _BATCHED,
        },
        lost={
            "q2-3-jacobian-example": "numerical_difference",
            "q5-1-grad-g": "numerical_difference",
        },
    ),
    "alt_formula_through_asarray": Student(
        "the Jacobian and ∇g by the formulas, in numpy on np.asarray(x) (loses nothing)",
        answers={
            Q23: """
def jacobian_example(x):
    x1, x2 = np.asarray(x.detach(), dtype=np.float64)
    return np.array([[6 * x1, 0.0], [2 * x1, 6 * x2**2], [0.0, 10.0]])
""",
            Q5: """
def grad_g(x):
    xn = np.asarray(x)
    x0, x1 = xn[:, 0], xn[:, 1]
    c = np.cos(x0 * x1**2)
    return torch.from_numpy(np.stack([x1 + x1**2 * c, x0 + 2 * x0 * x1 * c], axis=1))
"""
            + _BATCHED,
        },
    ),
    # --- autograd ran, but the returned values came from elsewhere -------------------------
    "backward_then_product": Student(
        "Q1 runs y.backward(v), then returns the hand-written 6x·v",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    leaf = x.detach().clone().requires_grad_(True)
    (3 * leaf**2).backward(v)
    return 6 * x * v
""",
        },
        lost={"q1-vjp-y3x2": "result_not_from_autograd"},
    ),
    "alt_vjp_round_trips": Student(
        "vᵀJ taken out of autograd's result through numpy, and from autograd.grad's tuple "
        "(loses nothing)",
        answers={
            Q1: """
def vjp_y3x2(x, v):
    x = x.detach().clone().requires_grad_(True)
    (3 * x**2).backward(v)
    return torch.from_numpy(np.array(x.grad))
""",
            Q2: _VJP_FROM_JACOBIAN
            + """

def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    grads = torch.autograd.grad(f(x), (x,), grad_outputs=v)
    out = torch.empty_like(x)
    out.copy_(grads[0])
    return out
""",
        },
    ),
}
