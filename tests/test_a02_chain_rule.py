"""02_chain_rule end to end: the release, and simulated students graded by real nbgrader.

One course, every student submitted, graded once for the module (grading costs seconds
per notebook). Each student answers everything correctly except the cells named in
`LOST`; the tests ask that exactly those cells lose their points, with a message naming
the cause.
"""

from __future__ import annotations

import filecmp
import shutil

import pytest
import torch

from autograder import course as course_mod
from autograder import graphs, notebooks
from autograder.assignments import a02
from autograder.checking.feedback import CheckFailed

try:  # the fixtures module, whether tests/ is a package or not
    from tests.conftest import ROOT, Course
except ImportError:  # pragma: no cover
    from conftest import ROOT, Course

A = "02_chain_rule"

# --- answers ------------------------------------------------------------------------------


def _graph(**nodes) -> str:
    body = "".join(f"        {k!r}: {v!r},\n" for k, v in nodes.items())
    return f"def f_graph():\n    return {{\n{body}    }}\n"


CORRECT = {
    "x": ("input",),
    "a": ("square", "x"),
    "b": ("log", "a"),
    "c": ("sin", "x"),
    "d": ("mul", "b", "c"),
    "e": ("reciprocal", "x"),
    "f": ("add", "d", "e"),
}

GRAPH_POW = _graph(  # negative power for 1/x, self-multiply for x², own names, output first
    total=("+", "inv", "prod"),
    prod=("*", "sine", "lg"),
    inv=("pow", "u", -1),
    lg=("ln", "usq"),
    sine=("sin", "u"),
    usq=("mul", "u", "u"),
    u=("leaf",),
)
GRAPH_DIV = _graph(  # 1 as a named constant divided by x, x² as a power
    t="input",
    one=("const", 1),
    r=("div", "one", "t"),
    p=("pow", "t", 2),
    l=("log", "p"),
    s=("sin", "t"),
    m=("mul", "s", "l"),
    out=("add", "r", "m"),
)

NO_RECIPROCAL = _graph(**{k: v for k, v in CORRECT.items() if k != "e"} | {"f": ("add", "d", "x")})
REVERSED = _graph(**CORRECT | {"a": ("square", "b"), "b": ("log", "x")})
EXTRA_NODE = _graph(**CORRECT | {"g": ("cos", "x")})

ADJOINT_NO_FACTOR = """
def adjoints(x):
    a = x**2
    b = torch.log(a)
    c = torch.sin(x)
    f_ = torch.ones_like(x)
    d_ = f_
    e_ = f_
    b_ = d_ * c
    c_ = d_ * b
    a_ = b_                       # the factor 1/a is forgotten
    x_ = a_ * 2 * x + c_ * torch.cos(x) - e_ / x**2
    return {"f": f_, "d": d_, "e": e_, "b": b_, "c": c_, "a": a_, "x": x_}
"""

F_PRIME_AUTOGRAD_INSIDE = """
def f_prime(x):
    xx = x.detach().clone().requires_grad_(True)
    f(xx).sum().backward()
    return xx.grad
"""

NONLEAF_GRAD = """
def dz_dx(x):
    return 3 * x**2 * torch.cos(x**3 + 4)


def dz_dy_and_dz_dx(x):
    x = x.detach().clone().requires_grad_(True)
    y = x**3 + 4
    z = torch.sin(y)
    z.backward(torch.ones_like(z))
    return y.grad, x.grad          # y is not a leaf and retain_grad() was not called
"""

STUDENTS = {
    "perfect": {},
    "graph_pow": {"q2-answer": GRAPH_POW},
    "graph_div": {"q2-answer": GRAPH_DIV},
    "no_reciprocal": {"q2-answer": NO_RECIPROCAL, "q3-2-answer": ADJOINT_NO_FACTOR},
    "reversed": {"q2-answer": REVERSED, "q3-1-answer": F_PRIME_AUTOGRAD_INSIDE},
    "extra_node": {"q2-answer": EXTRA_NODE, "q1-answer": NONLEAF_GRAD},
}
LOST = {
    "perfect": set(),
    "graph_pow": set(),
    "graph_div": set(),
    "no_reciprocal": {"q2-graph", "q3-2-adjoints"},
    "reversed": {"q2-graph", "q3-1-analytic"},
    "extra_node": {"q2-graph", "q1-2-retained"},
}


