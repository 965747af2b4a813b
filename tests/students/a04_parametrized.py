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
    return torch.autograd.grad(f(x, a, b), (x, a, b))


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(f, (x, a, b))
"""

_Q1_BACKWARD = """

def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return x.grad, a.grad, b.grad
"""

_Q1_AUTOGRAD_GRAD = """

def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (x, a, b))
"""

_Q1_JACOBIAN = """

def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(f, (x, a, b))
"""

_Q2_VECTORISED = """

def per_sample_jacobian_vectorized(f, x, a, b):
    def one_sample(x_i, a, b):
        return f(x_i, a, b).reshape(())

    j_a, j_b = vmap(jacrev(one_sample, argnums=(1, 2)), in_dims=(0, None, None))(x, a, b)
    return torch.stack([j_a, j_b], dim=1)
"""

_Q4_FIRST = """

def first_derivatives(u, x, t):
    du_dt = torch.autograd.functional.jacobian(lambda t: u(x, t), t)
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    return du_dt, du_dx
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
    return leaves[0].grad, leaves[1].grad, leaves[2].grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return list(grad(f(x, a, b), [x, a, b]))


def grads_jacobian(f, x, a, b):
    j = jacobian(f, (x, a, b))
    return j[0], j[1], j[2]
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
    return x.grad, a.grad, b.grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.float().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (x, a, b))


