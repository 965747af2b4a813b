"""03_vector_jacobian end to end: the release, and simulated students graded by real nbgrader.

One course, graded once for the module: the instructor's solution, the blank release,
two students who answer the three Q6 cells with the ways rotated (so each cell is answered
by a backward loop, by functional.jacobian and by vmap(jacrev) across the three), and one
student with a typical mistake in each of ten cells.
"""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from autograder import course as course_mod
from autograder import notebooks
from autograder.assignments import a03
from autograder.checking.jacobians import (
    batched_jacobian,
    jacobian_matrix,
    reference_vjp,
    reference_vjps,
)
from tests.conftest import ROOT, Course

A = "03_vector_jacobian"
SOURCE = ROOT / "source" / A / f"{A}.ipynb"
RELEASE = ROOT / "release" / A / f"{A}.ipynb"
F64 = torch.float64


def define(name: str, body: str) -> str:
    """A student's answer cell: `def name(f, x):` with the given body."""
    lines = body.strip("\n").splitlines()
    return f"def {name}(f, x):\n" + "\n".join("    " + line for line in lines) + "\n"


# The batched Jacobian, each of the three ways.
LOOP = """
x = x.detach().clone().requires_grad_(True)
y = f(x)
rows = []
for k in range(y.shape[1]):
    v = torch.zeros_like(y)
    v[:, k] = 1.0
    x.grad = None
    y.backward(v, retain_graph=True)
    rows.append(x.grad)
return torch.stack(rows, dim=1)
"""
# torch.autograd.functional.jacobian, reshaped: the Jacobian of f(x).sum(0) is (3, N, 2).
FUNCTIONAL = """
return torch.autograd.functional.jacobian(lambda t: f(t).sum(0), x).permute(1, 0, 2)
"""
VMAP = """
return torch.func.vmap(torch.func.jacrev(f))(x)
"""
WAYS = {"loop": LOOP, "functional": FUNCTIONAL, "vmap": VMAP}
Q6_CELLS = {
    "q6-2-rows-answer": "jacobian_rows",
    "q6-3-functional-answer": "jacobian_functional",
    "q6-4-vmap-answer": "jacobian_vmap",
}


# The ways used in the (rows, functional, vmap) cells: the solution's, then two rotations.
ROTATIONS = [
    ("loop", "functional", "vmap"),
    ("functional", "vmap", "loop"),
    ("vmap", "loop", "functional"),
]


def ways(rows: str, functional: str, vmap: str) -> dict[str, str]:
    """The three Q6 cells answered with the given ways (whatever the cell's title)."""
    chosen = dict(zip(Q6_CELLS, (rows, functional, vmap), strict=True))
    return {gid: define(Q6_CELLS[gid], WAYS[way]) for gid, way in chosen.items()}


# One student, one typical mistake in each of these cells.
MISTAKES = {
    # The batched analytic Jacobian with inputs × outputs per sample: (N, 2, 3).
    "q6-1-analytic-answer": """
def jacobian_f(x):
    x1, x2 = x[:, 0], x[:, 1]
    c = torch.cos(x1 + x2**2)
    columns = [torch.stack([x2, c, 2 * x1], dim=1), torch.stack([x1, 2 * x2 * c, -3 + 0 * x1], dim=1)]
    return torch.stack(columns, dim=1)
""",
    # .grad never cleared between rows: row k is the sum of the true rows 0..k.
    "q6-2-rows-answer": define(
        "jacobian_rows",
        LOOP.replace("    x.grad = None\n", "").replace("append(x.grad)", "append(x.grad.clone())"),
    ),
    # The full (N, 3, N, 2) Jacobian of the batch, diagonal blocks not taken.
    "q6-3-functional-answer": define(
        "jacobian_functional", "return torch.autograd.functional.jacobian(f, x)"
    ),
    # Batch axis second: (3, N, 2).
    "q6-4-vmap-answer": define(
        "jacobian_vmap", "return torch.func.vmap(torch.func.jacrev(f))(x).permute(1, 0, 2)"
    ),
    # v and J swapped.
    "q2-vjp-answer": """
def vjp_from_jacobian(J, v):
    return J @ v


def vjp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    f(x).backward(v)
    return x.grad
""",
    # Written out, but with the rows as columns.
    "q2-3-jacobian-answer": """
def jacobian_example(x):
    x1, x2 = float(x[0]), float(x[1])
    return torch.tensor([[6 * x1, 2 * x1, 0.0], [0.0, 6 * x2**2, 10.0]])
""",
    # x.grad stored itself: every entry is the final, fully accumulated gradient.
    "q3-answer": """
def predicted_grads(x, vs):
    return 2 * x * vs.cumsum(0)


def accumulated_grads(f, x, vs):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    out = []
    for v in vs:
        y.backward(v, retain_graph=True)
        out.append(x.grad)
    return torch.stack(out)
""",
    # The notebook's numbers, hard-coded.
    "q1-answer": """
def vjp_y3x2(x, v):
    return torch.tensor([6.0, 12.0]) if float(v[1]) == 1.0 else torch.tensor([6.0, 120.0])
""",
    # The external gradient ignored: right only when v = (1, 1).
    "q4-answer": """
def q_grads(a, b, v):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    (3 * a**3 - b**2).sum().backward()
    return a.grad, b.grad
""",
}
# The cells it loses (all others keep full marks) and the finding each names ("" when the
# visible test passes and only the hidden one fails).
LOST = {
    "q6-1-analytic": "transposed",
    "q6-2-rows": "accumulated_rows",
    "q6-3-functional": "block_diagonal",
    "q6-4-vmap": "batch_axis",
    "q6-5-large-batch": "batch_axis",
    "q2-1-vjp-from-jacobian": "v_and_j_swapped",
    "q2-3-jacobian-example": "transposed",
    "q3-2-accumulated": "grad_aliased",
    "q1-vjp-y3x2": "",
    "q4-q-grads": "ignored_v",
}

