"""Simulated students for 04_parametrized."""

import re

from . import Student

ASSIGNMENT = "04_parametrized"
POINTS = 13

Q1, Q2, Q3, Q4 = "q1-answer", "q2-answer", "q3-answer", "q4-answer"

# The solution's answers to the questions a student below leaves right, so that an answer
# cell holding several functions changes only the one that is wrong.
_Q1_AUTOGRAD_GRAD_AND_JACOBIAN = """

def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (a, b, x))


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(lambda a, b, x: f(x, a, b), (a, b, x))
"""

_Q2_FUNCTIONAL = """

def per_sample_jacobian_functional(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b).reshape(-1), (a, b))
    return torch.stack([j_a, j_b], dim=1)
"""

_Q2_LOOP = """

def per_sample_jacobian_loop(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = []
    for i in range(out.numel()):
        rows.append(torch.stack(torch.autograd.grad(out[i], (a, b), retain_graph=True)))
    return torch.stack(rows)
"""

_Q3_LOOP = """

def per_sample_grads_loop(model, x):
    params = dict(model.named_parameters())
    out = model(x).reshape(-1)
    rows = {name: [] for name in params}
    for i in range(out.numel()):
        grads = torch.autograd.grad(out[i], list(params.values()), retain_graph=True)
        for name, grad in zip(params, grads):
            rows[name].append(grad)
    return {name: torch.stack(r) for name, r in rows.items()}
"""

_Q3_VECTORISED = """

def per_sample_grads(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def output(params, x_i):
        return functional_call(model, params, (x_i.unsqueeze(0),)).sum()

    return vmap(jacrev(output), in_dims=(None, 0))(params, x)
"""

_Q4_SECOND = """

def second_derivative(u, x, t):
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x, create_graph=True)
    (d2u_dx2,) = torch.autograd.grad(du_dx.sum(), x)
    return d2u_dx2
"""