def _auto_cells(nb) -> dict[str, float]:
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"]] = float(meta["points"])
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One course with every student submitted, graded once by nbgrader."""
    course = Course.create(tmp_path_factory.mktemp("a02"), [A])
    course.submit("blank", A, course.release_nb(A))
    for name, answers in STUDENTS.items():
        course.submit(name, A, course.solved(A, **answers))
    return course, course.grade(A)


@pytest.fixture(scope="module")
def cells(graded):
    course, _ = graded
    return _auto_cells(course.source_nb(A))


# --- the checks on the instructor's solutions, without nbgrader (fast) -------------------


@pytest.fixture(scope="module")
def solution():
    """The source notebook's setup and solution cells run in one namespace."""
    import matplotlib

    matplotlib.use("Agg")
    dtype = torch.get_default_dtype()  # the setup cell sets float64 for the whole process
    source = notebooks.read(ROOT / "source" / A / f"{A}.ipynb")
    ns: dict = {}
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and (
            meta.get("solution")
            or meta.get("grade_id")
            in (
                "setup",
                "f-definition",
            )
        ):
            code = "\n".join(
                line
                for line in notebooks.strip_markers(cell.source).splitlines()
                if not line.startswith("%")
            )
            exec(compile(code, f"<{meta['grade_id']}>", "exec"), ns)
    yield ns
    torch.set_default_dtype(dtype)


def _float32(fn):
    """The same answer computed in float32."""

    def to32(v):
        if isinstance(v, torch.Tensor):
            return v.float()
        if isinstance(v, dict):
            return {k: to32(t) for k, t in v.items()}
        if isinstance(v, tuple):
            return tuple(to32(t) for t in v)
        return v

    def wrapped(x, *args):
        return to32(fn(x.float(), *args))

    wrapped.__name__ = fn.__name__
    return wrapped


CHECKS = [
    ("check_dz_dx", "dz_dx"),
    ("check_retained", "dz_dy_and_dz_dx"),
    ("check_f_prime", "f_prime"),
    ("check_adjoints", "adjoints"),
    ("check_f_prime_autograd", "f_prime_autograd"),
    ("check_plot", "plot_derivatives"),
    ("check_tangents", "forward_tangents"),
]


@pytest.mark.parametrize("seed", range(8))
def test_solutions_pass_hidden_checks_on_many_draws_in_float64_and_float32(
    solution, monkeypatch, seed, capsys
):
    """Do the instructor's answers pass every hidden check, whatever the draw, also when
    computed in float32 (a correct float32 answer must not fail)?"""
    monkeypatch.setenv("AUTOGRADER_SEED", str(seed))
    for check, name in CHECKS:
        getattr(a02, check)(solution[name], hidden=True)
        getattr(a02, check)(_float32(solution[name]), hidden=True)
    a02.check_graph(solution["f_graph"], hidden=True)
    assert "✗" not in capsys.readouterr().out


def test_graph_copied_from_torch_is_refused(solution):
    """Is a graph read from torch instead of written by hand refused?"""

    def f_graph():
        x = torch.tensor(1.5, requires_grad=True)
        return graphs.recorded(solution["f"](x), normalised=True).to_spec()

    assert graphs.compare(a02.recorded_f(), f_graph()).ok  # it would pass otherwise
    with pytest.raises(CheckFailed) as info:
        a02.check_graph(f_graph)
    assert info.value.codes == ["graph_not_by_hand"]


def test_adjoint_of_x_missing_a_path_is_named(solution):
    def adjoints(x):
        out = solution["adjoints"](x)
        out["x"] = out["a"] * 2 * x + out["c"] * torch.cos(x)  # the path through e is lost
        return out

    with pytest.raises(CheckFailed) as info:
        a02.check_adjoints(adjoints)
    assert info.value.codes == ["missing_path"]
    assert "path through e" in str(info.value)


def test_forgotten_log_chain_factor_in_f_prime_is_named():
    def f_prime(x):
        return torch.sin(x) / x**2 + torch.log(x**2) * torch.cos(x) - 1 / x**2

    with pytest.raises(CheckFailed) as info:
        a02.check_f_prime(f_prime)
    assert info.value.codes[0] == "log_chain_factor"


def test_plot_with_one_curve_is_refused(solution):
    import matplotlib.pyplot as plt

    def plot_derivatives(x):
        fig, ax = plt.subplots()
        ax.plot(x, solution["f_prime"](x), label="f'")
        ax.legend()
        return fig

    with pytest.raises(CheckFailed, match="two overlapping curves"):
        a02.check_plot(plot_derivatives)


# --- the release --------------------------------------------------------------------------


def _block_lines(source_nb) -> list[str]:
    """Every line inside a solution or hidden-test block of the instructor notebook."""
    lines, inside = [], False
    for cell in source_nb.cells:
        for line in cell.source.splitlines():
            text = line.strip()
            if text.startswith(("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")):
                inside = True
            elif text.startswith(("### END SOLUTION", "### END HIDDEN TESTS")):
                inside = False
            elif inside and text:
                lines.append(text)
    return lines


def test_release_has_no_solution_or_hidden_test_code():
    """Is every line of every solution and hidden-test block absent from the release?"""
    source = notebooks.read(ROOT / "source" / A / f"{A}.ipynb")
    release = notebooks.read(ROOT / "release" / A / f"{A}.ipynb")
    released = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    hidden = _block_lines(source)
    assert len(hidden) > 40
    leaked = [line for line in hidden if line in released]
    assert not leaked
    assert "=== BEGIN MARK SCHEME ===" not in "".join(c.source for c in release.cells)


