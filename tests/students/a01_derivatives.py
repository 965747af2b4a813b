"""Simulated students for 01_derivatives."""

from . import Student

ASSIGNMENT = "01_derivatives"
POINTS = 13

DIFF = "q1-differences-answer"
AUTO = "q1-autograd-answer"
Q2 = "q2-answer"
Q3 = "q3-answer"
Q4 = "q4-answer"
Q5 = "q5-answer"

_FD_OK = """
def forward_difference(f, x, h):
    return (f(x + h) - f(x)) / h


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)
"""

_Q5_TEMPLATE = """
{prelude}
def sin_and_derivative(x):
    x = x.detach().clone().requires_grad_(True)
    y = torch.sin(x)
    dydx = {deriv}
    return y.detach(), dydx


def plot_sin_and_derivative(x):
    y, dydx = sin_and_derivative(x)
    fig, ax = plt.subplots()
    ax.plot(x, y, label="sin")
    ax.plot(x, dydx, label="derivative")
    ax.legend()
    return fig
"""


def _q5(deriv: str, prelude: str = "") -> str:
    return _Q5_TEMPLATE.format(deriv=deriv, prelude=prelude)


def _cos_cheat(deriv: str, prelude: str = "", about: str = "") -> Student:
    return Student(
        about,
        answers={Q5: _q5(deriv, prelude)},
        lost={"q5-2-no-cos": "used_forbidden"},
    )


STUDENTS: dict[str, Student] = {
    "perfect": Student("the instructor's solutions"),
    "blank": Student("the unmodified release notebook", blank=True),
    # --- correct alternatives --------------------------------------------------------
    "alt_autograd_grad": Student(
        "torch.autograd.grad and torch.func.grad instead of backward; other names",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(f(x), x)
    return d


def difference_errors(f, x0, hs):
    exact = autograd_derivative(f, x0)
    xs = x0 * torch.ones_like(hs)
    return (
        (forward_difference(f, xs, hs) - exact).abs(),
        (central_difference(f, xs, hs) - exact).abs(),
    )
""",
            Q2: """
def gradient(fn, x):
    leaf = x.detach().requires_grad_()
    return torch.autograd.grad(fn(leaf), leaf)[0]
""",
            Q3: """
def f_prime(x):
    inner = x * x
    return 2 * x * (1 + torch.cos(inner))


def f_prime_autograd(x):
    xs = x.clone().detach().requires_grad_(True)
    ys = xs**2 + torch.sin(xs**2)
    (g,) = torch.autograd.grad(ys, xs, grad_outputs=torch.ones_like(ys))
    return g
""",
            Q4: """
def control_flow_grad(a):
    return torch.func.grad(lambda t: control_flow_f(t).sum())(a)


def matches_ratio(grad, a, fa):
    return torch.allclose(grad, fa / a, rtol=1e-6, atol=1e-9)
""",
        },
    ),
    "alt_float32": Student(
        "float32 everywhere it matters (loses nothing)",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    x = x.float()
    return (f(x + h) - f(x)) / h


def central_difference(f, x, h):
    x = x.double()
    return (f(x + h) - f(x - h)) / (2 * h)
""",
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(x0, dtype=torch.float32, requires_grad=True)
    f(x).backward()
    return x.grad


def difference_errors(f, x0, hs):
    exact = autograd_derivative(f, x0).double()
    x = torch.full_like(hs, x0)
    return (forward_difference(f, x, hs).double() - exact).abs(), (central_difference(f, x, hs) - exact).abs()
""",
            Q2: """
def gradient(fn, x):
    x = x.to(torch.float32).requires_grad_(True)
    fn(x).backward()
    return x.grad
""",
            Q3: """
def f_prime(x):
    x = x.float()
    return 2 * x + 2 * x * torch.cos(x**2)


def f_prime_autograd(x):
    x = x.float().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(torch.ones_like(y))
    return x.grad
""",
            Q5: """
def sin_and_derivative(x):
    x = x.float().requires_grad_(True)
    y = torch.sin(x)
    y.sum().backward()
    return y.detach(), x.grad


def plot_sin_and_derivative(x):
    y, dydx = sin_and_derivative(x)
    fig, ax = plt.subplots()
    ax.plot(x.numpy(), dydx.numpy())
    ax.plot(x.numpy(), y.numpy())
    ax.set_xlabel("x")
    ax.set_ylabel("f(x), f'(x)")
    return fig
""",
        },
    ),
    "alt_torch_func": Student(
        "torch.func (grad, vmap, grad_and_value) and helpers of its own",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    step = h * torch.ones_like(x)
    return (f(x + step) - f(x)) / step


def central_difference(f, x, h):
    half = forward_difference(f, x, h) + forward_difference(f, x - h, h)
    return half / 2
""",
            Q2: """
def gradient(fn, x):
    return torch.func.grad(fn)(x.detach())
""",
            Q3: """
import torch.func as tf


def _f(t):
    return t**2 + torch.sin(t**2)


def f_prime(x):
    s = x * x
    return 2 * x + 2 * x * torch.cos(s)


def f_prime_autograd(x):
    return tf.vmap(tf.grad(_f))(x.detach())
""",
            Q5: """
def sin_and_derivative(grid):
    values, dvalues = torch.func.vmap(torch.func.grad_and_value(torch.sin))(grid.detach())[::-1]
    return values, dvalues


def plot_sin_and_derivative(grid):
    values, slope = sin_and_derivative(grid)
    fig = plt.figure()
    ax = fig.add_subplot()
    ax.plot(grid, slope, label="slope")
    ax.plot(grid, values, label="sin")
    ax.legend()
    return fig
""",
        },
    ),
    # --- realistic mistakes -----------------------------------------------------------
    "swapped_differences": Student(
        "the two formulas swapped",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


def central_difference(f, x, h):
    return (f(x + h) - f(x)) / h
"""
        },
        lost={
            "q1-1-forward": "other_formula",
            "q1-2-central": "other_formula",
            "q1-4-errors": None,
        },
    ),
    "hardcoded_derivative": Student(
        "returns the notebook's example value f'(1) = 2: passes the visible test only",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    return torch.tensor(2.0)


def difference_errors(f, x0, hs):
    exact = torch.autograd.functional.jacobian(f, torch.tensor(x0))
    x = torch.full_like(hs, x0)
    return (forward_difference(f, x, hs) - exact).abs(), (central_difference(f, x, hs) - exact).abs()
"""
        },
        lost={"q1-3-autograd": None},
    ),
    "relative_errors": Student(
        "relative instead of absolute errors",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(x0, requires_grad=True)
    f(x).backward()
    return x.grad


def difference_errors(f, x0, hs):
    exact = autograd_derivative(f, x0)
    x = torch.full_like(hs, x0)
    return ((forward_difference(f, x, hs) - exact) / exact).abs(), ((central_difference(f, x, hs) - exact) / exact).abs()
"""
        },
        lost={"q1-4-errors": None},
    ),
    "double_backward": Student(
        "calls backward twice; .grad accumulates to 2x",
        answers={
            Q2: """
def gradient(fn, x):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    y.backward(retain_graph=True)
    print("first look:", x.grad)
    y.backward()
    return x.grad
"""
        },
        lost={"q2-gradient": "accumulated"},
        says={"q2-gradient": ("Q2 gradient", "2× the reference", "Greatest absolute difference")},
    ),
    "detached_input": Student(
        "computes on a detached copy: backward raises 'does not require grad'",
        answers={
            Q2: """
def gradient(fn, x):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x.detach())
    y.backward()
    return x.grad