# Cells each student loses (all others score full marks), and the finding each names.
STUDENTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "solved": ({}, {}),
    # With the solution (loop, functional diagonal blocks, vmap), every Q6 cell is answered
    # each of the three ways by one of these students.
    "rotated_1": (ways(*ROTATIONS[1]), {}),
    "rotated_2": (ways(*ROTATIONS[2]), {}),
    "mistakes": (MISTAKES, LOST),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = Course.create(tmp_path_factory.mktemp("a03"), [A])
    for name, (overrides, _) in STUDENTS.items():
        course.submit(name, A, course.solved(A, **overrides))
    course.submit("blank", A, course.release_nb(A))
    return course, course.grade(A)


def auto_cells(course: Course) -> dict[str, float]:
    nb = course.source_nb(A)
    return {
        notebooks.grade_id(c): float(c.metadata["nbgrader"]["points"])
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    }


# --- grading through nbgrader --------------------------------------------------------------


@pytest.mark.slow
def test_solved_source_scores_full_marks_and_blank_release_zero(graded):
    """Does the instructor's solution score all 17 points, and the untouched release 0,
    every cell saying 'not answered yet'?"""
    course, outcomes = graded
    assert {o.status for o in outcomes.values()} == {"graded"}, {
        s: o.reason for s, o in outcomes.items()
    }
    cells = auto_cells(course)
    assert sum(cells.values()) == 17
    assert outcomes["solved"].score == outcomes["solved"].max_score == 17
    assert outcomes["blank"].score == 0
    messages = course.messages("blank", A)
    for gid in cells:
        assert "not answered yet" in messages[gid], gid


@pytest.mark.slow
@pytest.mark.parametrize("name", ["solved", "rotated_1", "rotated_2"])
def test_any_of_the_three_ways_gets_full_marks(graded, name):
    """Is a right batched Jacobian accepted however it was built: a backward loop,
    functional.jacobian (diagonal blocks, or reshaped), or vmap(jacrev) — in every Q6 cell?"""
    _, outcomes = graded
    assert outcomes[name].score == 17, outcomes[name].cells


def test_each_q6_cell_is_answered_each_way():
    """Across the solution and the two rotated students, does every Q6 cell see all three
    ways?"""
    for column in zip(*ROTATIONS, strict=True):
        assert sorted(column) == sorted(WAYS)


@pytest.mark.slow
def test_mistakes_lose_exactly_their_points(graded):
    """Does each mistake cost exactly its cell's points, and nothing else?"""
    course, outcomes = graded
    cells = auto_cells(course)
    got = {gid: outcomes["mistakes"].cells[gid][0] for gid in cells}
    expected = {gid: 0.0 if gid in LOST else pts for gid, pts in cells.items()}
    assert got == expected
    assert outcomes["mistakes"].score == 5


@pytest.mark.slow
@pytest.mark.parametrize("gid", sorted(LOST))
def test_each_mistake_is_named(graded, gid):
    """Does the failed cell name the likely cause (transposed, accumulated rows,
    block-diagonal, batch axis, v and J swapped, aliased .grad, ignored v)?"""
    course, _ = graded
    text = course.messages("mistakes", A)[gid]
    assert "✗" in text, text
    if LOST[gid]:
        assert f"[{LOST[gid]}]" in text, text


