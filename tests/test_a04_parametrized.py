"""04_parametrized: release, the checks in-process, and simulated students through nbgrader.

The simulated students replace answer cells of the release notebook with realistic code:
correct alternatives must keep every point, and each known mistake must lose exactly its
cell's points with a message naming the mistake and the parameter concerned.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from autograder import course as course_mod
from autograder import notebooks
from autograder.assignments import a04
from autograder.checking.feedback import CheckFailed
from tests.conftest import ROOT
from tests.corpus import auto_cells, grade_corpus
from tests.students import Student

A = "04_parametrized"
Q1, Q2, Q3, Q4 = "q1-answer", "q2-answer", "q3-answer", "q4-answer"

# --- answer cells ------------------------------------------------------------------------

Q1_ALTERNATIVE = """
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
"""

Q1_WRONG_API = """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return a.grad, b.grad, x.grad


def grads_autograd_grad(f, x, a, b):
    return grads_backward(f, x, a, b)


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(lambda a, b, x: f(x, a, b), (a, b, x))
"""

Q1_JACOBIAN_PAIR = """
def grads_backward(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    f(x, a, b).backward()
    return a.grad, b.grad, x.grad


def grads_autograd_grad(f, x, a, b):
    x, a, b = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    return torch.autograd.grad(f(x, a, b), (a, b, x))


def grads_jacobian(f, x, a, b):
    return torch.autograd.functional.jacobian(lambda a, b: f(x, a, b), (a, b))
"""

Q2_ALTERNATIVE = """
def per_sample_jacobian_loop(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = [torch.stack(torch.autograd.grad(out[i], (a, b), retain_graph=True)) for i in range(len(out))]
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
"""


# Q2.1 never clears .grad (row k is the sum of rows 0..k); Q2.3 sums over the batch.
Q2_ACCUMULATES_AND_SUMMED = """
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


def per_sample_jacobian_functional(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b).reshape(-1), (a, b))
    return torch.stack([j_a, j_b], dim=1)


def per_sample_jacobian_vectorized(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    return torch.stack(torch.autograd.grad(f(x, a, b).sum(), (a, b)))
"""

# Q2.2 returns jacobian's blocks as they come (a (2, B) stack); Q2.3 is a loop in disguise.
Q2_LAYOUT_AND_LOOP = """
def per_sample_jacobian_loop(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    rows = []
    for i in range(out.numel()):
        rows.append(torch.stack(torch.autograd.grad(out[i], (a, b), retain_graph=True)))
    return torch.stack(rows)


def per_sample_jacobian_functional(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(lambda a, b: f(x, a, b).reshape(-1), (a, b))
    return [j_a, j_b]


def per_sample_jacobian_vectorized(f, x, a, b):
    return per_sample_jacobian_loop(f, x, a, b)
"""

Q3_ALTERNATIVE = """
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
"""

# Q3.1 reads gradients off copies the model never uses (all zeros); Q3.2 differentiates
# the batch's summed output, one gradient for the whole batch.
Q3_ZEROS_AND_SUMMED = """
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


def per_sample_grads(model, x):
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    out = functional_call(model, params, (x,)).sum()
    return dict(zip(params, torch.autograd.grad(out, list(params.values()))))
"""

# Q3.1 keys the result a/b instead of the parameter names; Q3.2 hard-codes (xᵢ, 1).
Q3_NAMES_AND_HARDCODED = """
def per_sample_grads_loop(model, x):
    w, b = model.weight, model.bias
    rows_w, rows_b = [], []
    for i in range(len(x)):
        gw, gb = torch.autograd.grad(model(x[i : i + 1]).sum(), (w, b))
        rows_w.append(gw)
        rows_b.append(gb)
    return {"a": torch.stack(rows_w), "b": torch.stack(rows_b)}


def per_sample_grads(model, x):
    return {"weight": x.reshape(-1, 1, 1).clone(), "bias": torch.ones(len(x), 1)}
"""

Q4_ALTERNATIVE = """
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
"""

# Q4.1 gives the parameter gradient of the summed output, not one row per point;
# Q4.2 differentiates the first derivative without create_graph=True.
Q4_SUMMED_AND_NO_CREATE_GRAPH = """
def first_derivatives(u, x, t):
    t = t.detach().clone().requires_grad_(True)
    (du_dt,) = torch.autograd.grad(u(x, t).sum(), t)
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    return du_dt, du_dx


def second_derivative(u, x, t):
    x = x.detach().clone().requires_grad_(True)
    (du_dx,) = torch.autograd.grad(u(x, t).sum(), x)
    (d2u_dx2,) = torch.autograd.grad(du_dx.sum(), x)
    return d2u_dx2
"""

STUDENTS: dict[str, Student] = {
    "perfect": Student({}, about="the instructor's solutions"),
    "blank": Student({}, blank=True, about="the unmodified release notebook"),
    "alternatives": Student(
        {Q1: Q1_ALTERNATIVE, Q2: Q2_ALTERNATIVE, Q3: Q3_ALTERNATIVE, Q4: Q4_ALTERNATIVE},
        about="correct answers written differently: imported grad/jacobian, is_grads_batched, "
        "a zero_grad loop, jacrev keeping the output dimension, vmap(jacrev) for du/dt",
    ),
    "mistakes_1": Student(
        {
            Q1: Q1_WRONG_API,
            Q2: Q2_ACCUMULATES_AND_SUMMED,
            Q3: Q3_ZEROS_AND_SUMMED,
            Q4: Q4_SUMMED_AND_NO_CREATE_GRAPH,
        },
        lost={
            "q1-2-autograd-grad",
            "q2-1-loop",
            "q2-3-vectorized",
            "q3-1-loop",
            "q3-2-vectorized",
            "q4-1-first",
            "q4-2-second",
        },
        diagnoses={
            "q1-2-autograd-grad": "wrong_api",
            "q2-1-loop": "accumulated_rows",
            "q2-3-vectorized": "summed_over_batch",
            "q3-1-loop": "all_zero",
            "q3-2-vectorized": "summed_over_batch",
            "q4-1-first": "summed_over_batch",
            "q4-2-second": "no_grad_fn",
        },
        about="backward instead of autograd.grad, rows never cleared, gradients read off "
        "copies the model never uses, batch summed where per-sample was asked, second "
        "derivative without create_graph",
    ),
    "mistakes_2": Student(
        {Q1: Q1_JACOBIAN_PAIR, Q2: Q2_LAYOUT_AND_LOOP, Q3: Q3_NAMES_AND_HARDCODED},
        lost={
            "q1-3-jacobian",
            "q2-2-functional",
            "q2-3-vectorized",
            "q3-1-loop",
            "q3-2-vectorized",
        },
        diagnoses={
            "q2-2-functional": "transposed",
            "q2-3-vectorized": "not_vectorised",
            "q3-1-loop": "parameter_names",
            "q3-2-vectorized": "wrong_layout",
        },
        about="jacobian without x, blocks not assembled, a loop called vectorised, keys a/b "
        "for a module, per-sample gradients hard-coded for nn.Linear(1, 1)",
    ),
}

# Text each lost cell's message must contain: the parameter (or parameters) concerned.
NAMES = {
    "mistakes_1": {
        "q1-2-autograd-grad": "torch.autograd.grad",
        "q2-1-loop": "`a`",
        "q2-3-vectorized": "(a, b)",
        "q3-1-loop": "`weight`",
        "q3-2-vectorized": "`weight`",
        "q4-1-first": "`t`",
        "q4-2-second": "create_graph=True",
    },
    "mistakes_2": {
        "q1-3-jacobian": "(df_da, df_db, df_dx)",
        "q2-2-functional": "(a, b)",
        "q3-1-loop": "`weight`",
        "q3-2-vectorized": "`weight`",
    },
}


# --- the checks in-process (fast) --------------------------------------------------------


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


@pytest.fixture(scope="module")
def solution():
    src = notebooks.read(ROOT / "source" / A / f"{A}.ipynb")
    return _functions(*notebooks.solutions(src).values())


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Linear(1, 1).to(torch.float64)


def _all_checks(fns: dict, model: nn.Module):
    return [
        (a04.check_grads_backward, (fns["grads_backward"],)),
        (a04.check_grads_autograd_grad, (fns["grads_autograd_grad"],)),
        (a04.check_grads_jacobian, (fns["grads_jacobian"],)),
        (a04.check_per_sample_jacobian_loop, (fns["per_sample_jacobian_loop"],)),
        (a04.check_per_sample_jacobian_functional, (fns["per_sample_jacobian_functional"],)),
        (a04.check_per_sample_jacobian_vectorized, (fns["per_sample_jacobian_vectorized"],)),
        (a04.check_per_sample_grads_loop, (fns["per_sample_grads_loop"], model)),
        (a04.check_per_sample_grads, (fns["per_sample_grads"], model)),
        (a04.check_first_derivatives, (fns["first_derivatives"],)),
        (a04.check_second_derivative, (fns["second_derivative"],)),
    ]


@pytest.mark.parametrize("hidden", [False, True])
def test_solutions_pass_every_check(solution, model, hidden, capsys):
    """Do the instructor's solutions pass every visible and hidden check?"""
    torch.set_default_dtype(torch.float64)
    for check, args in _all_checks(solution, model):
        check(*args, hidden=hidden)
    assert capsys.readouterr().out.count("passed") == 10


@pytest.mark.parametrize("hidden", [False, True])
def test_alternatives_pass_every_check(model, hidden):
    """Do correct answers written another way (imported names, is_grads_batched, jacrev
    keeping the output dimension, a zero_grad loop) pass too?"""
    fns = _functions(Q1_ALTERNATIVE, Q2_ALTERNATIVE, Q3_ALTERNATIVE, Q4_ALTERNATIVE)
    for check, args in _all_checks(fns, model):
        check(*args, hidden=hidden)


def test_solutions_leave_the_model_untouched(solution, model):
    """Do the checks run the student's code on the notebook's model without changing it?"""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    a04.check_per_sample_grads(solution["per_sample_grads"], model, hidden=True)
    for k, v in model.named_parameters():
        assert torch.equal(v.detach(), before[k])


@pytest.mark.parametrize(
    ("cells", "check", "fn", "code", "named"),
    [
        (
            (Q1_WRONG_API,),
            a04.check_grads_autograd_grad,
            "grads_autograd_grad",
            "wrong_api",
            "torch.autograd.grad",
        ),
        (
            (Q2_ACCUMULATES_AND_SUMMED,),
            a04.check_per_sample_jacobian_loop,
            "per_sample_jacobian_loop",
            "accumulated_rows",
            "`a`",
        ),
        (
            (Q2_ACCUMULATES_AND_SUMMED,),
            a04.check_per_sample_jacobian_vectorized,
            "per_sample_jacobian_vectorized",
            "summed_over_batch",
            "(a, b)",
        ),
        (
            (Q2_LAYOUT_AND_LOOP,),
            a04.check_per_sample_jacobian_vectorized,
            "per_sample_jacobian_vectorized",
            "not_vectorised",
            "vectorised",
        ),
        (
            (Q2_LAYOUT_AND_LOOP,),
            a04.check_per_sample_jacobian_functional,
            "per_sample_jacobian_functional",
            "transposed",
            "(a, b)",
        ),
        (
            (Q4_SUMMED_AND_NO_CREATE_GRAPH,),
            a04.check_second_derivative,
            "second_derivative",
            "no_grad_fn",
            "create_graph=True",
        ),
        (
            (Q4_SUMMED_AND_NO_CREATE_GRAPH,),
            a04.check_first_derivatives,
            "first_derivatives",
            "summed_over_batch",
            "`t`",
        ),
    ],
)
def test_mistake_is_named(cells, check, fn, code, named):
    """Does each known mistake fail its check with the diagnosis and the name concerned?"""
    fns = _functions(*cells)
    with pytest.raises(CheckFailed) as info:
        check(fns[fn])
    # str() is the text fixed when the failure was raised: what every display shows.
    assert f"[{code}]" in str(info.value), str(info.value)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("cell", "fn", "code", "named"),
    [
        (Q3_ZEROS_AND_SUMMED, "per_sample_grads_loop", "all_zero", "`weight`"),
        (Q3_ZEROS_AND_SUMMED, "per_sample_grads", "summed_over_batch", "`weight`"),
        (Q3_NAMES_AND_HARDCODED, "per_sample_grads_loop", "parameter_names", "`weight`"),
    ],
)
def test_module_mistake_is_named(model, cell, fn, code, named):
    """Do the module mistakes fail naming the parameter (`weight`, `bias`)?"""
    check = (
        a04.check_per_sample_grads if fn == "per_sample_grads" else a04.check_per_sample_grads_loop
    )
    with pytest.raises(CheckFailed) as info:
        check(_functions(cell)[fn], model)
    # str() is the text fixed when the failure was raised: what every display shows.
    assert f"[{code}]" in str(info.value), str(info.value)
    assert named in str(info.value)


def test_hardcoded_module_gradients_fail_only_hidden(model):
    """Does (xᵢ, 1) hard-coded for nn.Linear(1, 1) pass the visible test but fail the
    hidden one, which also uses modules with other parameters?"""
    fn = _functions(Q3_NAMES_AND_HARDCODED)["per_sample_grads"]
    a04.check_per_sample_grads(fn, model)
    with pytest.raises(CheckFailed) as info:
        a04.check_per_sample_grads(fn, model, hidden=True)
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


# --- release -----------------------------------------------------------------------------


def _release_copy(base: Path) -> Path:
    course = base / "course"
    (course / "source").mkdir(parents=True)
    shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(ROOT / "source" / A, course / "source" / A)
    course_mod.release(course_dir=course, assignments=[A])
    return course / "release" / A


@pytest.mark.slow
def test_release_is_reproducible_and_clean(tmp_path):
    """Does regenerating the release give the committed files byte for byte, with no
    solution or hidden-test code in them?"""
    fresh = _release_copy(tmp_path)
    committed = ROOT / "release" / A
    names = sorted(p.name for p in committed.iterdir())
    assert names == sorted(p.name for p in fresh.iterdir()) == [f"{A}.ipynb"]
    match, mismatch, errors = filecmp.cmpfiles(committed, fresh, names, shallow=False)
    assert (mismatch, errors) == ([], [])

    text = (committed / f"{A}.ipynb").read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN", "hidden=True"):
        assert marker not in text
    release = notebooks.read(committed / f"{A}.ipynb")
    answers = [c for c in release.cells if (c.metadata.get("nbgrader") or {}).get("solution")]
    assert [notebooks.grade_id(c) for c in answers] == [Q1, Q2, Q3, Q4]
    for cell in answers:
        # Only signatures, docstrings and nbgrader's stub are left for the student.
        body = [
            line.strip()
            for line in cell.source.splitlines()
            if line.strip() and not line.startswith("def ") and not line.strip().startswith('"""')
        ]
        assert set(body) == {"# YOUR CODE HERE", "raise NotImplementedError()"}, cell.source


# --- through nbgrader --------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return grade_corpus(tmp_path_factory.mktemp("a04"), A, STUDENTS)


@pytest.mark.slow
def test_every_submission_is_graded(graded):
    """Does every simulated student get a recorded, graded outcome?"""
    _, outcomes = graded
    assert set(outcomes) == set(STUDENTS)
    assert {o.status for o in outcomes.values()} == {"graded"}, {
        s: o.reason for s, o in outcomes.items() if o.status != "graded"
    }


@pytest.mark.slow
def test_solved_notebook_scores_full_marks(graded):
    """Does the instructor's solution score every point through nbgrader autograde?"""
    course, outcomes = graded
    cells = auto_cells(course, A)
    assert outcomes["perfect"].score == outcomes["perfect"].max_score == sum(cells.values()) == 13


@pytest.mark.slow
def test_blank_release_scores_zero(graded):
    """Does the unmodified release notebook score zero, saying 'not answered yet'?"""
    course, outcomes = graded
    assert outcomes["blank"].score == 0
    messages = course.messages("blank", A)
    for gid in auto_cells(course, A):
        assert "not answered yet" in messages[gid], gid


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_simulated_student(graded, name):
    """Does each simulated student lose exactly the points of the questions it gets wrong,
    with a message naming the mistake and the parameter concerned?"""
    course, outcomes = graded
    student = STUDENTS[name]
    if student.blank:
        return
    cells = auto_cells(course, A)
    got = {gid: outcomes[name].cells[gid][0] for gid in cells}
    expected = {gid: 0.0 if gid in student.lost else pts for gid, pts in cells.items()}
    assert got == expected, student.about
    messages = course.messages(name, A)
    for gid in student.lost:
        assert "✗" in messages[gid], (gid, messages[gid])
    for gid, code in student.diagnoses.items():
        assert f"[{code}]" in messages[gid], (gid, messages[gid])
    for gid, text in NAMES.get(name, {}).items():
        assert text in messages[gid], (gid, messages[gid])


@pytest.mark.slow
def test_speed_comparison_is_printed(graded):
    """Does the notebook measure and print loop vs vectorised at B = 1000 for the student,
    with the vectorised solution at least 10× faster?"""
    course, _ = graded
    nb = course.autograded_nb("perfect", A)
    printed = [
        o.text
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "stream" and "B = 1000" in o.text
    ]
    assert len(printed) == 1, printed
    ratio = float(printed[0].split("->")[1].split("x")[0])
    assert ratio >= 10, printed[0]


@pytest.mark.slow
def test_test_cells_never_write_to_stderr(graded):
    """Do test cells keep stderr clean, pass or fail (stderr would zero a cell)?"""
    course, _ = graded
    for name in STUDENTS:
        for cell in course.autograded_nb(name, A).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and cell.cell_type == "code":
                assert not [
                    o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"
                ], (name, meta)