STUDENTS: dict[str, Student] = {
    "perfect": Student(
        "the instructor's solutions",
        # The loop and the vectorised answer timed at B = 1000: vectorised at least 10× faster.
        prints=(re.compile(r"B = 1000.*-> *(?:[1-9]\d|\d{3,})(?:\.\d*)?x"),),
    ),
    "blank": Student("the unmodified release notebook", blank=True),
    # --- correct alternatives --------------------------------------------------------
    "alt_autograd_grad": Student(
        "imported grad/jacobian, is_grads_batched for every per-sample answer, a "
        "zero_grad loop on the module, grad_outputs of ones",
        answers={
            Q1: """
from torch.autograd import grad
from torch.autograd.functional import jacobian


def grads_backward(f, x, a, b):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, a, b)]
    out = f(*leaves)
    out.backward()
    return leaves[1].grad, leaves[2].grad, leaves[0].grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return list(grad(f(x, a, b), [a, b, x]))


def grads_jacobian(f, x, a, b):
    j = jacobian(f, (x, a, b))
    return j[1], j[2], j[0]
""",
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = [torch.stack(torch.autograd.grad(out[i], (a, b), retain_graph=True))
            for i in range(len(out))]
    return torch.stack(rows)


def per_sample_jacobian_functional(f, x, a, b):
    j = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b), (a, b), vectorize=True)
    return torch.cat([j[0], j[1]], dim=1)


def per_sample_jacobian_vectorized(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    j_a, j_b = torch.autograd.grad(out, (a, b), torch.eye(len(out)), is_grads_batched=True)
    return torch.stack([j_a, j_b], dim=1)
""",
            Q3: """
def per_sample_grads_loop(model, x):
    rows = {name: [] for name, _ in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        model(x[i : i + 1]).sum().backward()
        for name, p in model.named_parameters():
            rows[name].append(p.grad.clone())
    model.zero_grad()
    return {name: torch.stack(r) for name, r in rows.items()}


def per_sample_grads(model, x):
    params = dict(model.named_parameters())
    out = model(x).reshape(-1)
    eye = torch.eye(len(out), dtype=out.dtype)
    grads = torch.autograd.grad(out, list(params.values()), eye, is_grads_batched=True)
    return dict(zip(params, grads))
""",
            Q4: """
def first_derivatives(u, x, t):
    t = t.detach().clone().requires_grad_(True)
    out = u(x, t)
    eye = torch.eye(len(out), dtype=out.dtype)
    (du_dt,) = torch.autograd.grad(out, t, eye, is_grads_batched=True)
    x = x.detach().clone().requires_grad_(True)
    out = u(x, t.detach())
    out.backward(torch.ones_like(out))
    return du_dt, x.grad


def second_derivative(u, x, t):
    x = x.detach().clone().requires_grad_(True)
    out = u(x, t)
    (du_dx,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
    (d2,) = torch.autograd.grad(du_dx, x, torch.ones_like(du_dx))
    return d2
""",
        },
    ),
    "alt_float32": Student(
        "every answer computed in float32, the module run with float32 copies of its "
        "parameters (loses nothing)",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    x, a, b = (t.float().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return a.grad, b.grad, x.grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.float().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (a, b, x))


def grads_jacobian(f, x, a, b):
    args = tuple(t.float() for t in (a, b, x))
    return torch.autograd.functional.jacobian(lambda a, b, x: f(x, a, b), args)
""",
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    x = x.float()
    a = a.float().requires_grad_(True)
    b = b.float().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = []
    for i in range(out.numel()):
        ga, gb = torch.autograd.grad(out[i], (a, b), retain_graph=True)
        rows.append(torch.stack([ga, gb]))
    return torch.stack(rows)


def per_sample_jacobian_functional(f, x, a, b):
    x = x.float()
    j_a, j_b = torch.autograd.functional.jacobian(
        lambda a, b: f(x, a, b).reshape(-1), (a.float(), b.float()))
    return torch.stack([j_a, j_b], dim=1)


def per_sample_jacobian_vectorized(f, x, a, b):
    def one(x_i, a, b):
        return f(x_i, a, b).reshape(())

    j_a, j_b = vmap(jacrev(one, argnums=(1, 2)), in_dims=(0, None, None))(
        x.float(), a.float(), b.float())
    return torch.stack([j_a, j_b], dim=1)
""",
            Q3: """
def _float_params(model):
    return {name: p.detach().float() for name, p in model.named_parameters()}


def per_sample_grads_loop(model, x):
    params = {k: v.requires_grad_(True) for k, v in _float_params(model).items()}
    out = functional_call(model, params, (x.float(),)).reshape(-1)
    rows = {name: [] for name in params}
    for i in range(out.numel()):
        grads = torch.autograd.grad(out[i], list(params.values()), retain_graph=True)
        for name, g in zip(params, grads):
            rows[name].append(g)
    return {name: torch.stack(r) for name, r in rows.items()}


def per_sample_grads(model, x):
    def output(params, x_i):
        return functional_call(model, params, (x_i.unsqueeze(0),)).sum()

    return vmap(jacrev(output), in_dims=(None, 0))(_float_params(model), x.float())
""",
            Q4: """
def first_derivatives(u, x, t):
    x, t = x.float(), t.float()
    du_dt = torch.autograd.functional.jacobian(lambda t: u(x, t), t)
    x = x.requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    return du_dt, du_dx


def second_derivative(u, x, t):
    x = x.float().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t.float()).sum(), x, create_graph=True)
    (d2u_dx2,) = torch.autograd.grad(du_dx.sum(), x)
    return d2u_dx2
""",
        },
    ),
    "alt_renamed": Student(
        "torch.func everywhere it is allowed (grad, vmap, jacrev), the parameters "
        "stacked into one vector θ, helper functions and other names",
        answers={
            Q1: """
def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def grads_backward(f, x, a, b):
    xx, aa, bb = _leaves(x, a, b)
    y = f(xx, aa, bb)
    y.backward()
    return aa.grad, bb.grad, xx.grad


def grads_autograd_grad(f, x, a, b):
    xx, aa, bb = _leaves(x, a, b)
    d_a, d_b, d_x = torch.autograd.grad(outputs=f(xx, aa, bb), inputs=[aa, bb, xx])
    return d_a, d_b, d_x


def grads_jacobian(f, x, a, b):
    jac = torch.autograd.functional.jacobian(lambda inp: f(inp[0], inp[1], inp[2]),
                                             torch.stack([x, a, b]))
    return jac[1], jac[2], jac[0]
""",
            Q2: """
def _params(a, b):
    return torch.stack([a, b])


def per_sample_jacobian_loop(f, x, a, b):
    theta = _params(a, b).detach().requires_grad_(True)
    out = f(x, theta[0], theta[1]).reshape(-1)
    rows = []
    for i in range(out.numel()):
        (row,) = torch.autograd.grad(out[i], theta, retain_graph=True)
        rows.append(row)
    return torch.stack(rows)


def per_sample_jacobian_functional(f, x, a, b):
    return torch.autograd.functional.jacobian(
        lambda theta: f(x, theta[0], theta[1]).reshape(-1), _params(a, b))


def per_sample_jacobian_vectorized(f, x, a, b):
    def one(theta, x_i):
        return f(x_i, theta[0], theta[1]).sum()

    return vmap(torch.func.grad(one), in_dims=(None, 0))(_params(a, b), x)
""",
            Q3: """
def _sample_output(model):
    def output(params, x_i):
        return functional_call(model, params, (x_i[None],)).sum()
    return output


def per_sample_grads_loop(model, x):
    params = {k: v.detach() for k, v in model.named_parameters()}
    grad_one = torch.func.grad(_sample_output(model))
    rows = [grad_one(params, x_i) for x_i in x]
    return {k: torch.stack([r[k] for r in rows]) for k in params}


def per_sample_grads(model, x):
    params = {k: v.detach() for k, v in model.named_parameters()}
    return vmap(torch.func.grad(_sample_output(model)), in_dims=(None, 0))(params, x)
""",
            Q4: """
def first_derivatives(u, x, t):
    du_dt = vmap(jacrev(u, argnums=1), in_dims=(0, None))(x, t)
    du_dx = vmap(torch.func.grad(u), in_dims=(0, None))(x, t)
    return du_dt, du_dx


def second_derivative(u, x, t):
    return vmap(torch.func.grad(torch.func.grad(u)), in_dims=(0, None))(x, t)
""",
        },
    ),
    "alt_keep_dims": Student(
        "per-sample gradients by jacrev of an output kept at shape (1,), and a zero_grad "
        "loop on the module; du/dt by vmap(jacrev), du/dx by backward with ones",
        answers={
            Q3: """
def per_sample_grads_loop(model, x):
    rows = {name: [] for name, _ in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        model(x[i : i + 1]).sum().backward()
        for name, p in model.named_parameters():
            rows[name].append(p.grad.clone())
    model.zero_grad()
    return {name: torch.stack(r) for name, r in rows.items()}


def per_sample_grads(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def output(params, x_i):
        return functional_call(model, params, (x_i[None],))[0]  # shape (1,): jacrev keeps it

    return vmap(jacrev(output), in_dims=(None, 0))(params, x)
""",
            Q4: """
def first_derivatives(u, x, t):
    du_dt = vmap(jacrev(u, argnums=1), in_dims=(0, None))(x, t)
    x = x.detach().clone().requires_grad_(True)
    out = u(x, t)
    out.backward(torch.ones_like(out))
    return du_dt, x.grad


def second_derivative(u, x, t):
    x = x.detach().clone().requires_grad_(True)
    out = u(x, t)
    (du_dx,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
    (d2,) = torch.autograd.grad(du_dx, x, torch.ones_like(du_dx))
    return d2
""",
        },
    ),
    # --- realistic mistakes -----------------------------------------------------------
    "summed_batch": Student(
        "differentiates the batch's summed output: one gradient for the whole batch "
        "where one row per sample was asked",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    return torch.stack(torch.autograd.grad(f(x, a, b).sum(), (a, b)))
""",
            Q3: """
def per_sample_grads_loop(model, x):
    params = dict(model.named_parameters())
    out = model(x).reshape(-1)
    rows = {name: [] for name in params}
    for i in range(out.numel()):
        grads = torch.autograd.grad(out[i], list(params.values()), retain_graph=True)
        for name, grad in zip(params, grads):
            rows[name].append(grad)
    return {name: torch.stack(r) for name, r in rows.items()}


def per_sample_grads(model, x):
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    out = functional_call(model, params, (x,)).sum()
    return dict(zip(params, torch.autograd.grad(out, list(params.values()))))
""",
            Q4: """
def first_derivatives(u, x, t):
    t = t.detach().clone().requires_grad_(True)
    (du_dt,) = torch.autograd.grad(u(x, t).sum(), t)
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    return du_dt, du_dx
"""
            + _Q4_SECOND,
        },
        lost={
            "q2-3-vectorized": "summed_over_batch",
            "q3-2-vectorized": "summed_over_batch",
            "q4-1-first": "summed_over_batch",
        },
        says={"q2-3-vectorized": ("(a, b)",), "q3-2-vectorized": ("`weight`",), "q4-1-first": ("`t`",)},
    ),
    "no_create_graph": Student(
        "du/dx as the (N, N) Jacobian of the batch instead of one number per point; the "
        "second derivative without create_graph=True",
        answers={
            Q4: """
def first_derivatives(u, x, t):
    du_dt = torch.autograd.functional.jacobian(lambda t: u(x, t), t)
    du_dx = torch.autograd.functional.jacobian(lambda x: u(x, t), x)
    return du_dt, du_dx


def second_derivative(u, x, t):
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    (d2u_dx2,) = torch.autograd.grad(du_dx.sum(), x)
    return d2u_dx2
""",
        },
        lost={"q4-1-first": "per_sample_not_summed", "q4-2-second": "no_grad_fn"},
        says={"q4-2-second": ("create_graph=True", "RuntimeError: element 0")},
    ),
    "wrong_tensors": Student(
        "passes x to f as a number (.item()), so x.grad stays None; reads gradients "
        "off copies the model never runs with (all zeros)",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x.item(), a, b).backward()       # x is data: pass it as a number
    return a.grad, b.grad, x.grad
"""
            + _Q1_AUTOGRAD_GRAD_AND_JACOBIAN,
            Q3: """
def per_sample_grads_loop(model, x):
    params = dict(model.named_parameters())
    rows = {name: [] for name in params}
    for i in range(len(x)):
        # fresh copies each time, so that nothing accumulates
        for name, p in params.items():
            params[name] = p.detach().clone().requires_grad_(True)
            params[name].grad = torch.zeros_like(p)
        model(x[i : i + 1]).sum().backward()
        for name, p in params.items():
            rows[name].append(p.grad.clone())
    return {name: torch.stack(r) for name, r in rows.items()}
"""
            + _Q3_VECTORISED,
        },
        lost={"q1-1-backward": "detached", "q3-1-loop": "all_zero"},
        says={"q3-1-loop": ("`weight`",)},
    ),
    "rows_not_cleared": Student(
        "requires_grad set on x after the copy used in f was made; the per-sample loop "
        "never clears .grad",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    a, b = (t.detach().clone().requires_grad_(True) for t in (a, b))
    x_in = x.clone()                   # keep the caller's x as it is
    x.requires_grad_(True)
    f(x_in, a, b).backward()
    return a.grad, b.grad, x.grad
"""
            + _Q1_AUTOGRAD_GRAD_AND_JACOBIAN,
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = []
    for i in range(out.numel()):
        e_i = torch.zeros_like(out)
        e_i[i] = 1.0
        out.backward(e_i, retain_graph=True)
        rows.append(torch.stack([a.grad, b.grad]))
    return torch.stack(rows)
"""
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    def one_sample(x_i, a, b):
        return f(x_i, a, b).reshape(())

    j_a, j_b = vmap(jacrev(one_sample, argnums=(1, 2)), in_dims=(0, None, None))(x, a, b)
    return torch.stack([j_a, j_b], dim=1)
""",
        },
        lost={"q1-1-backward": "requires_grad_after_copy", "q2-1-loop": "accumulated_rows"},
        says={"q2-1-loop": ("`a`",)},
    ),
    "not_vectorised": Student(
        "jacobian's blocks returned as they come (2, B); the loop called again as the "
        "'vectorised' answer; gradients keyed a/b instead of the parameter names",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + """

def per_sample_jacobian_functional(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b).reshape(-1), (a, b))
    return [j_a, j_b]


def per_sample_jacobian_vectorized(f, x, a, b):
    return per_sample_jacobian_loop(f, x, a, b)
""",
            Q3: """
def per_sample_grads_loop(model, x):
    w, b = model.weight, model.bias
    rows_w, rows_b = [], []
    for i in range(len(x)):
        gw, gb = torch.autograd.grad(model(x[i : i + 1]).sum(), (w, b))
        rows_w.append(gw)
        rows_b.append(gb)
    return {"a": torch.stack(rows_w), "b": torch.stack(rows_b)}
"""
            + _Q3_VECTORISED,
        },
        lost={
            "q2-2-functional": "transposed",
            "q2-3-vectorized": "not_vectorised",
            "q3-1-loop": "parameter_names",
        },
        says={"q2-2-functional": ("(a, b)",), "q3-1-loop": ("`weight`",)},
    ),
    "api_shortcuts": Student(
        "calls the backward answer where torch.autograd.grad was asked, and the "
        "vectorised answer where the loop was asked: right values, not the way asked",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return a.grad, b.grad, x.grad


def grads_autograd_grad(f, x, a, b):
    return grads_backward(f, x, a, b)


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(lambda a, b, x: f(x, a, b), (a, b, x))
""",
            Q3: _Q3_VECTORISED.lstrip()
            + """

def per_sample_grads_loop(model, x):
    return per_sample_grads(model, x)       # same numbers, faster
""",
        },
        lost={"q1-2-autograd-grad": "wrong_api", "q3-1-loop": "not_a_loop"},
        says={"q1-2-autograd-grad": ("torch.autograd.grad",)},
    ),
    "incomplete": Student(
        "the Jacobian taken with respect to (a, b) only, x left out; per-sample gradients "
        "hard-coded as (xᵢ, 1) for the notebook's nn.Linear(1, 1): they pass the visible "
        "test, not the hidden one, which also uses modules with other parameters",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return a.grad, b.grad, x.grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (a, b, x))


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(lambda a, b: f(x, a, b), (a, b))
""",
            Q3: """
def per_sample_grads(model, x):
    return {"weight": x.reshape(-1, 1, 1).clone(), "bias": torch.ones(len(x), 1)}
"""
            + _Q3_LOOP,
        },
        lost={"q1-3-jacobian": None, "q3-2-vectorized": "wrong_layout"},
        says={"q1-3-jacobian": ("(df_da, df_db, df_dx)",), "q3-2-vectorized": ("`weight`",)},
    ),
}
