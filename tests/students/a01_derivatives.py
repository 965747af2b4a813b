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
        # cos is not autograd either: the values question is lost too.
        lost={"q5-1-values": "method_missing", "q5-2-no-cos": "used_forbidden"},
    )


# Q3 with a correct autograd half; F_PRIME is the student's formula for f'(x).
_Q3_AUTOGRAD_OK = """
def f_prime(x):
    return F_PRIME


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(gradient=torch.ones_like(y))
    return x.grad
"""

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
        lost={"q1-3-autograd": "method_missing"},
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
        lost={"q5-1-values": "swapped_outputs", "q5-2-no-cos": None},
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
    # --- the method a question asks for -----------------------------------------------
    "fd_for_autograd_derivative": Student(
        "Q1.3 by a central difference with a tiny step: right values, no autograd",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    h = 1e-6
    x = torch.tensor(x0, dtype=torch.float64)
    return (f(x + h) - f(x - h)) / (2 * h)


def difference_errors(f, x0, hs):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    f(x).backward()
    exact = x.grad
    xs = torch.full_like(hs, x0)
    return (
        (forward_difference(f, xs, hs) - exact).abs(),
        (central_difference(f, xs, hs) - exact).abs(),
    )
"""
        },
        lost={"q1-3-autograd": "numerical_difference"},
    ),
    "complex_step": Student(
        "Q1.3 by the complex-step trick: exact to rounding, no autograd",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    h = 1e-20
    return f(torch.tensor(complex(x0, h), dtype=torch.complex128)).imag / h


def difference_errors(f, x0, hs):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    f(x).backward()
    xs = torch.full_like(hs, x0)
    return (
        (forward_difference(f, xs, hs) - x.grad).abs(),
        (central_difference(f, xs, hs) - x.grad).abs(),
    )
"""
        },
        lost={"q1-3-autograd": "numerical_difference"},
    ),
    "float_not_tensor": Student(
        "Q1.3 returns x.grad.item(), a Python float, where a 0-d tensor is promised",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(x0, requires_grad=True)
    f(x).backward()
    return x.grad.item()


def difference_errors(f, x0, hs):
    exact = autograd_derivative(f, x0)
    xs = torch.full_like(hs, x0)
    return (
        (forward_difference(f, xs, hs) - exact).abs(),
        (central_difference(f, xs, hs) - exact).abs(),
    )
"""
        },
        lost={"q1-3-autograd": "wrong_type"},
    ),
    "exact_by_difference": Student(
        "Q1.4 takes the 'exact' value from a central difference with a tiny step",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(x0, requires_grad=True)
    f(x).backward()
    return x.grad


def difference_errors(f, x0, hs):
    xs = torch.full_like(hs, x0)
    exact = central_difference(f, torch.tensor([x0], dtype=torch.float64), 1e-6)
    return (
        (forward_difference(f, xs, hs) - exact).abs(),
        (central_difference(f, xs, hs) - exact).abs(),
    )
"""
        },
        lost={"q1-4-errors": "method_missing"},
    ),
    "signed_errors": Student(
        "Q1.4 forgets the absolute value: signed errors",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(x0, requires_grad=True)
    f(x).backward()
    return x.grad


def difference_errors(f, x0, hs):
    exact = autograd_derivative(f, x0)
    xs = torch.full_like(hs, x0)
    return forward_difference(f, xs, hs) - exact, central_difference(f, xs, hs) - exact
"""
        },
        lost={"q1-4-errors": "signed_error"},
    ),
    "exact_autograd_for_difference": Student(
        "Q1.1/Q1.2 return the exact derivative (autograd), cast to bfloat16",
        answers={
            DIFF: """
def _exact(f, x):
    x = x.detach().clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


def forward_difference(f, x, h):
    return _exact(f, x).bfloat16()


def central_difference(f, x, h):
    return _exact(f, x).bfloat16()
"""
        },
        lost={
            "q1-1-forward": "used_autograd",
            "q1-2-central": "used_autograd",
            "q1-4-errors": "low_precision",  # its errors come from those helpers
        },
    ),
    "difference_as_list": Student(
        "Q1.1 returns a Python list instead of a tensor shaped like x",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    return ((f(x + h) - f(x)) / h).tolist()


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)
"""
        },
        lost={"q1-1-forward": "wrong_type", "q1-4-errors": None},
    ),
    "difference_changes_x": Student(
        "Q1.1 shifts the caller's x in place (x += h) and back",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    f0 = f(x)
    x += h
    return (f(x) - f0) / h


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)
"""
        },
        lost={"q1-1-forward": "changed_input", "q1-4-errors": None},
    ),
    "forward_in_half": Student(
        "Q1.2 is the forward formula, returned in float16",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    return (f(x + h) - f(x)) / h


def central_difference(f, x, h):
    return ((f(x + h) - f(x)) / h).half()
"""
        },
        # judged at float32's tolerance, where the forward formula is far off
        lost={"q1-2-central": "low_precision", "q1-4-errors": "low_precision"},
    ),
    "fd_gradient": Student(
        "Q2 by central differences, one coordinate at a time",
        answers={
            Q2: """
def gradient(fn, x):
    h = 1e-6
    out = torch.zeros_like(x)
    for i in range(len(x)):
        e = torch.zeros_like(x)
        e[i] = h
        out[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return out
"""
        },
        lost={"q2-gradient": "numerical_difference"},
    ),
    "gradient_on_callers_x": Student(
        "Q2 switches on requires_grad of the caller's x and reads its .grad",
        answers={
            Q2: """
def gradient(fn, x):
    x.requires_grad_(True)
    fn(x).backward()
    return x.grad
"""
        },
        lost={"q2-gradient": "changed_input"},
    ),
    "jvp_gradient": Student(
        "Q2 by forward mode, one jvp per coordinate (autograd, legitimately)",
        answers={
            Q2: """
def gradient(fn, x):
    x = x.detach()
    eye = torch.eye(len(x), dtype=x.dtype)
    return torch.stack([torch.func.jvp(fn, (x,), (e,))[1] for e in eye])
"""
        },
    ),
    "formula_for_autograd": Student(
        "Q3.2 copies the Q3.1 formula instead of using backward",
        answers={
            Q3: """
def f_prime(x):
    return 2 * x + 2 * x * torch.cos(x**2)


def f_prime_autograd(x):
    return 2 * x + 2 * x * torch.cos(x**2)
"""
        },
        lost={"q3-2-autograd": "method_missing"},
    ),
    "forward_mode_for_formula": Student(
        "Q3.1 by forward-mode dual numbers: autograd where a formula is asked",
        answers={
            Q3: """
import torch.autograd.forward_ad as fwAD


def f_prime(x):
    with fwAD.dual_level():
        d = fwAD.make_dual(x, torch.ones_like(x))
        y = d**2 + torch.sin(d**2)
        return fwAD.unpack_dual(y).tangent


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(gradient=torch.ones_like(y))
    return x.grad
"""
        },
        lost={"q3-1-analytic": "used_autograd"},
    ),
    "jacfwd_for_formula": Student(
        "Q3.1 with vmap(jacfwd): forward-mode autograd where a formula is asked",
        answers={
            Q3: """
def f_prime(x):
    return torch.func.vmap(torch.func.jacfwd(lambda t: t**2 + torch.sin(t**2)))(x)


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(gradient=torch.ones_like(y))
    return x.grad
"""
        },
        lost={"q3-1-analytic": "used_autograd"},
    ),
    "fd_for_formula": Student(
        "Q3.1 and Q3.2 by central differences of f with a tiny step",
        answers={
            Q3: """
def _f(x):
    return x**2 + torch.sin(x**2)


def f_prime(x):
    h = 1e-6
    return (_f(x + h) - _f(x - h)) / (2 * h)


def f_prime_autograd(x):
    h = 1e-6
    return (_f(x + h) - _f(x - h)) / (2 * h)
"""
        },
        lost={"q3-1-analytic": "numerical_difference", "q3-2-autograd": "numerical_difference"},
    ),
    "ratio_for_grad": Student(
        "Q4.1 returns f(a)/a: the right values almost everywhere, no autograd",
        answers={
            Q4: """
def control_flow_grad(a):
    return control_flow_f(a) / a


def matches_ratio(grad, a, fa):
    return bool(torch.allclose(grad, fa / a))
"""
        },
        lost={"q4-1-grad": "method_missing"},
    ),
    "forgets_hundred": Student(
        "Q4.1 counts the doublings by hand and forgets the ×100 branch",
        answers={
            Q4: """
def control_flow_grad(a):
    k = 2.0
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
        k *= 2
    return torch.full_like(a, k)


def matches_ratio(grad, a, fa):
    return bool(torch.allclose(grad, fa / a))
"""
        },
        lost={"q4-1-grad": "method_missing"},
    ),
    "ratio_first_element": Student(
        "Q4.2 compares the first element only",
        answers={
            Q4: """
def control_flow_grad(a):
    a = a.detach().clone().requires_grad_(True)
    control_flow_f(a).sum().backward()
    return a.grad


def matches_ratio(grad, a, fa):
    return bool(torch.isclose(grad[0], fa[0] / a[0]))
"""
        },
        lost={"q4-2-ratio": None},
    ),
    "ratio_sums": Student(
        "Q4.2 compares the sums only",
        answers={
            Q4: """
def control_flow_grad(a):
    a = a.detach().clone().requires_grad_(True)
    control_flow_f(a).sum().backward()
    return a.grad


def matches_ratio(grad, a, fa):
    return bool(torch.isclose(grad.sum(), (fa / a).sum()))
"""
        },
        lost={"q4-2-ratio": None},
    ),
    "ratio_loose": Student(
        "Q4.2 with a far too loose tolerance (rtol = 0.3)",
        answers={
            Q4: """
def control_flow_grad(a):
    a = a.detach().clone().requires_grad_(True)
    control_flow_f(a).sum().backward()
    return a.grad


def matches_ratio(grad, a, fa):
    return bool(torch.allclose(grad, fa / a, rtol=0.3))
"""
        },
        lost={"q4-2-ratio": None},
    ),
    "ratio_tensor_all": Student(
        "Q4.2 returns a 0-d bool tensor from isclose(...).all(): a bool, legitimately",
        answers={
            Q4: """
def control_flow_grad(a):
    a = a.detach().clone().requires_grad_(True)
    control_flow_f(a).sum().backward()
    return a.grad


def matches_ratio(grad, a, fa):
    return torch.isclose(grad, fa / a).all()
"""
        },
    ),
    "sin_shifted": Student(
        "Q5 derivative as sin(x + π/2): no cos written, no autograd either",
        answers={Q5: _q5("torch.sin(x.detach() + math.pi / 2)", "import math")},
        lost={"q5-1-values": "method_missing", "q5-2-no-cos": "method_missing"},
    ),
    "sin_half_angle": Student(
        "Q5 derivative as 1 − 2·sin²(x/2)",
        answers={Q5: _q5("1 - 2 * torch.sin(x.detach() / 2) ** 2")},
        lost={"q5-1-values": "method_missing", "q5-2-no-cos": "method_missing"},
    ),
    "sin_difference": Student(
        "Q5 derivative by a central difference of sin",
        answers={Q5: _q5("(torch.sin(x.detach() + 1e-6) - torch.sin(x.detach() - 1e-6)) / 2e-6")},
        lost={"q5-1-values": "numerical_difference", "q5-2-no-cos": "method_missing"},
    ),
    "sin_forward_mode": Student(
        "Q5 by forward-mode dual numbers (autograd, no cos): legitimate",
        answers={
            Q5: _q5(
                "fwAD.unpack_dual(torch.sin(fwAD.make_dual(x.detach(), torch.ones_like(x)))).tangent",
                "import torch.autograd.forward_ad as fwAD",
            ).replace("    dydx =", "    with fwAD.dual_level():\n        dydx =")
        },
    ),
    "plot_own_grid": Student(
        "Q5.3 plots on a grid of its own, in two subplots",
        answers={
            Q5: """
def sin_and_derivative(x):
    x = x.detach().clone().requires_grad_(True)
    y = torch.sin(x)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad


def plot_sin_and_derivative(x):
    grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
    y, dydx = sin_and_derivative(grid)
    fig, (a1, a2) = plt.subplots(1, 2)
    a1.plot(grid, y, label="sin")
    a2.plot(grid, dydx, label="derivative")
    a1.legend()
    a2.legend()
    return fig
"""
        },
        lost={"q5-3-plot": "own_grid"},
    ),
    "plot_two_axes": Student(
        "Q5.3 plots the two curves on the given x but in two subplots",
        answers={
            Q5: """
def sin_and_derivative(x):
    x = x.detach().clone().requires_grad_(True)
    y = torch.sin(x)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad


def plot_sin_and_derivative(x):
    y, dydx = sin_and_derivative(x)
    fig, (a1, a2) = plt.subplots(1, 2)
    a1.plot(x, y, label="sin")
    a2.plot(x, dydx, label="derivative")
    a1.legend()
    a2.legend()
    return fig
"""
        },
        lost={"q5-3-plot": "separate_axes"},
    ),
    "term_sign_flipped": Student(
        "Q3.1 with the sign of the sin term flipped: 2x − 2x·cos(x²)",
        answers={
            Q3: """
def f_prime(x):
    return 2 * x - 2 * x * torch.cos(x**2)


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    y.backward(gradient=torch.ones_like(y))
    return x.grad
"""
        },
        lost={"q3-1-analytic": "term_sign"},
    ),
    "cos_of_inner_derivative": Student(
        "Q3.1 with the chain rule applied inside out: d/dx sin(x²) written cos(2x)",
        answers={Q3: _Q3_AUTOGRAD_OK.replace("F_PRIME", "2 * x + torch.cos(2 * x)")},
        lost={"q3-1-analytic": "inner_derivative_inside"},
    ),
    "sin_differentiated_to_minus_sin": Student(
        "Q3.1 with sin differentiated as −sin: 2x − 2x·sin(x²)",
        answers={Q3: _Q3_AUTOGRAD_OK.replace("F_PRIME", "2 * x - 2 * x * torch.sin(x**2)")},
        lost={"q3-1-analytic": "wrong_outer_derivative"},
    ),
    "sin_term_only": Student(
        "Q3.1 differentiates sin(x²) and forgets the x² term: 2x·cos(x²)",
        answers={Q3: _Q3_AUTOGRAD_OK.replace("F_PRIME", "2 * x * torch.cos(x**2)")},
        lost={"q3-1-analytic": "missing_term"},
    ),
    "alt_chain_rule_steps": Student(
        "Q3.1 written step by step as the chain rule reads (inner value, inner derivative), "
        "and Q1's helpers through one secant-slope helper",
        answers={
            Q3: _Q3_AUTOGRAD_OK.replace("F_PRIME", "_chain(x)")
            + """

def _chain(x):
    inner = x**2
    d_inner = 2 * x
    return d_inner + torch.cos(inner) * d_inner
""",
            DIFF: """
def _secant(f, left, right, run):
    return (f(right) - f(left)) / run


def forward_difference(f, x, h):
    return _secant(f, x, x + h, h)


def central_difference(f, x, h):
    return _secant(f, x - h, x + h, 2 * h)
""",
        },
    ),
    "central_over_h": Student(
        "the central difference divided by h instead of 2h",
        answers={
            DIFF: """
def forward_difference(f, x, h):
    return (f(x + h) - f(x)) / h


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / h
"""
        },
        lost={"q1-2-central": "half_run", "q1-4-errors": None},
    ),
    # --- numpy's conversions of the input (np.asarray, np.array) ------------------------
    "fd_through_asarray": Student(
        "Q3.1 by a central difference on np.asarray(x), back with torch.from_numpy",
        answers={
            Q3: """
import numpy as np


def f_prime(x):
    xn = np.asarray(x)
    h = 1e-6
    up, down = xn + h, xn - h
    return torch.from_numpy((up**2 + np.sin(up**2) - down**2 - np.sin(down**2)) / (2 * h))
"""
            + _Q3_AUTOGRAD_OK.split("def f_prime(x):\n    return F_PRIME\n")[1],
        },
        lost={"q3-1-analytic": "numerical_difference"},
    ),
    "alt_formula_through_asarray": Student(
        "Q3.1 by the formula, computed in numpy on np.asarray(x) and np.array(x) (loses nothing)",
        answers={
            Q3: """
import numpy as np


def f_prime(x):
    xn = np.asarray(x)
    square = np.array(x) ** 2
    return torch.from_numpy(2 * xn * (1 + np.cos(square))).to(x.dtype)
"""
            + _Q3_AUTOGRAD_OK.split("def f_prime(x):\n    return F_PRIME\n")[1],
        },
    ),
    # --- autograd ran, but the returned values came from elsewhere -------------------------
    "backward_then_formula": Student(
        "Q3.2 runs backward, then returns the Q3.1 formula instead of x.grad",
        answers={
            Q3: """
def f_prime(x):
    return 2 * x + 2 * x * torch.cos(x**2)


def f_prime_autograd(x):
    leaf = x.detach().clone().requires_grad_(True)
    y = leaf**2 + torch.sin(leaf**2)
    y.backward(gradient=torch.ones_like(y))
    return f_prime(x)
""",
        },
        lost={"q3-2-autograd": "result_not_from_autograd"},
    ),
    "dummy_backward_ratio": Student(
        "Q4.1 runs an unrelated backward, then returns f(a)/a",
        answers={
            Q4: """
def control_flow_grad(a):
    dummy = torch.ones(1, requires_grad=True)
    (2 * dummy).sum().backward()
    return control_flow_f(a) / a


def matches_ratio(grad, a, fa):
    return bool(torch.allclose(grad, fa / a))
""",
        },
        lost={"q4-1-grad": "result_not_from_autograd"},
    ),
    "sin_backward_then_shifted": Student(
        "Q5 runs backward on sin(x), then returns sin(x + π/2) as the derivative",
        answers={
            Q5: _q5("(y.sum().backward(), torch.sin(x.detach() + math.pi / 2))[1]", "import math")
        },
        lost={"q5-1-values": "result_not_from_autograd"},
    ),
    "alt_grad_derivations": Student(
        "gradients taken out of autograd's results by other paths: .item() rebuilt with "
        "torch.tensor, functional.jacobian, a stack of per-element autograd.grad, a numpy "
        "round trip, a helper with in-place ops on the gradient (loses nothing)",
        answers={
            AUTO: """
def autograd_derivative(f, x0):
    x = torch.tensor(x0, requires_grad=True)
    (g,) = torch.autograd.grad(f(x), x)
    return torch.tensor(g.item())


def difference_errors(f, x0, hs):
    exact = autograd_derivative(f, x0)
    x = torch.full_like(hs, x0)
    return (
        (forward_difference(f, x, hs) - exact).abs(),
        (central_difference(f, x, hs) - exact).abs(),
    )
""",
            Q2: """
def gradient(fn, x):
    return torch.autograd.functional.jacobian(fn, x.detach())
""",
            Q3: """
def f_prime(x):
    return 2 * x + 2 * x * torch.cos(x**2)


def f_prime_autograd(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**2 + torch.sin(x**2)
    rows = [torch.autograd.grad(y[i], x, retain_graph=True)[0][i] for i in range(len(y))]
    return torch.stack(rows)
""",
            Q4: """
def control_flow_grad(a):
    a = a.detach().clone().requires_grad_(True)
    control_flow_f(a).sum().backward()
    return torch.from_numpy(a.grad.numpy().copy())


def matches_ratio(grad, a, fa):
    return bool(torch.allclose(grad, fa / a))
""",
            Q5: """
def _derivative(t):
    t = t.detach().clone().requires_grad_(True)
    torch.sin(t).sum().backward()
    g = t.grad
    g.mul_(2)
    g /= 2
    return g


def sin_and_derivative(x):
    dydx = torch.zeros_like(x)
    dydx[:] = _derivative(x)
    return torch.sin(x), dydx


def plot_sin_and_derivative(x):
    y, dydx = sin_and_derivative(x)
    fig, ax = plt.subplots()
    ax.plot(x, y, label="sin")
    ax.plot(x, dydx, label="derivative")
    ax.legend()
    return fig
""",
        },
    ),
}