def grads_jacobian(f, x, a, b):
    args = tuple(t.float() for t in (x, a, b))
    return torch.autograd.functional.jacobian(f, args)
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
        "stacked into one vector θ, helper functions and other names; the module loop "
        "takes torch.autograd.grad of functional_call on copies of the parameters",
        answers={
            Q1: """
def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def grads_backward(f, x, a, b):
    xx, aa, bb = _leaves(x, a, b)
    y = f(xx, aa, bb)
    y.backward()
    return xx.grad, aa.grad, bb.grad


def grads_autograd_grad(f, x, a, b):
    xx, aa, bb = _leaves(x, a, b)
    d_x, d_a, d_b = torch.autograd.grad(outputs=f(xx, aa, bb), inputs=[xx, aa, bb])
    return d_x, d_a, d_b


def grads_jacobian(f, x, a, b):
    jac = torch.autograd.functional.jacobian(lambda inp: f(inp[0], inp[1], inp[2]),
                                             torch.stack([x, a, b]))
    return jac[0], jac[1], jac[2]
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
    names = [k for k, _ in model.named_parameters()]
    leaves = [v.detach().clone().requires_grad_(True) for _, v in model.named_parameters()]
    output = _sample_output(model)
    rows = [torch.autograd.grad(output(dict(zip(names, leaves)), x_i), leaves) for x_i in x]
    return {k: torch.stack([r[j] for r in rows]) for j, k in enumerate(names)}


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
        "per-sample gradients by jacrev of an output kept at shape (1,), that axis dropped "
        "afterwards, and a zero_grad loop on the module; du/dt by vmap(jacrev), du/dx by "
        "backward with ones",
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

    grads = vmap(jacrev(output), in_dims=(None, 0))(params, x)
    return {name: g[:, 0] for name, g in grads.items()}  # (B, 1, *S) -> (B, *S)
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
        says={
            "q2-3-vectorized": ("(a, b)",),
            "q3-2-vectorized": ("`weight`",),
            "q4-1-first": ("`t`",),
        },
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
    return x.grad, a.grad, b.grad
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
    model.zero_grad()                  # leave the model as we found it
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
    x = x.detach()                     # not the caller's tensor
    x_in = x.clone()
    x.requires_grad_(True)
    f(x_in, a, b).backward()
    return x.grad, a.grad, b.grad
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
    return x.grad, a.grad, b.grad


def grads_autograd_grad(f, x, a, b):
    return grads_backward(f, x, a, b)


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(f, (x, a, b))
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
        "hard-coded as (xᵢ, 1) for the notebook's nn.Linear(1, 1), with no autograd at all",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return x.grad, a.grad, b.grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (x, a, b))


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(lambda a, b: f(x, a, b), (a, b))
""",
            Q3: """
def per_sample_grads(model, x):
    return {"weight": x.reshape(-1, 1, 1).clone(), "bias": torch.ones(len(x), 1)}
"""
            + _Q3_LOOP,
        },
        lost={"q1-3-jacobian": None, "q3-2-vectorized": "method_missing"},
        says={"q1-3-jacobian": ("(df_dx, df_da, df_db)",)},
    ),
    # --- correct alternatives the words allow -------------------------------------------
    "alt_forward_mode": Student(
        "forward mode wherever the words leave it open: functional.jacobian with "
        "strategy='forward-mode', vmap(jacfwd) for the vectorised answers, jacfwd(jacfwd) for "
        "the second derivative; central differences for Q4.1, which names no method",
        answers={
            Q1: _Q1_BACKWARD.lstrip()
            + _Q1_AUTOGRAD_GRAD
            + """

def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(
        f, (x, a, b), strategy="forward-mode", vectorize=True)
""",
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    def one_sample(x_i, a, b):
        return f(x_i, a, b).reshape(())

    j_a, j_b = vmap(torch.func.jacfwd(one_sample, argnums=(1, 2)), in_dims=(0, None, None))(x, a, b)
    return torch.stack([j_a, j_b], dim=1)
""",
            Q3: _Q3_LOOP.lstrip()
            + """

def per_sample_grads(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def output(params, x_i):
        return functional_call(model, params, (x_i.unsqueeze(0),)).sum()

    return vmap(torch.func.jacfwd(output), in_dims=(None, 0))(params, x)
""",
            Q4: """
def first_derivatives(u, x, t):
    h = 1e-6
    du_dx = (u(x + h, t) - u(x - h, t)) / (2 * h)
    columns = []
    for j in range(len(t)):
        e = torch.zeros_like(t)
        e[j] = h
        columns.append((u(x, t + e) - u(x, t - e)) / (2 * h))
    return torch.stack(columns, dim=1), du_dx


def second_derivative(u, x, t):
    return vmap(torch.func.jacfwd(torch.func.jacfwd(u)), in_dims=(0, None))(x, t)
""",
        },
    ),
    "alt_sample_by_sample": Student(
        "a forward pass per sample in the loops (f or the model on one row, backward of "
        "it), grads of the model's own parameters, is_grads_batched on functional_call, "
        "torch.func.hessian for the second derivative",
        answers={
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    rows = []
    for i in range(len(x)):
        a_i = a.detach().clone().requires_grad_(True)
        b_i = b.detach().clone().requires_grad_(True)
        f(x[i : i + 1], a_i, b_i).sum().backward()
        rows.append(torch.stack([a_i.grad, b_i.grad]))
    return torch.stack(rows)
"""
            + _Q2_FUNCTIONAL
            + _Q2_VECTORISED,
            Q3: """
def per_sample_grads_loop(model, x):
    names = [name for name, _ in model.named_parameters()]
    rows = [torch.autograd.grad(model(x[i : i + 1]).sum(), list(model.parameters()))
            for i in range(len(x))]
    return {name: torch.stack([r[k] for r in rows]) for k, name in enumerate(names)}


def per_sample_grads(model, x):
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    out = functional_call(model, params, (x,)).reshape(-1)
    eye = torch.eye(len(out), dtype=out.dtype)
    grads = torch.autograd.grad(out, list(params.values()), grad_outputs=eye,
                                is_grads_batched=True)
    return {name: g for name, g in zip(params, grads)}
""",
            Q4: _Q4_FIRST.lstrip()
            + """

def second_derivative(u, x, t):
    return vmap(torch.func.hessian(u), in_dims=(0, None))(x, t)
""",
        },
    ),
    # --- right values, not the way asked ----------------------------------------------
    "fd_for_x": Student(
        "the parameters' gradients with the API asked, ∂f/∂x by a central difference "
        "(x is data, after all)",
        answers={
            Q1: """
def _central_x(f, x, a, b, h=1e-6):
    return (f(x + h, a, b) - f(x - h, a, b)) / (2 * h)


def grads_backward(f, x, a, b):
    a, b = (t.detach().clone().requires_grad_(True) for t in (a, b))
    f(x, a, b).backward()
    return _central_x(f, x, a.detach(), b.detach()), a.grad, b.grad


def grads_autograd_grad(f, x, a, b):
    a, b = (t.detach().clone().requires_grad_(True) for t in (a, b))
    df_da, df_db = torch.autograd.grad(f(x, a, b), (a, b))
    return _central_x(f, x, a.detach(), b.detach()), df_da, df_db


def grads_jacobian(f, x, a, b):
    df_da, df_db = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b), (a, b))
    return _central_x(f, x, a, b), df_da, df_db
""",
        },
        lost={
            "q1-1-backward": "numerical_difference",
            "q1-2-autograd-grad": "numerical_difference",
            "q1-3-jacobian": "numerical_difference",
        },
        says={"q1-1-backward": ("shifted",)},
    ),
    "mixed_apis": Student(
        "part of the triple another way: ∂f/∂x with forward-mode dual numbers in Q1.1, "
        "with backward in Q1.2; torch.func.jacrev in place of functional.jacobian in Q1.3",
        answers={
            Q1: """
import torch.autograd.forward_ad as fwAD


def grads_backward(f, x, a, b):
    a, b = (t.detach().clone().requires_grad_(True) for t in (a, b))
    f(x, a, b).backward()
    with fwAD.dual_level():
        out = f(fwAD.make_dual(x, torch.ones_like(x)), a.detach(), b.detach())
        df_dx = fwAD.unpack_dual(out).tangent
    return df_dx, a.grad, b.grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    out = f(x, a, b)
    df_da, df_db = torch.autograd.grad(out, (a, b), retain_graph=True)
    out.backward()
    return x.grad, df_da, df_db


def grads_jacobian(f, x, a, b):
    return torch.func.jacrev(f, argnums=(0, 1, 2))(x, a, b)
""",
        },
        lost={
            "q1-1-backward": "wrong_api",
            "q1-2-autograd-grad": "wrong_api",
            "q1-3-jacobian": "wrong_api",
        },
        says={"q1-2-autograd-grad": ("backward",), "q1-3-jacobian": ("torch.func.jacrev",)},
    ),
    "jacobian_everywhere": Student(
        "functional.jacobian (or a torch.func transform) where the loops were asked: it "
        "loops internally, so the values are right, but the explicit loop is the point",
        answers={
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b).reshape(-1), (a, b))
    return torch.stack([j_a, j_b], dim=1)
"""
            + _Q2_FUNCTIONAL
            + _Q2_VECTORISED,
            Q3: """
def per_sample_grads_loop(model, x):
    params = {n: p.detach() for n, p in model.named_parameters()}
    names = list(params)

    def out(*values):
        return functional_call(model, dict(zip(names, values)), (x,)).reshape(-1)

    jac = torch.autograd.functional.jacobian(out, tuple(params.values()))
    return dict(zip(names, jac))
"""
            + _Q3_VECTORISED,
        },
        lost={"q2-1-loop": "not_a_loop", "q3-1-loop": "not_a_loop"},
        says={"q2-1-loop": ("torch.autograd.functional.jacobian",)},
    ),
    "func_grad_loop": Student(
        "the module loop with torch.func.grad per sample: a reverse pass per sample, but not "
        "the backward or torch.autograd.grad the question names",
        answers={
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
        },
        lost={"q3-1-loop": "not_a_loop"},
        says={"q3-1-loop": ("torch.func.grad",)},
    ),
    "two_grads_per_sample": Student(
        "the loop asks torch.autograd.grad once for a and once for b, so two backward "
        "passes per sample where the question counts one",
        answers={
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = []
    for i in range(out.numel()):
        (g_a,) = torch.autograd.grad(out[i], a, retain_graph=True)
        (g_b,) = torch.autograd.grad(out[i], b, retain_graph=True)
        rows.append(torch.stack([g_a, g_b]))
    return torch.stack(rows)
"""
            + _Q2_FUNCTIONAL
            + _Q2_VECTORISED,
        },
        lost={"q2-1-loop": "not_a_loop"},
    ),
    "forward_loops": Student(
        "a Python loop of per-sample jacfwd calls as the 'vectorised' answers: no vmap, "
        "forward mode entered once per sample",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    rows = []
    for i in range(x.shape[0]):
        j_a, j_b = torch.func.jacfwd(lambda a, b: f(x[i], a, b).reshape(()), argnums=(0, 1))(a, b)
        rows.append(torch.stack([j_a, j_b]))
    return torch.stack(rows)
""",
            Q3: _Q3_LOOP.lstrip()
            + """

def per_sample_grads(model, x):
    params = {n: p.detach() for n, p in model.named_parameters()}
    rows = {n: [] for n in params}
    for i in range(x.shape[0]):
        jac = torch.func.jacfwd(lambda p: functional_call(model, p, (x[i : i + 1],)).sum())(params)
        for n in params:
            rows[n].append(jac[n])
    return {n: torch.stack(r) for n, r in rows.items()}
""",
        },
        lost={"q2-3-vectorized": "not_vectorised", "q3-2-vectorized": "not_vectorised"},
    ),
    "whole_batch_jacobian": Student(
        "one Jacobian of the whole batch's outputs, functional.jacobian(vectorize=True) "
        "and jacrev without vmap: vectorised inside, but neither is_grads_batched nor vmap",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(
        lambda a, b: f(x, a, b).reshape(-1), (a, b), vectorize=True)
    return torch.stack([j_a, j_b], dim=1)
""",
            Q3: _Q3_LOOP.lstrip()
            + """

def per_sample_grads(model, x):
    params = {n: p.detach() for n, p in model.named_parameters()}
    return jacrev(lambda p: functional_call(model, p, (x,)).reshape(-1))(params)
""",
        },
        lost={"q2-3-vectorized": "wrong_api", "q3-2-vectorized": "wrong_api"},
        says={"q2-3-vectorized": ("is_grads_batched",)},
    ),
    "finite_differences": Student(
        "central differences in a and b for the vectorised Jacobian (no autograd, no loop); "
        "the module's parameters nudged one entry at a time; the second derivative by "
        "differencing du/dx from autograd",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    h = 1e-6
    col_a = (f(x, a + h, b) - f(x, a - h, b)).reshape(-1) / (2 * h)
    col_b = (f(x, a, b + h) - f(x, a, b - h)).reshape(-1) / (2 * h)
    return torch.stack([col_a, col_b], dim=1)
""",
            Q3: _Q3_LOOP.lstrip()
            + """

def per_sample_grads(model, x):
    h = 1e-6
    params = {n: p.detach() for n, p in model.named_parameters()}
    out = {}
    for name, p in params.items():
        cols = []
        for k in range(p.numel()):
            e = torch.zeros_like(p).reshape(-1)
            e[k] = h
            e = e.reshape(p.shape)
            up = functional_call(model, {**params, name: p + e}, (x,)).reshape(-1)
            down = functional_call(model, {**params, name: p - e}, (x,)).reshape(-1)
            cols.append((up - down) / (2 * h))
        out[name] = torch.stack(cols, dim=1).reshape(len(x), *p.shape)
    return out
""",
            Q4: _Q4_FIRST.lstrip()
            + """

def second_derivative(u, x, t):
    h = 1e-5

    def du_dx(x):
        x = x.detach().clone().requires_grad_(True)
        return torch.autograd.grad(u(x, t).sum(), x)[0]

    return (du_dx(x + h) - du_dx(x - h)) / (2 * h)
""",
        },
        lost={
            "q2-3-vectorized": "numerical_difference",
            "q3-2-vectorized": "method_missing",
            "q4-2-second": "numerical_difference",
        },
    ),
    "second_differences": Student(
        "the second derivative by the second-order central difference, in float64 with h = 1e-4",
        answers={
            Q4: _Q4_FIRST.lstrip()
            + """

def second_derivative(u, x, t):
    h = 1e-4
    return (u(x + h, t) - 2 * u(x, t) + u(x - h, t)) / h**2
""",
        },
        lost={"q4-2-second": "numerical_difference"},
    ),
    "differences_in_float32": Student(
        "differences computed with a larger step and returned in float32, where the "
        "tolerance is looser: Q2.3 in a and b, Q4.2 the second-order difference",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    h = 1e-3
    col_a = (f(x, a + h, b) - f(x, a - h, b)).reshape(-1) / (2 * h)
    col_b = (f(x, a, b + h) - f(x, a, b - h)).reshape(-1) / (2 * h)
    return torch.stack([col_a, col_b], dim=1).float()
""",
            Q4: _Q4_FIRST.lstrip()
            + """

def second_derivative(u, x, t):
    h = 1e-3
    return ((u(x + h, t) - 2 * u(x, t) + u(x - h, t)) / h**2).float()
""",
        },
        lost={"q2-3-vectorized": "numerical_difference", "q4-2-second": "numerical_difference"},
    ),
    # --- the caller's tensors and model changed ------------------------------------------
    "callers_tensors": Student(
        "requires_grad switched on for the tensors the caller passed, instead of copies: "
        "the caller's a, x change, and a second call with the same tensors accumulates",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    for t in (x, a, b):
        t.requires_grad_(True)
    f(x, a, b).backward()
    return x.grad, a.grad, b.grad
"""
            + _Q1_AUTOGRAD_GRAD_AND_JACOBIAN,
            Q2: """
def per_sample_jacobian_loop(f, x, a, b):
    a.requires_grad_(True)
    b.requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = []
    for i in range(out.numel()):
        rows.append(torch.stack(torch.autograd.grad(out[i], (a, b), retain_graph=True)))
    return torch.stack(rows)
"""
            + _Q2_FUNCTIONAL
            + _Q2_VECTORISED,
            Q4: """
def first_derivatives(u, x, t):
    du_dt = torch.autograd.functional.jacobian(lambda t: u(x, t), t)
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    return du_dt, du_dx


def second_derivative(u, x, t):
    x.requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x, create_graph=True)
    (d2u_dx2,) = torch.autograd.grad(du_dx.sum(), x)
    return d2u_dx2
