"""05_using_autograd's checks, called directly on the instructor's solution and on the
answers of the simulated students (tests/students/a05_using_autograd.py, which are graded
through nbgrader by tests/test_corpus.py and under 20 seeds by tests/test_validity.py).

Correct alternatives must pass every check, visible and hidden; each known mistake must
fail its check, visible and hidden, with its diagnosis.
"""

from __future__ import annotations

import pytest
import torch

from autograder import notebooks
from autograder.assignments import a05
from autograder.checking.feedback import CheckFailed
from autograder.checking.sampling import SEED_ENV
from tests.conftest import ROOT
from tests.students import a05_using_autograd as corpus

A = corpus.ASSIGNMENT
SOURCE = notebooks.read(ROOT / "source" / A / f"{A}.ipynb")
SOLUTIONS = notebooks.solutions(SOURCE)

# test cell -> (check, the function it is called on)
CHECKS = {
    "q1-1-softplus": (a05.check_softplus, "softplus"),
    "q1-2-softplus-grad": (a05.check_softplus_grad, "softplus_grad"),
    "q1-3-softplus-second": (a05.check_softplus_second, "softplus_second"),
    "q2-1-fit-linear": (a05.check_fit_linear, "fit_linear"),
    "q2-2-fit-weights": (a05.check_fit_weights, "fit_weights"),
    "q2-3-predict": (a05.check_predict, "predict"),
    "q3-1-fixed-grad": (a05.check_fixed_grad, "fixed_grad"),
    "q3-2-two-grads": (a05.check_two_grads, "two_grads"),
    "q3-3-sqrt-where": (a05.check_sqrt_where_grad, "sqrt_where_grad"),
    "q3-4-clipped-grad": (a05.check_clipped_grad, "clipped_grad"),
    "q4-1-hvp-double-backward": (a05.check_hvp_double_backward, "hvp_double_backward"),
    "q4-2-hvp-forward-over-reverse": (
        a05.check_hvp_forward_over_reverse,
        "hvp_forward_over_reverse",
    ),
}
ALTERNATIVES = [
    name for name, s in corpus.STUDENTS.items() if not s.lost and not s.blank and name != "perfect"
]
MISTAKES = [
    (name, gid, code)
    for name, s in corpus.STUDENTS.items()
    for gid, code in s.lost.items()
    if not s.blank
]


def _answers(student: str | None = None) -> dict:
    """The answer cells' functions, defined the way the notebook defines them."""
    cells = dict(SOLUTIONS)
    if student:
        cells.update(corpus.STUDENTS[student].answers)
    ns: dict = {}
    exec("import torch\n", ns)
    for gid, code in cells.items():  # (named as a notebook's cells are: the answer's code)
        exec(compile(code, f"<{gid}>", "exec"), ns)
    return ns


@pytest.fixture(autouse=True)
def float64():
    """The notebook's setup cell makes float64 the default dtype."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def test_every_test_cell_has_a_check():
    """Does every graded cell of the notebook call the check this file tests, and do the
    points add up to the corpus's POINTS?"""
    graded = {
        c.metadata["nbgrader"]["grade_id"]: c
        for c in SOURCE.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    }
    assert set(graded) == set(CHECKS)
    for gid, (check, fn) in CHECKS.items():
        assert f"a05.{check.__name__}({fn})" in graded[gid].source
    assert sum(c.metadata["nbgrader"]["points"] for c in graded.values()) == corpus.POINTS


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("student", [None, *ALTERNATIVES])
def test_right_answers_pass_every_check(student, hidden, capsys):
    """Do the instructor's solutions and the correct alternatives (float32, other APIs)
    pass every visible and hidden check?"""
    fns = _answers(student)
    for check, fn in CHECKS.values():
        check(fns[fn], hidden=hidden)
    assert capsys.readouterr().out.count("passed") == len(CHECKS)


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize(("student", "gid", "code"), MISTAKES)
def test_mistake_fails_with_its_cause(student, gid, code, hidden):
    """Does each known mistake fail its check, naming its cause (or none where none may
    be guessed), in the visible and the hidden test?"""
    check, fn = CHECKS[gid]
    with pytest.raises(CheckFailed) as info:
        check(_answers(student)[fn], hidden=hidden)
    if code is None:
        assert info.value.codes == [], str(info.value)
    else:
        assert info.value.codes[:1] == [code], str(info.value)


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_mistakes_are_not_lost_on_other_draws(seed, monkeypatch):
    """Do the trajectory and pitfall mistakes, named by matching the wrong computation,
    stay named on other hidden draws?"""
    monkeypatch.setenv(SEED_ENV, seed)
    for student, gid, code in MISTAKES:
        if not gid.startswith(("q2", "q3")):
            continue
        check, fn = CHECKS[gid]
        with pytest.raises(CheckFailed) as info:
            check(_answers(student)[fn], hidden=True)
        assert code is None or code in info.value.codes, (student, str(info.value))


def test_gd_trajectory_matches_a_torch_loop():
    """Is the grader's trajectory the one torch.optim.SGD takes with an nn.Linear(2, 1),
    and does freezing the bias give another one, with the bias constant?"""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 2, generator=g, dtype=torch.float64) * 4 - 2
    y = x @ torch.tensor([1.5, -0.5], dtype=torch.float64) - 0.5
    w0, b0 = torch.tensor([0.3, -0.1], dtype=torch.float64), torch.tensor(-0.2, dtype=torch.float64)
    model = torch.nn.Linear(2, 1, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(w0.reshape(1, 2))
        model.bias.copy_(b0.reshape(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def row():
        return torch.cat([model.weight.reshape(-1), model.bias]).detach().clone()

    rows = [row()]
    for _ in range(9):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x).squeeze(1), y).backward()
        opt.step()
        rows.append(row())
    expected = a05.gd_trajectory(x, y, w0, b0, 0.1, 9)
    torch.testing.assert_close(torch.stack(rows), expected)
    frozen = a05.gd_trajectory(x, y, w0, b0, 0.1, 9, train_b=False)
    assert torch.all(frozen[:, 2] == -0.2) and not torch.allclose(frozen, expected)


def test_hvp_functions_have_full_hessians():
    """Do the hidden functions' Hessians couple their inputs (off-diagonal entries), so
    that an element-wise product cannot pass for H·v?"""
    x = torch.linspace(-1.0, 1.2, 5, dtype=torch.float64)
    for _, f in a05.HVP_FUNCTIONS:
        h = torch.autograd.functional.hessian(f, x)
        off = h - torch.diag(torch.diagonal(h))
        assert float(off.abs().max()) > 0.05