@pytest.mark.slow
def test_hard_coded_answer_fails_the_hidden_test(graded):
    """Does an answer that returns the notebook's numbers pass the visible check and then
    fail on fresh inputs?"""
    course, _ = graded
    text = course.messages("mistakes", A)["q1-vjp-y3x2"]
    assert "✓ Q1 vjp_y3x2: passed (x = (1, 2)" in text
    assert "✗ Q1 vjp_y3x2" in text


@pytest.mark.slow
def test_messages_name_the_mistake_in_words(graded):
    """Do the messages say the mistake in words a student can act on?"""
    course, _ = graded
    m = course.messages("mistakes", A)
    assert "looks transposed" in m["q6-1-analytic"]
    assert "v and J look swapped" in m["q2-1-vjp-from-jacobian"]
    assert "J[i, :, i, :]" in m["q6-3-functional"]
    assert "row k of your Jacobian is the sum of the true rows 0..k" in m["q6-2-rows"]
    assert "the batch axis (N = 5) is axis 1, not axis 0" in m["q6-4-vmap"]
    assert "torch.stack(rows, dim=1)" in m["q6-4-vmap"]
    assert "Store x.grad.clone()" in m["q3-2-accumulated"]


@pytest.mark.slow
def test_visible_tests_check_the_curriculum_numbers(graded):
    """Do the visible tests of the solved notebook report the curriculum's numbers?"""
    course, _ = graded
    messages = course.messages("solved", A)
    shown = {
        "q1-vjp-y3x2": "v = (1, 1) gives (6, 12), v = (1, 10) gives (6, 120)",
        "q2-1-vjp-from-jacobian": "v = (1, 10, 100) gives (26, 1240)",
        "q2-2-vjp": "200, 2222, (100, 100), (6, 120), (26, 1240)",
        "q2-3-jacobian-example": "[[6, 0], [2, 24], [0, 10]]",
        "q3-1-predicted": "gives 2, 22, 222, 2222",
        "q3-2-accumulated": "gives 2, 22, 222, 2222",
        "q4-q-grads": "a.grad = (36, 81), b.grad = (−12, −8)",
    }
    for gid, text in shown.items():
        assert text in messages[gid], (gid, messages[gid])


@pytest.mark.slow
def test_timing_at_n_300_is_printed_for_the_student(graded):
    """Does the notebook print the loop and vmap timings at N = 300, and the agreement?"""
    course, _ = graded
    nb = course.autograded_nb("solved", A)
    printed = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )
    assert "N = 300 points" in printed
    assert re.search(r"row-by-row loop \(jacobian_rows\)\s+[\d.]+ ms", printed)
    assert re.search(r"vmap\(jacrev\(f\)\) \(jacobian_vmap\)\s+[\d.]+ ms", printed)
    assert "row-by-row loop time / vmap time:" in printed
    assert "all three agree: True" in printed


@pytest.mark.slow
def test_test_cells_never_write_to_stderr(graded):
    """Do test cells keep stderr clean, pass or fail (stderr would zero a cell)?"""
    course, _ = graded
    for name in [*STUDENTS, "blank"]:
        nb = course.autograded_nb(name, A)
        for cell in nb.cells:
            if (cell.metadata.get("nbgrader") or {}).get("grade"):
                for o in cell.get("outputs", []):
                    assert not (o.output_type == "stream" and o.name == "stderr"), (name, o)


# --- the release ---------------------------------------------------------------------------