""",
        },
        lost={
            "q1-1-backward": "changed_input",
            "q2-1-loop": "changed_input",
            "q4-2-second": "changed_input",
        },
    ),
    "leaky_module_grad": Student(
        "the module loop zeroes .grad before each sample's backward but not after the last: "
        "the model keeps the last sample's gradients; the vectorised answer switches the "
        "parameters' requires_grad off",
        answers={
            Q3: """
def per_sample_grads_loop(model, x):
    out = model(x).reshape(-1)
    rows = {n: [] for n, _ in model.named_parameters()}
    for i in range(out.numel()):
        model.zero_grad()
        out[i].backward(retain_graph=True)
        for n, p in model.named_parameters():
            rows[n].append(p.grad.clone())
    return {n: torch.stack(r) for n, r in rows.items()}


def per_sample_grads(model, x):
    for p in model.parameters():
        p.requires_grad_(False)        # only the copies below need gradients
    params = {n: p.detach() for n, p in model.named_parameters()}

    def output(params, x_i):
        return functional_call(model, params, (x_i.unsqueeze(0),)).sum()

    return vmap(jacrev(output), in_dims=(None, 0))(params, x)
""",
        },
        lost={"q3-1-loop": "changed_model", "q3-2-vectorized": "changed_model"},
        says={"q3-1-loop": ("`weight`",)},
    ),
    "grads_accumulate": Student(
        "the module loop never clears .grad between samples (only once at the end, to leave "
        "the model clean): row i holds the sum of the gradients of samples 0..i",
        answers={
            Q3: """
