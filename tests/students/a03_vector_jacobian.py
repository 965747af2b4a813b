"""Simulated students for 03_vector_jacobian."""

from . import Student

ASSIGNMENT = "03_vector_jacobian"

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

STUDENTS: dict[str, Student] = {
    "perfect": Student({}, about="the instructor's solutions"),
    "blank": Student({}, blank=True, about="the unmodified release notebook"),
    # --- correct alternatives --------------------------------------------------------
    "alt_functional": Student(
        {
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
    each = [torch.autograd.grad(y, x, v, retain_graph=True)[0] for v in vs]
    return torch.cumsum(torch.stack(each), dim=0)
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
        about="torch.func.vjp, autograd.functional.vjp, autograd.grad per row, jacfwd, "
        "the Jacobian of the batch sum, J.T @ v",
    ),
    "alt_float32": Student(
        {
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
        about="every answer computed in float32 (loses nothing)",
    ),
    "alt_helpers": Student(
        {
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
        about="torch.autograd.grad instead of backward, einsum, helper functions, .grad "
        "zeroed with zero_() after copying",
    ),
    # --- realistic mistakes -----------------------------------------------------------
    "accumulated_rows": Student(
        {
            Q62: _ROWS.replace("        x.grad = None\n", "").replace(
                "rows.append(x.grad)", "rows.append(x.grad.clone())"
            )
        },
        lost={"q6-2-rows"},
        diagnoses={"q6-2-rows": "accumulated_rows"},
        about=".grad not cleared between rows: row k is the sum of the true rows 0..k",
    ),
    "transposed": Student(
        {
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
        lost={"q2-3-jacobian-example", "q6-1-analytic"},
        diagnoses={"q2-3-jacobian-example": "transposed", "q6-1-analytic": "transposed"},
        about="Jacobians written inputs × outputs (one row per input)",
    ),
    "vjp_swapped": Student(
        {
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
        lost={"q1-vjp-y3x2", "q2-1-vjp-from-jacobian"},
        diagnoses={"q1-vjp-y3x2": "v_applied_twice", "q2-1-vjp-from-jacobian": "v_and_j_swapped"},
        about="J @ v instead of vᵀJ; multiplies backward(v)'s result by v again",
    ),
    "batch_layout": Student(
        {
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
        lost={"q6-3-functional", "q6-4-vmap", "q6-5-large-batch"},
        diagnoses={
            "q6-3-functional": "block_diagonal",
            "q6-4-vmap": "batch_axis",
            "q6-5-large-batch": "batch_axis",
        },
        about="the full (N, 3, N, 2) Jacobian of the batch; the batch axis moved to axis 1",
    ),
    "graph_freed": Student(
        {
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
        lost={"q3-2-accumulated", "q5-2-batched-gradient"},
        diagnoses={"q3-2-accumulated": "graph_freed", "q5-2-batched-gradient": "no_backward"},
        about="backward twice without retain_graph=True; reads x.grad without calling backward",
    ),
    "integer_tensors": Student(
        {
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
        lost={"q3-2-accumulated", "q4-q-grads"},
        diagnoses={"q3-2-accumulated": "grad_aliased", "q4-q-grads": "integer_requires_grad"},
        about="stores x.grad itself after each call (aliased); the example's a and b typed "
        "as integers",
    ),
}