@pytest.mark.slow
def test_regenerating_the_release_gives_no_diff(tmp_path):
    """Does releasing the source again reproduce the committed release byte for byte?"""
    root = tmp_path / "course"
    shutil.copytree(ROOT / "source" / A, root / "source" / A)
    shutil.copy2(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    course_mod.release(course_dir=root, assignments=[A])
    new, old = root / "release" / A, ROOT / "release" / A
    assert sorted(p.name for p in new.iterdir()) == sorted(p.name for p in old.iterdir())
    for p in old.iterdir():
        assert filecmp.cmp(p, new / p.name, shallow=False), p.name


# --- grading ------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_submission_is_graded(graded):
    _, outcomes = graded
    assert set(outcomes) == set(STUDENTS) | {"blank"}
    assert {o.status for o in outcomes.values()} == {"graded"}, {
        s: o.reason for s, o in outcomes.items()
    }


@pytest.mark.slow
def test_solved_source_scores_every_automatic_point(graded, cells):
    """Does the instructor's solution, graded by nbgrader, score full automatic marks?"""
    _, outcomes = graded
    perfect = outcomes["perfect"]
    assert perfect.score == sum(cells.values()) == 12
    assert perfect.max_score == 13 and perfect.needs_manual == 1


@pytest.mark.slow
def test_unmodified_release_scores_zero(graded, cells):
    """Does the blank release score zero, every test saying 'not answered yet'?"""
    course, outcomes = graded
    assert outcomes["blank"].score == 0
    messages = course.messages("blank", A)
    for gid in cells:
        assert "not answered yet" in messages[gid], (gid, messages[gid])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_each_student_loses_exactly_the_wrong_cells(graded, cells, name):
    _, outcomes = graded
    got = {gid: outcomes[name].cells[gid][0] for gid in cells}
    expected = {gid: 0.0 if gid in LOST[name] else pts for gid, pts in cells.items()}
    assert got == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", ["graph_pow", "graph_div"])
def test_equivalent_graph_encodings_get_full_marks(graded, name):
    """Reciprocal or negative power, square or self-multiply, own names and order: all pass."""
    course, outcomes = graded
    assert outcomes[name].cells["q2-graph"] == (3.0, 3.0)
    assert "✓ Q2 graph of f: passed" in course.messages(name, A)["q2-graph"]


@pytest.mark.slow
def test_graph_missing_the_reciprocal_branch_names_it(graded):
    course, _ = graded
    text = course.messages("no_reciprocal", A)["q2-graph"]
    assert "✗ Q2 graph of f" in text
    assert "missing node: reciprocal(x)" in text
    assert "extra edge: x → f" in text


@pytest.mark.slow
def test_graph_with_a_reversed_edge_names_it(graded):
    course, _ = graded
    text = course.messages("reversed", A)["q2-graph"]
    assert "reversed edge: you have b → a, torch records a → b" in text


@pytest.mark.slow
def test_graph_with_an_extra_node_names_it(graded):
    course, _ = graded
    text = course.messages("extra_node", A)["q2-graph"]
    assert "extra node: 'g' = cos(x)" in text


@pytest.mark.slow
def test_adjoint_without_its_chain_rule_factor_names_the_node(graded):
    course, _ = graded
    text = course.messages("no_reciprocal", A)["q3-2-adjoints"]
    assert "∂f/∂node is wrong for a (a = x²)" in text
    assert "[missing_chain_factor]: node a" in text
    assert "1/a" in text


@pytest.mark.slow
def test_analytic_derivative_that_calls_autograd_loses_its_points(graded):
    course, _ = graded
    text = course.messages("reversed", A)["q3-1-analytic"]
    assert "[used_autograd]" in text
    assert "without autograd" in text


@pytest.mark.slow
def test_reading_grad_of_a_non_leaf_is_explained_and_stderr_stays_clean(graded):
    """Is the student told they read .grad of a non-leaf, with torch's warning kept off
    stderr in every test cell (stderr would zero the cell whatever the check decided)?"""
    course, _ = graded
    text = course.messages("extra_node", A)["q1-2-retained"]
    assert "[nonleaf_grad]" in text
    assert "non-leaf tensor" in text and "retain_grad()" in text
    for name in [*STUDENTS, "blank"]:
        for cell in course.autograded_nb(name, A).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade"):
                stderr = [
                    o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"
                ]
                assert not stderr, (name, meta["grade_id"], stderr)


@pytest.mark.slow
def test_feedback_shows_the_graph_differences(graded):
    course, _ = graded
    html = notebooks.plain(course.feedback_html("no_reciprocal", A))
    assert "missing node: reciprocal(x)" in html