def per_sample_grads_loop(model, x):
    rows = {n: [] for n, _ in model.named_parameters()}
    for i in range(len(x)):
        model(x[i : i + 1]).sum().backward()
        for n, p in model.named_parameters():
            rows[n].append(p.grad.clone())
    model.zero_grad()
    return {n: torch.stack(r) for n, r in rows.items()}
"""
            + _Q3_VECTORISED,
        },
        lost={"q3-1-loop": "accumulated_over_samples"},
        says={"q3-1-loop": ("`weight`",)},
    ),
    # --- what is returned ---------------------------------------------------------------
    "python_numbers": Student(
        "gradients converted to Python numbers or numpy: .item() in Q1.1, float() in Q1.2, "
        ".numpy() in Q2.2, .tolist() in Q4.2",
        answers={
            Q1: """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return x.grad.item(), a.grad.item(), b.grad.item()


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return tuple(float(g) for g in torch.autograd.grad(f(x, a, b), (x, a, b)))
"""
            + _Q1_JACOBIAN,
            Q2: _Q2_LOOP.lstrip()
            + """

def per_sample_jacobian_functional(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b).reshape(-1), (a, b))
    return torch.stack([j_a, j_b], dim=1).numpy()
"""
            + _Q2_VECTORISED,
            Q4: _Q4_FIRST.lstrip()
            + """

