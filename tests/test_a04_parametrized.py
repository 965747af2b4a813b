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
    for i, code in enumerate(cells):  # (named as a notebook's cells are: the answer's code)
        exec(compile(code, f"<cell {i}>", "exec"), ns)
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
        # The right values reached another way than the question asks.
        ("fd_for_x", "grads_backward", "numerical_difference", "shifted"),
        ("mixed_apis", "grads_backward", "wrong_api", "forward-mode"),
        ("mixed_apis", "grads_jacobian", "wrong_api", "torch.func.jacrev"),
        ("jacobian_everywhere", "per_sample_jacobian_loop", "not_a_loop", "functional.jacobian"),
        ("two_grads_per_sample", "per_sample_jacobian_loop", "not_a_loop", "10 time(s)"),
        ("func_grad_loop", "per_sample_grads_loop", "not_a_loop", "torch.func.grad"),
        ("forward_loops", "per_sample_jacobian_vectorized", "not_vectorised", "forward mode 5"),
        ("whole_batch_jacobian", "per_sample_grads", "wrong_api", "vmap(jacrev(...))"),
        ("finite_differences", "second_derivative", "numerical_difference", "shifted"),
        ("finite_differences", "per_sample_grads", "method_missing", "autograd"),
        # What the answer leaves behind, and what it returns.
        ("callers_tensors", "grads_backward", "changed_input", "requires_grad"),
        ("leaky_module_grad", "per_sample_grads_loop", "changed_model", "`weight`"),
        ("leaky_module_grad", "per_sample_grads", "changed_model", "requires_grad"),
        ("grads_accumulate", "per_sample_grads_loop", "accumulated_over_samples", "`weight`"),
        ("python_numbers", "grads_backward", "wrong_type", "df_dx returned by `grads_backward`"),
        ("parameters_first", "grads_backward", "swapped_outputs", "(df_da, df_db, df_dx)"),
        ("parameters_first", "grads_autograd_grad", "swapped_outputs", "(df_dx, df_da, df_db)"),
        ("parameters_first", "grads_jacobian", "swapped_outputs", "wrong order"),
        ("keep_output_dim", "per_sample_jacobian_vectorized", "size_one_dims", "(5, 2, 1)"),
        ("keep_output_dim", "per_sample_grads", "size_one_dims", "`weight`"),
        ("grads_as_list", "per_sample_grads_loop", "parameter_names", "`weight`"),
    ],
)
def test_mistake_is_named(model, student, fn, code, named):
    """Does each known mistake fail its check with the diagnosis and the name concerned?"""
    with pytest.raises(CheckFailed) as info:
        _check(_answers(student), fn, model)
    # str() is the text fixed when the failure was raised: what every display shows.
    assert f"[{code}]" in str(info.value), str(info.value)
    assert named in str(info.value)


def test_hardcoded_module_gradients_are_no_autograd(model):
    """Is (xᵢ, 1) hard-coded for nn.Linear(1, 1), right for the visible test's model, failed
    there already as no autograd at all, and on the hidden modules too?"""
    fns = _answers("incomplete")
    for hidden in (False, True):
        with pytest.raises(CheckFailed) as info:
            _check(fns, "per_sample_grads", model, hidden=hidden)
        assert info.value.codes == ["method_missing"]


def test_loop_counts_are_per_call(model):
    """A check's first call is made twice: is one backward per sample still counted per
    call, so the loop passes and two per sample fail, visible (B = 5) and hidden?"""
    for hidden in (False, True):
        _check(_answers(), "per_sample_jacobian_loop", model, hidden=hidden)
        with pytest.raises(CheckFailed) as info:
            _check(_answers("two_grads_per_sample"), "per_sample_jacobian_loop", model,
                   hidden=hidden)  # fmt: skip
        assert info.value.codes == ["not_a_loop"]


def test_the_model_keeps_no_grad_and_requires_grad(model):
    """After every check of the solutions (visible and hidden), has the notebook's model
    no .grad and still requires grad?"""
    fns = _answers()
    for hidden in (False, True):
        for name in ("per_sample_grads_loop", "per_sample_grads"):
            _check(fns, name, model, hidden=hidden)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


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
