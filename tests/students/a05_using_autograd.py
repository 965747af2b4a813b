"""Simulated students for 05_using_autograd."""

from . import Student

ASSIGNMENT = "05_using_autograd"
POINTS = 13

Q1, Q2, Q3, Q4 = "q1-answer", "q2-answer", "q3-answer", "q4-answer"

# --- Q1 pieces: the Function, then the three functions that use it -------------------------

_FUNCTION = """
class StableSoftplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * torch.sigmoid(x)
"""


def _function(forward: str, backward: str, saved: str = "x") -> str:
    return f"""
class StableSoftplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        {forward}

    @staticmethod
    def backward(ctx, grad_output):
        ({saved},) = ctx.saved_tensors
        {backward}
"""


_USES = """

def softplus(x):
    return StableSoftplus.apply(x)


def softplus_grad(x, v):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(softplus(x), x, v)
    return g
"""

_SECOND = """

def softplus_second(x):
    x = x.detach().clone().requires_grad_(True)
    y = softplus(x)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
    (g2,) = torch.autograd.grad(g, x, torch.ones_like(g))
    return g2
"""

# --- Q2 pieces -----------------------------------------------------------------------------


def _fit(name: str, *, train_b: bool, zero: str, update: str) -> str:
    b_grad = "True" if train_b else "False"
    b_update = "\n            b -= lr * b.grad" if train_b and "no_grad" in update else ""
    b_update_plain = "\n        b -= lr * b.grad" if train_b and "no_grad" not in update else ""
    zero_b = f"\n        b.grad{zero}" if train_b and zero else ""
    zero_w = f"\n        w.grad{zero}" if zero else ""
    if "no_grad" in update:
        step = f"        with torch.no_grad():\n            w -= lr * w.grad{b_update}"
    else:
        step = f"        w -= lr * w.grad{b_update_plain}"
    return f"""

def {name}(x, y, w0, b0, lr, steps):
    w = w0.detach().clone().requires_grad_(True)
    b = b0.detach().clone().requires_grad_({b_grad})
    rows = [torch.cat([w.detach(), b.detach().reshape(1)])]
    for _ in range(steps):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
{step}{zero_w}{zero_b}
        rows.append(torch.cat([w.detach(), b.detach().reshape(1)]))
    return torch.stack(rows)
"""


_FIT_LINEAR = _fit("fit_linear", train_b=True, zero=".zero_()", update="no_grad")
_FIT_WEIGHTS = _fit("fit_weights", train_b=False, zero=".zero_()", update="no_grad")
_PREDICT = """

def predict(x, w, b):
    with torch.inference_mode():
        return x @ w + b
"""

# --- Q3 pieces -----------------------------------------------------------------------------

_FIXED = """

def fixed_grad(x):
    x = x.detach().clone().requires_grad_(True)
    s = 2 * torch.sigmoid(x)
    (s * x).sum().backward()
    return x.grad
"""
_TWO = """

def two_grads(x):
    x = x.detach().clone().requires_grad_(True)
    h = x * torch.sin(x)
    h.sum().backward(retain_graph=True)
    dl1 = x.grad.clone()
    x.grad = None
    (h**2).sum().backward()
    return dl1, x.grad
"""
_WHERE = """

def sqrt_where_grad(x):
    x = x.detach().clone().requires_grad_(True)
    safe = torch.where(x > 0, x, torch.ones_like(x))
    torch.where(x > 0, torch.sqrt(safe), 0.0).sum().backward()
    return x.grad
"""
_CLIPPED = """

def clipped_grad(x, limit):
    x = x.detach().clone().requires_grad_(True)
    h = 3 * torch.sin(x)
    h.register_hook(lambda g: g.clamp(-limit, limit))
    (h**2).sum().backward()
    return x.grad
"""

# --- Q4 pieces -----------------------------------------------------------------------------