def second_derivative(u, x, t):
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x, create_graph=True)
    (d2u_dx2,) = torch.autograd.grad(du_dx.sum(), x)
    return d2u_dx2.tolist()
""",
        },
        lost={
            "q1-1-backward": "wrong_type",
            "q1-2-autograd-grad": "wrong_type",
            "q2-2-functional": "wrong_type",
            "q4-2-second": "wrong_type",
        },
    ),
    "keep_output_dim": Student(
        "outputs of shape (1,) differentiated as they are: jacrev keeps the size-1 axis, "
        "(B, 2, 1) for (B, 2) and (B, 1, *S) for (B, *S); rows flattened to (B, 1) for the "
        "(B, 1, 1) weight; du/dx of a column x, (N, 1) for (N,)",
        answers={
            Q2: _Q2_LOOP.lstrip()
            + _Q2_FUNCTIONAL
            + """

def per_sample_jacobian_vectorized(f, x, a, b):
    j_a, j_b = vmap(jacrev(f, argnums=(1, 2)), in_dims=(0, None, None))(x, a, b)
    return torch.stack([j_a, j_b], dim=1)
""",
            Q3: """
def per_sample_grads_loop(model, x):
    names = [n for n, _ in model.named_parameters()]
    out = model(x).reshape(-1)
    rows = {n: [] for n in names}
    for i in range(out.numel()):
        grads = torch.autograd.grad(out[i], list(model.parameters()), retain_graph=True)
        for n, g in zip(names, grads):
            rows[n].append(g.flatten())
    return {n: torch.stack(r) for n, r in rows.items()}