"""
        },
        lost={"q2-gradient": "no_grad_fn"},
    ),
    "missing_chain_factor": Student(
        "forgets the inner derivative 2x; passes gradient=y",
        answers={
            Q3: """
def f_prime(x):
    return 2 * x + torch.cos(x**2)


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(gradient=y)
    return x.grad
"""
        },
        lost={"q3-1-analytic": "missing_chain_factor", "q3-2-autograd": "gradient_is_y"},
    ),
    "analytic_uses_autograd": Student(
        "the 'analytic' derivative calls autograd",
        answers={
            Q3: """
def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(torch.ones_like(y))
    return x.grad


def f_prime(x):
    return f_prime_autograd(x)
"""
        },
        lost={"q3-1-analytic": "used_autograd"},
    ),
    "nonscalar_backward": Student(
        "backward() on a vector without the gradient argument",
        answers={
            Q3: """
def f_prime(x):
    return 2 * x + 2 * x * torch.cos(x**2)


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward()
    return x.grad
"""
        },
        lost={"q3-2-autograd": "nonscalar_backward"},
    ),
    "exact_equality": Student(
        "compares with == instead of allclose",
        answers={
            Q4: """
def control_flow_grad(a):
    a = a.detach().clone().requires_grad_(True)
    control_flow_f(a).sum().backward()
    return a.grad


def matches_ratio(grad, a, fa):
    return bool((grad == fa / a).all())
"""
        },
        lost={"q4-2-ratio": "exact_equality"},
    ),
    "swapped_sin_outputs": Student(
        "returns (dydx, y) instead of (y, dydx)",
        answers={
            Q5: _q5("torch.autograd.grad(y.sum(), x)[0]").replace(
                "return y.detach(), dydx", "return dydx, y.detach()"
            )
        },
        lost={"q5-1-values": None, "q5-2-no-cos": None},
    ),
    "unlabelled_plot": Student(
        "plot without labels or legend",
        answers={
            Q5: _q5("torch.autograd.grad(y.sum(), x)[0]")
            .replace('label="sin"', "")
            .replace('label="derivative"', "")
            .replace("ax.legend()", "")
        },
        lost={"q5-3-plot": None},
    ),
    # --- cos in disguise: each loses the no-cos point only -----------------------------
    "cos_torch": _cos_cheat("torch.cos(x).detach()", about="torch.cos"),
    "cos_method": _cos_cheat("x.detach().cos()", about="Tensor.cos"),
    "cos_alias_import": _cos_cheat(
        "c(x.detach())", "from torch import cos as c", about="from torch import cos as c"
    ),
    "cos_getattr": _cos_cheat(
        'getattr(torch, "co" + "s")(x.detach())', about='getattr(torch, "co" + "s")'
    ),
    "cos_numpy": _cos_cheat(
        "torch.from_numpy(np.cos(x.detach().numpy()))", "import numpy as np", about="numpy.cos"
    ),
    "cos_math": _cos_cheat(
        "torch.tensor([math.cos(v) for v in x.tolist()])", about="math.cos element by element"
    ),
    "cos_prebound_getattr": _cos_cheat(
        "_d(x.detach())",
        '_d = getattr(torch, "c" + "os")',
        about="getattr bound before the check runs",
    ),
}