_HVP_DOUBLE = """

def hvp_double_backward(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv
"""
_HVP_FORWARD = """

def hvp_forward_over_reverse(f, x, v):
    return torch.func.jvp(torch.func.grad(f), (x,), (v,))[1]
"""


def q1(function: str = _FUNCTION, uses: str = _USES, second: str = _SECOND) -> str:
    return function + uses + second


def q2(
    fit_linear: str = _FIT_LINEAR, fit_weights: str = _FIT_WEIGHTS, predict: str = _PREDICT
) -> str:
    return fit_linear + fit_weights + predict


def q3(fixed=_FIXED, two=_TWO, where=_WHERE, clipped=_CLIPPED) -> str:
    return fixed + two + where + clipped


def q4(double=_HVP_DOUBLE, forward=_HVP_FORWARD) -> str:
    return double + forward


STUDENTS: dict[str, Student] = {
    "perfect": Student("the instructor's solutions", prints=("jacfwd (ms)",)),
    "blank": Student("the unmodified release notebook", blank=True),
    # --- correct alternatives --------------------------------------------------------------
    "alt_float32": Student(
        "every answer computed in float32",
        answers={
            Q1: q1(
                uses="""

def softplus(x):
    return StableSoftplus.apply(x.float())


def softplus_grad(x, v):
    x = x.detach().float().requires_grad_(True)
    (g,) = torch.autograd.grad(softplus(x), x, v.float())
    return g
""",
                second="""

def softplus_second(x):
    x = x.detach().float().requires_grad_(True)
    y = softplus(x)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
    return torch.autograd.grad(g.sum(), x)[0]
""",
            ),
            Q2: """

def fit_linear(x, y, w0, b0, lr, steps):
    x, y = x.float(), y.float()
    w = w0.detach().float().requires_grad_(True)
    b = b0.detach().float().requires_grad_(True)
    rows = [torch.cat([w.detach(), b.detach().reshape(1)])]
    for _ in range(steps):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        w.grad = None
        b.grad = None
        rows.append(torch.cat([w.detach(), b.detach().reshape(1)]))
    return torch.stack(rows)


def fit_weights(x, y, w0, b0, lr, steps):
    x, y = x.float(), y.float()
    w = w0.detach().float().requires_grad_(True)
    b = b0.detach().float()
    rows = [torch.cat([w.detach(), b.reshape(1)])]
    for _ in range(steps):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad = None
        rows.append(torch.cat([w.detach(), b.reshape(1)]))
    return torch.stack(rows)


def predict(x, w, b):
    with torch.no_grad():
        return x.float() @ w.float() + b.float()
""",
            Q3: """

def fixed_grad(x):
    x = x.detach().float().requires_grad_(True)
    s = torch.sigmoid(x) * 2
    (s * x).sum().backward()
    return x.grad


def two_grads(x):
    x = x.detach().float().requires_grad_(True)
    h = x * torch.sin(x)
    (g1,) = torch.autograd.grad(h.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad((h**2).sum(), x)
    return g1, g2


def sqrt_where_grad(x):
    x = x.detach().float().requires_grad_(True)
    torch.where(x > 0, torch.sqrt(x.clamp(min=1e-20)), 0.0).sum().backward()
    return x.grad


def clipped_grad(x, limit):
    x = x.detach().float().requires_grad_(True)
    h = 3 * torch.sin(x)
    h.register_hook(lambda g: torch.clamp(g, -limit, limit))
    (h**2).sum().backward()
    return x.grad
""",
            Q4: """

def hvp_double_backward(f, x, v):
    x = x.detach().float().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    return torch.autograd.grad(g @ v.float(), x)[0]


def hvp_forward_over_reverse(f, x, v):
    _, hv = torch.func.jvp(torch.func.grad(f), (x.float(),), (v.float(),))
    return hv
""",
        },
    ),
    "alt_apis": Student(
        "other correct ways: a backward from the saved output, .backward(v), an nn.Linear(2, 1) "
        "trained by torch.optim.SGD with its bias frozen by requires_grad_(False), "
        "torch.no_grad, autograd.grad twice, a clamp before sqrt, the hook's work done by "
        "two autograd.grad calls, functional.hvp and nested torch.func",
        answers={
            Q1: q1(
                function=_function(
                    "y = torch.maximum(x, torch.zeros_like(x)) + torch.log1p(torch.exp(-torch.abs(x)))"
                    "\n        ctx.save_for_backward(y)\n        return y",
                    "return grad_output * -torch.expm1(-y)",
                    saved="y",
                ),
                uses="""

def softplus(x):
    return StableSoftplus.apply(x)


def softplus_grad(x, v):
    x = x.detach().clone().requires_grad_(True)
    softplus(x).backward(v)
    return x.grad
""",
                second="""

def softplus_second(x):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(softplus(x).sum(), x, create_graph=True)
    g.sum().backward()
    return x.grad
""",
            ),
            Q2: """

def _linear(w0, b0):
    model = torch.nn.Linear(2, 1, dtype=w0.dtype)
    with torch.no_grad():
        model.weight.copy_(w0.reshape(1, 2))
        model.bias.copy_(b0.reshape(1))
    return model


def _row(model):
    return torch.cat([model.weight.reshape(-1), model.bias]).detach().clone()


def fit_linear(x, y, w0, b0, lr, steps):
    model = _linear(w0, b0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    rows = [_row(model)]
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x).squeeze(1), y).backward()
        opt.step()
        rows.append(_row(model))
    return torch.stack(rows)


def fit_weights(x, y, w0, b0, lr, steps):
    model = _linear(w0, b0)
    model.bias.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    rows = [_row(model)]
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x).squeeze(1), y).backward()
        opt.step()
        rows.append(_row(model))
    return torch.stack(rows)


def predict(x, w, b):
    return (x @ w + b).detach()
""",
            Q3: """

def fixed_grad(x):
    x = x.detach().clone().requires_grad_(True)
    s = torch.sigmoid(x)
    s = s * 2
    return torch.autograd.grad((s * x).sum(), x)[0]


def two_grads(x):
    x = x.detach().clone().requires_grad_(True)
    h = x * torch.sin(x)
    l1, l2 = h.sum(), (h**2).sum()
    (g1,) = torch.autograd.grad(l1, x, retain_graph=True)
    (g2,) = torch.autograd.grad(l2, x)
    return g1, g2


def sqrt_where_grad(x):
    x = x.detach().clone().requires_grad_(True)
    mask = x > 0
    out = torch.zeros_like(x)
    out = torch.where(mask, torch.sqrt(torch.where(mask, x, 1.0)), out)
    (g,) = torch.autograd.grad(out.sum(), x)
    return g


def clipped_grad(x, limit):
    x = x.detach().clone().requires_grad_(True)
    h = 3 * torch.sin(x)
    y = (h**2).sum()
    (g_h,) = torch.autograd.grad(y, h, retain_graph=True)
    (g_x,) = torch.autograd.grad(h, x, g_h.clamp(-limit, limit))
    return g_x
""",
            Q4: """

def hvp_double_backward(f, x, v):
    return torch.autograd.functional.hvp(f, x, v)[1]


def hvp_forward_over_reverse(f, x, v):
    def directional(x):
        return torch.func.grad(f)(x)

    return torch.func.jvp(directional, (x,), (v,))[1]
""",
        },
    ),
    "alt_helpers": Student(
        "right answers through helpers: a thresholded forward with a backward from x and the "
        "saved output, one descent helper for both loops with .detach() freezing b, "
        "sub_ updates, a mask product, a named hook, nested torch.func.grad and dual numbers",
        answers={
            Q1: """

class StableSoftplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        big = x > 20
        y = torch.where(big, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * torch.exp(x - y)


def _leaf(x):
    return x.detach().clone().requires_grad_(True)


def _vjp(fn, x, v, **kwargs):
    return torch.autograd.grad(fn(x), x, v, **kwargs)[0]


def softplus(x):
    return StableSoftplus.apply(x)


def softplus_grad(x, v):
    return _vjp(softplus, _leaf(x), v)


def softplus_second(x):
    x = _leaf(x)
    ones = torch.ones_like(x)
    first = _vjp(softplus, x, ones, create_graph=True)
    return _vjp(lambda _: first, x, ones)
""",
            Q2: """

def _descend(x, y, w, b, lr, steps, params):
    rows = [torch.cat([w, b.reshape(1)]).detach()]
    for _ in range(steps):
        loss = torch.mean((torch.matmul(x, w) + b - y) ** 2)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
                p.grad = None
        rows.append(torch.cat([w, b.reshape(1)]).detach())
    return torch.stack(rows)


def fit_linear(x, y, w0, b0, lr, steps):
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    return _descend(x, y, w, b, lr, steps, [w, b])


def fit_weights(x, y, w0, b0, lr, steps):
    w = w0.clone().requires_grad_(True)
    return _descend(x, y, w, b0.detach(), lr, steps, [w])


def predict(x, w, b):
    with torch.no_grad():
        out = x @ w + b
    return out
""",
            Q3: """

def fixed_grad(x):
    x = x.detach().clone().requires_grad_(True)
    s = torch.sigmoid(x).mul(2)
    (s * x).sum().backward()
    return x.grad


def two_grads(x):
    x = x.detach().clone().requires_grad_(True)
    h = x * torch.sin(x)
    h.sum().backward(retain_graph=True)
    first = x.grad.clone()
    x.grad.zero_()
    h.pow(2).sum().backward()
    return first, x.grad


def sqrt_where_grad(x):
    x = x.detach().clone().requires_grad_(True)
    mask = x > 0
    (torch.sqrt(torch.where(mask, x, 1.0)) * mask).sum().backward()
    return x.grad


def clipped_grad(x, limit):
    x = x.detach().clone().requires_grad_(True)
    h = 3 * torch.sin(x)

    def clip(grad):
        return torch.clamp(grad, min=-limit, max=limit)

    h.register_hook(clip)
    torch.sum(h * h).backward()
    return x.grad
""",
            Q4: """

import torch.autograd.forward_ad as fwAD


def hvp_double_backward(f, x, v):
    return torch.func.grad(lambda x: torch.dot(torch.func.grad(f)(x), v))(x)


def hvp_forward_over_reverse(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    with fwAD.dual_level():
        xd = fwAD.make_dual(x, v)
        (g,) = torch.autograd.grad(f(xd), xd, create_graph=True)
        return fwAD.unpack_dual(g).tangent
""",
        },
    ),
    # --- Q1 mistakes ---------------------------------------------------------------------
    "naive_softplus": Student(
        "log(1 + exp(x)) as it stands, and exp(x)/(1 + exp(x)) as its derivative: inf and "
        "NaN once exp overflows",
        answers={
            Q1: q1(
                function=_function(
                    "ctx.save_for_backward(x)\n        return torch.log1p(torch.exp(x))",
                    "return grad_output * torch.exp(x) / (1 + torch.exp(x))",
                )
            )
        },
        lost={"q1-1-softplus": "softplus_overflow", "q1-2-softplus-grad": "softplus_overflow"},
    ),
    "builtin_softplus": Student(
        "the forward calls torch's own softplus",
        answers={
            Q1: q1(
                function=_function(
                    "ctx.save_for_backward(x)\n        return torch.nn.functional.softplus(x)",
                    "return grad_output * torch.sigmoid(x)",
                )
            )
        },
        lost={"q1-1-softplus": "used_forbidden"},
    ),
    "ignores_grad_output": Student(
        "the backward returns σ(x) without multiplying by grad_output",
        answers={
            Q1: q1(
                function=_function(
                    "ctx.save_for_backward(x)\n"
                    "        return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))",
                    "return torch.sigmoid(x)",
                )
            )
        },
        lost={"q1-2-softplus-grad": "ignored_grad_output"},
    ),
    "detached_backward": Student(
        "the backward computes σ(x) from x.detach(): right first derivatives, nothing to "
        "differentiate a second time",
        answers={
            Q1: q1(
                function=_function(
                    "ctx.save_for_backward(x)\n"
                    "        return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))",
                    "return grad_output * torch.sigmoid(x.detach())",
                )
            )
        },
        lost={"q1-3-softplus-second": "no_grad_fn"},
    ),
    "grad_bypasses_function": Student(
        "the Function written, but the gradients taken by autograd through a stable formula "
        "of torch operations (torch.maximum, log1p, exp), never through its backward",
        answers={
            Q1: q1(
                uses="""

def _formula(x):
    return torch.maximum(x, torch.zeros_like(x)) + torch.log1p(torch.exp(-x.abs()))


def softplus(x):
    return StableSoftplus.apply(x)


def softplus_grad(x, v):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_formula(x), x, v)
    return g
""",
                second="""

def softplus_second(x):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_formula(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    return h
""",
            )
        },
        lost={"q1-2-softplus-grad": "function_unused", "q1-3-softplus-second": "function_unused"},
    ),
    "second_by_formula": Student(
        "d²/dx² softplus written as σ(x)(1 − σ(x)), no autograd",
        answers={
            Q1: q1(
                second="""

def softplus_second(x):
    s = torch.sigmoid(x)
    return s * (1 - s)
"""
            )
        },
        lost={"q1-3-softplus-second": "method_missing"},
    ),
    "second_by_difference": Student(
        "d²/dx² softplus as a central difference of the gradient",
        answers={
            Q1: q1(
                second="""

def softplus_second(x):
    h = 1e-5
    ones = torch.ones_like(x)
    return (softplus_grad(x + h, ones) - softplus_grad(x - h, ones)) / (2 * h)
"""
            )
        },
        lost={"q1-3-softplus-second": "numerical_difference"},
    ),
    # --- Q2 mistakes ---------------------------------------------------------------------
    "grads_not_zeroed": Student(
        "the training loops never zero the gradients",
        answers={
            Q2: q2(
                fit_linear=_fit("fit_linear", train_b=True, zero="", update="no_grad"),
                fit_weights=_fit("fit_weights", train_b=False, zero="", update="no_grad"),
            )
        },
        lost={"q2-1-fit-linear": "grad_not_zeroed", "q2-2-fit-weights": "grad_not_zeroed"},
    ),
    "update_recorded": Student(
        "the update w -= lr·w.grad made outside torch.no_grad()",
        answers={
            Q2: q2(
                fit_linear=_fit("fit_linear", train_b=True, zero=".zero_()", update="plain"),
                fit_weights=_fit("fit_weights", train_b=False, zero=".zero_()", update="plain"),
            )
        },
        lost={"q2-1-fit-linear": "inplace_leaf", "q2-2-fit-weights": "inplace_leaf"},
    ),
    "update_rebinds": Student(
        "w = w − lr·w.grad with autograd recording: w becomes a computed tensor whose .grad "
        "stays empty",
        answers={
            Q2: q2(
                fit_linear=_fit("fit_linear", train_b=True, zero="", update="no_grad").replace(
                    "        with torch.no_grad():\n            w -= lr * w.grad\n"
                    "            b -= lr * b.grad",
                    "        w = w - lr * w.grad\n        b = b - lr * b.grad",
                )
            )
        },
        lost={"q2-1-fit-linear": "update_recorded"},
    ),
    "frozen_trained": Student(
        "fit_weights trains the bias too",
        answers={
            Q2: q2(fit_weights=_fit("fit_weights", train_b=True, zero=".zero_()", update="no_grad"))
        },
        lost={"q2-2-fit-weights": "frozen_trained"},
    ),
    "predict_records": Student(
        "predict returns x @ w + b with its graph",
        answers={Q2: q2(predict="\n\ndef predict(x, w, b):\n    return x @ w + b\n")},
        lost={"q2-3-predict": "records_graph"},
    ),
    "predict_unfreezes_caller": Student(
        "predict turns off requires_grad of the caller's w and b to get a result without a graph",
        answers={
            Q2: q2(
                predict="""

def predict(x, w, b):
    w.requires_grad_(False)
    b.requires_grad_(False)
    return x @ w + b
"""
            )
        },
        lost={"q2-3-predict": "changed_input"},
    ),
    "loss_summed": Student(
        "the loss summed over the points instead of averaged: another trajectory, no cause to name",
        answers={
            Q2: q2(
                fit_linear=_fit(
                    "fit_linear", train_b=True, zero=".zero_()", update="no_grad"
                ).replace(").mean()", ").sum()")
            )
        },
        lost={"q2-1-fit-linear": None},
    ),
    # --- Q3 mistakes ---------------------------------------------------------------------
    "inplace_kept": Student(
        "fixed_grad still changes sigmoid's output in place",
        answers={
            Q3: q3(
                fixed="""

def fixed_grad(x):
    x = x.detach().clone().requires_grad_(True)
    s = torch.sigmoid(x)
    s *= 2
    (s * x).sum().backward()
    return x.grad
"""
            )
        },
        lost={"q3-1-fixed-grad": "inplace_modified"},
    ),
    "data_bypass": Student(
        "s.data *= 2: the error silenced, the gradient wrong",
        answers={
            Q3: q3(
                fixed="""

def fixed_grad(x):
    x = x.detach().clone().requires_grad_(True)
    s = torch.sigmoid(x)
    s.data *= 2
    (s * x).sum().backward()
    return x.grad
"""
            )
        },
        lost={"q3-1-fixed-grad": "data_bypass"},
    ),
    "no_retain_graph": Student(
        "the second backward through a graph the first one freed",
        answers={
            Q3: q3(
                two="""

def two_grads(x):
    x = x.detach().clone().requires_grad_(True)
    h = x * torch.sin(x)
    h.sum().backward()
    dl1 = x.grad.clone()
    x.grad = None
    (h**2).sum().backward()
    return dl1, x.grad
"""
            )
        },
        lost={"q3-2-two-grads": "graph_freed"},
    ),
    "grad_not_cleared": Student(
        "x.grad not cleared between the two backward calls",
        answers={
            Q3: q3(
                two="""

def two_grads(x):
    x = x.detach().clone().requires_grad_(True)
    h = x * torch.sin(x)
    h.sum().backward(retain_graph=True)
    dl1 = x.grad.clone()
    (h**2).sum().backward()
    return dl1, x.grad
"""
            )
        },
        lost={"q3-2-two-grads": "grad_not_zeroed"},
    ),
    "where_nan": Student(
        "torch.where around sqrt(x) as it stands: NaN where x ≤ 0",
        answers={
            Q3: q3(
                where="""

def sqrt_where_grad(x):
    x = x.detach().clone().requires_grad_(True)
    torch.where(x > 0, torch.sqrt(x), 0.0).sum().backward()
    return x.grad
"""
            )
        },
        lost={"q3-3-sqrt-where": "nan_through_where"},
    ),
    "where_clamped": Student(
        "sqrt of x.clamp(min=0) inside torch.where: sqrt's derivative at 0 is inf, 0 · inf = NaN",
        answers={
            Q3: q3(
                where="""

def sqrt_where_grad(x):
    x = x.detach().clone().requires_grad_(True)
    torch.where(x > 0, torch.sqrt(x.clamp(min=0)), 0.0).sum().backward()
    return x.grad
"""
            )
        },
        lost={"q3-3-sqrt-where": "nan_through_where"},
    ),
    "clip_final": Student(
        "the gradient of x clipped after backward instead of the gradient reaching h",
        answers={
            Q3: q3(
                clipped="""

def clipped_grad(x, limit):
    x = x.detach().clone().requires_grad_(True)
    h = 3 * torch.sin(x)
    (h**2).sum().backward()
    return x.grad.clamp(-limit, limit)
"""
            )
        },
        lost={"q3-4-clipped-grad": "clipped_final_grad"},
    ),
    "hook_no_return": Student(
        "a hook that clips a copy and returns nothing",
        answers={
            Q3: q3(
                clipped="""

def clipped_grad(x, limit):
    x = x.detach().clone().requires_grad_(True)
    h = 3 * torch.sin(x)

    def clip(g):
        g = g.clamp(-limit, limit)

    h.register_hook(clip)
    (h**2).sum().backward()
    return x.grad
"""
            )
        },
        lost={"q3-4-clipped-grad": "hook_ignored"},
    ),
    # --- Q4 mistakes ---------------------------------------------------------------------
    "hvp_summed": Student(
        "the gradient's entries summed and differentiated, then multiplied by v",
        answers={
            Q4: q4(
                double="""

def hvp_double_backward(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    (h1,) = torch.autograd.grad(g.sum(), x)
    return h1 * v
"""
            )
        },
        lost={"q4-1-hvp-double-backward": "summed_not_dotted"},
    ),
    "full_hessian": Student(
        "the full Hessian built, then multiplied by v",
        answers={
            Q4: q4(
                double="""

def hvp_double_backward(f, x, v):
    return torch.autograd.functional.hessian(f, x) @ v
""",
                forward="""

def hvp_forward_over_reverse(f, x, v):
    return torch.func.jacfwd(torch.func.grad(f))(x) @ v
""",
            )
        },
        lost={
            "q4-1-hvp-double-backward": "full_hessian",
            "q4-2-hvp-forward-over-reverse": "full_hessian",
        },
    ),
    "hvp_swapped_methods": Student(
        "each Hessian-vector product computed the other question's way",
        answers={
            Q4: q4(
                double=_HVP_FORWARD.replace("hvp_forward_over_reverse", "hvp_double_backward"),
                forward=_HVP_DOUBLE.replace("hvp_double_backward", "hvp_forward_over_reverse"),
            )
        },
        lost={
            "q4-1-hvp-double-backward": "used_autograd",
            "q4-2-hvp-forward-over-reverse": "method_missing",
        },
    ),
    "hvp_by_difference": Student(
        "H·v as a central difference of the gradient along v",
        answers={
            Q4: q4(
                double="""

def hvp_double_backward(f, x, v):
    h = 1e-5
    grad = torch.func.grad(f)
    return (grad(x + h * v) - grad(x - h * v)) / (2 * h)
"""
            )
        },
        lost={"q4-1-hvp-double-backward": "numerical_difference"},
    ),
    # --- autograd ran, but the returned values came from elsewhere -------------------------
    "fixed_grad_by_formula": Student(
        "Q3.1 runs backward, then returns the derivative 2σ(x) + 2xσ(x)(1 − σ(x)) by hand",
        answers={
            Q3: q3(
                fixed=_FIXED.replace(
                    "    return x.grad\n",
                    "    s = torch.sigmoid(x.detach())\n"
                    "    return 2 * s + 2 * x.detach() * s * (1 - s)\n",
                )
            ),
        },
        lost={"q3-1-fixed-grad": "result_not_from_autograd"},
    ),
    "alt_grad_copies": Student(
        "gradients handed back as copies: a float32 cast, autograd.grad's tuple entry, "
        ".detach().clone() of .grad (loses nothing)",
        answers={
            Q3: q3(
                fixed="""

def fixed_grad(x):
    x = x.detach().clone().float().requires_grad_(True)
    s = 2 * torch.sigmoid(x)
    (s * x).sum().backward()
    return x.grad.float()
""",
                two="""

def two_grads(x):
    x = x.detach().clone().requires_grad_(True)
    h = x * torch.sin(x)
    dl1 = torch.autograd.grad(h.sum(), x, retain_graph=True)[0]
    (h**2).sum().backward()
    return dl1, x.grad.detach().clone()
""",
            ),
        },
    ),
}
