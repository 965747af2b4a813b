"""04_parametrized's checks, called directly on the instructor's solution and on the
answers of the simulated students (tests/students/a04_parametrized.py, which are graded
through nbgrader by tests/test_corpus.py).

Correct alternatives must pass every check; each known mistake must fail its check with
the diagnosis and the name of the parameter concerned.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autograder import notebooks
from autograder.assignments import a04
from autograder.checking.feedback import CheckFailed
from tests.conftest import ROOT
from tests.students import a04_parametrized as corpus

A = corpus.ASSIGNMENT
SOLUTIONS = notebooks.solutions(notebooks.read(ROOT / "source" / A / f"{A}.ipynb"))

# The function each check is called on; the checks marked True also take the model.
CHECKS = {
    "grads_backward": (a04.check_grads_backward, False),
    "grads_autograd_grad": (a04.check_grads_autograd_grad, False),
    "grads_jacobian": (a04.check_grads_jacobian, False),
    "per_sample_jacobian_loop": (a04.check_per_sample_jacobian_loop, False),
    "per_sample_jacobian_functional": (a04.check_per_sample_jacobian_functional, False),
    "per_sample_jacobian_vectorized": (a04.check_per_sample_jacobian_vectorized, False),
    "per_sample_grads_loop": (a04.check_per_sample_grads_loop, True),
    "per_sample_grads": (a04.check_per_sample_grads, True),
    "first_derivatives": (a04.check_first_derivatives, False),
    "second_derivative": (a04.check_second_derivative, False),
}
ALTERNATIVES = [
    name for name, s in corpus.STUDENTS.items() if not s.lost and not s.blank and name != "perfect"
]


def _functions(*cells: str) -> dict:
    """The answer cells' functions, defined the way the notebook defines them."""
    ns: dict = {}
    exec(
        "import torch\nfrom torch import nn\nfrom torch.func import functional_call, jacrev, vmap\n",
        ns,
    )
    for code in cells:
        exec(code, ns)
    return ns


def _answers(student: str | None = None) -> dict:
    """The functions of the solution, with the given simulated student's answer cells."""
    cells = dict(SOLUTIONS)
    if student:
        cells.update(corpus.STUDENTS[student].answers)
    return _functions(*cells.values())


def _check(fns: dict, name: str, model: nn.Module, *, hidden: bool = False) -> None:
    check, takes_model = CHECKS[name]
    check(fns[name], *([model] if takes_model else []), hidden=hidden)


@pytest.fixture(autouse=True)
def float64():
    """The notebook's setup cell makes float64 the default dtype."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Linear(1, 1).to(torch.float64)


@pytest.mark.parametrize("hidden", [False, True])
def test_solutions_pass_every_check(model, hidden, capsys):
    """Do the instructor's solutions pass every visible and hidden check?"""
    fns = _answers()
    for name in CHECKS:
        _check(fns, name, model, hidden=hidden)
    assert capsys.readouterr().out.count("passed") == len(CHECKS)


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("student", ALTERNATIVES)
def test_alternatives_pass_every_check(model, student, hidden):
    """Do correct answers written another way (imported names, is_grads_batched, jacrev
    keeping the output dimension, a zero_grad loop, float32) pass too?"""
    fns = _answers(student)
    for name in CHECKS:
        _check(fns, name, model, hidden=hidden)


def test_solutions_leave_the_model_untouched(model):
    """Do the checks run the student's code on the notebook's model without changing it?"""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    _check(_answers(), "per_sample_grads", model, hidden=True)
    for k, v in model.named_parameters():
        assert torch.equal(v.detach(), before[k])


@pytest.mark.parametrize(
    ("student", "fn", "code", "named"),
    [
        ("api_shortcuts", "grads_autograd_grad", "wrong_api", "torch.autograd.grad"),
        ("rows_not_cleared", "per_sample_jacobian_loop", "accumulated_rows", "`a`"),
        ("summed_batch", "per_sample_jacobian_vectorized", "summed_over_batch", "(a, b)"),
        ("not_vectorised", "per_sample_jacobian_vectorized", "not_vectorised", "vectorised"),
        ("not_vectorised", "per_sample_jacobian_functional", "transposed", "(a, b)"),
        ("no_create_graph", "second_derivative", "no_grad_fn", "create_graph=True"),
        ("summed_batch", "first_derivatives", "summed_over_batch", "`t`"),
        # Module mistakes name the parameter (`weight`, `bias`).
        ("wrong_tensors", "per_sample_grads_loop", "all_zero", "`weight`"),
        ("summed_batch", "per_sample_grads", "summed_over_batch", "`weight`"),
        ("not_vectorised", "per_sample_grads_loop", "parameter_names", "`weight`"),
    ],
)
def test_mistake_is_named(model, student, fn, code, named):
    """Does each known mistake fail its check with the diagnosis and the name concerned?"""
    with pytest.raises(CheckFailed) as info:
        _check(_answers(student), fn, model)
    # str() is the text fixed when the failure was raised: what every display shows.
    assert f"[{code}]" in str(info.value), str(info.value)
    assert named in str(info.value)


def test_hardcoded_module_gradients_fail_only_hidden(model):
    """Does (xᵢ, 1) hard-coded for nn.Linear(1, 1) pass the visible test but fail the
    hidden one, which also uses modules with other parameters?"""
    fns = _answers("incomplete")
    _check(fns, "per_sample_grads", model)
    with pytest.raises(CheckFailed) as info:
        _check(fns, "per_sample_grads", model, hidden=True)
    assert "`weight`" in info.value.render(color=False)


def test_replaced_parameters_are_reported(model):
    """Is a function that swaps the model's parameters for new tensors told so?"""
    code = """
def per_sample_grads(model, x):
    rows = {"weight": [], "bias": []}
    for i in range(len(x)):
        model.weight = nn.Parameter(model.weight.detach().clone())
        model.bias = nn.Parameter(model.bias.detach().clone())
        w, b = model.weight, model.bias
        model(x[i : i + 1]).sum().backward()
        rows["weight"].append(w.grad)
        rows["bias"].append(b.grad)
    return {k: torch.stack(v) for k, v in rows.items()}
"""
    with pytest.raises(CheckFailed) as info:
        a04.check_per_sample_grads(_functions(code)["per_sample_grads"], model)
    assert "[parameters_replaced]" in str(info.value)
    assert "`weight`" in info.value.render(color=False)