def _block_lines(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(begin):
            inside = True
        elif stripped.startswith(end):
            inside = False
        elif inside and any(ch.isalnum() for ch in stripped):
            lines.append(stripped)
    return lines


def test_release_holds_no_solution_or_hidden_test_line():
    """Is every line inside a solution or hidden-test block of the source absent from the
    release (code and markdown alike)?"""
    source, release = notebooks.read(SOURCE), notebooks.read(RELEASE)
    secret = set()
    for cell in source.cells:
        secret.update(_block_lines(cell.source, "### BEGIN SOLUTION", "### END SOLUTION"))
        secret.update(_block_lines(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"))
    released = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    assert len(secret) > 40
    assert not secret & released, sorted(secret & released)
    text = RELEASE.read_text()
    assert "hidden=True" not in text and "BEGIN SOLUTION" not in text


def test_release_keeps_every_signature_and_docstring():
    """Does each stub keep the function's signature and docstring?"""
    release = notebooks.read(RELEASE)
    answers = {
        notebooks.grade_id(c): c.source
        for c in release.cells
        if (c.metadata.get("nbgrader") or {}).get("solution")
    }
    for gid, text in answers.items():
        assert "raise NotImplementedError()" in text, gid
    signatures = "\n".join(answers.values())
    for name in [
        "vjp_y3x2(x, v)",
        "vjp_from_jacobian(J, v)",
        "vjp(f, x, v)",
        "jacobian_example(x)",
        "predicted_grads(x, vs)",
        "accumulated_grads(f, x, vs)",
        "q_grads(a, b, v)",
        "grad_g(x)",
        "batched_gradient(f, x)",
        "jacobian_f(x)",
        "jacobian_rows(f, x)",
        "jacobian_functional(f, x)",
        "jacobian_vmap(f, x)",
    ]:
        assert f'def {name}:\n    """' in signatures, name


@pytest.mark.slow
def test_regenerating_the_release_gives_no_diff(tmp_path):
    """Does releasing the source again reproduce the committed release byte for byte?"""
    (tmp_path / "source").mkdir()
    shutil.copytree(ROOT / "source" / A, tmp_path / "source" / A)
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    written = course_mod.release(course_dir=tmp_path, assignments=[A])
    assert [p.name for p in written] == [f"{A}.ipynb"]
    assert written[0].read_bytes() == RELEASE.read_bytes()


# --- the curriculum's numbers ---------------------------------------------------------------

# Curriculum section 03, as written there; spaces, $ and the minus sign normalised.
CURRICULUM_NUMBERS = [
    "(6, 12)",
    "(6, 120)",
    "200",
    "2222",
    "(100, 100)",
    "(26, 1240)",
    "2, 22, 222, 2222",
    "(36, 81)",
    "(−12, −8)",
]


def _normal(text: str) -> str:
    return re.sub(r"[\s$]", "", text.replace("−", "-"))


@pytest.mark.parametrize("number", CURRICULUM_NUMBERS)
def test_every_curriculum_number_is_in_the_notebook(number):
    """Does each number of curriculum section 03 appear in the student's notebook?"""
    text = _normal("\n".join(c.source for c in notebooks.read(RELEASE).cells))
    assert _normal(number) in text


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def test_visible_numbers_are_what_torch_computes():
    """Are the numbers the visible tests compare with exactly what torch computes at the
    curriculum's inputs (so the visible tests check the curriculum, and it is right)?"""
    x = _t(a03.Y3X2_X)
    assert [(v, e) for v, e in a03.Y3X2_CASES] == [((1, 1), (6, 12)), ((1, 10), (6, 120))]
    for v, expected in a03.Y3X2_CASES:
        torch.testing.assert_close(reference_vjp(a03.y3x2, x, _t(v)), _t(expected))
    expected_cases = [200, 2222, (100, 100), (6, 120), (26, 1240)]
    assert [c[-1] for c in a03.WORKED_CASES] == expected_cases
    for _, fn, x0, v, expected in a03.WORKED_CASES:
        torch.testing.assert_close(reference_vjp(fn, _t(x0), _t(v)), _t(expected))
    torch.testing.assert_close(jacobian_matrix(a03.example, _t(a03.EXAMPLE_X)), _t(a03.EXAMPLE_J))
    torch.testing.assert_close(_t(a03.EXAMPLE_V) @ _t(a03.EXAMPLE_J), _t(a03.EXAMPLE_VJP))
    x1 = _t(a03.ACCUMULATION_X)
    per_call = [reference_vjp(a03.square, x1, _t(v)) for v in a03.ACCUMULATION_VS]
    torch.testing.assert_close(torch.stack(per_call).cumsum(0), _t(a03.ACCUMULATION_GRADS))
    assert a03.ACCUMULATION_GRADS == (2, 22, 222, 2222)
    ga, gb = reference_vjps(a03.q_function, (_t(a03.Q_A), _t(a03.Q_B)), _t(a03.Q_V))
    torch.testing.assert_close(ga, _t((36, 81)))
    torch.testing.assert_close(gb, _t((-12, -8)))
    assert (a03.Q_A_GRAD, a03.Q_B_GRAD) == ((36, 81), (-12, -8))


def test_analytic_jacobians_of_the_notebook_match_torch():
    """Do the analytic ∇g and J_f used by the checks equal torch's, on a batch in [−1, 1]²?"""
    x = a03.large_batch(3, n=50)
    torch.testing.assert_close(a03.jacobian_f(x), batched_jacobian(a03.f, x))
    grad = torch.func.vmap(torch.func.grad(a03.g))(x)
    torch.testing.assert_close(a03.grad_g(x), grad)