def per_sample_grads(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def output(params, x_i):
        return functional_call(model, params, (x_i[None],))[0]

    return vmap(jacrev(output), in_dims=(None, 0))(params, x)
""",
            Q4: """
def first_derivatives(u, x, t):
    du_dt = torch.autograd.functional.jacobian(lambda t: u(x, t), t)
    x = x.detach().clone().reshape(-1, 1).requires_grad_(True)   # one sample per row
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    return du_dt, du_dx
"""
            + _Q4_SECOND,
        },
        lost={
            "q2-3-vectorized": "size_one_dims",
            "q3-1-loop": "size_one_dims",
            "q3-2-vectorized": "size_one_dims",
            "q4-1-first": "size_one_dims",
        },
        says={"q3-1-loop": ("`weight`",)},
    ),
    "grads_as_list": Student(
        "per-sample gradients returned in the order of model.parameters(), a list and a "
        "tuple, instead of the dict keyed by name",
        answers={
            Q3: """
def per_sample_grads_loop(model, x):
    out = model(x).reshape(-1)
    rows = [torch.autograd.grad(out[i], list(model.parameters()), retain_graph=True)
            for i in range(out.numel())]
    return [torch.stack([r[k] for r in rows]) for k in range(len(rows[0]))]


def per_sample_grads(model, x):
    params = tuple(p.detach() for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def output(params, x_i):
        return functional_call(model, dict(zip(names, params)), (x_i[None],)).sum()

    return vmap(jacrev(output), in_dims=(None, 0))(params, x)
""",
        },
        lost={"q3-1-loop": "parameter_names", "q3-2-vectorized": "parameter_names"},
    ),
    "parameters_first": Student(
        "Q1's derivatives returned parameters first, (df_da, df_db, df_dx), not in the order "
        "of the arguments (x, a, b)",
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
    return torch.autograd.functional.jacobian(lambda a, b, x: f(x, a, b), (a, b, x))
"""
        },
        lost={
            "q1-1-backward": "swapped_outputs",
            "q1-2-autograd-grad": "swapped_outputs",
            "q1-3-jacobian": "swapped_outputs",
        },
        says={"q1-1-backward": ("(df_dx, df_da, df_db)",)},
    ),
}
