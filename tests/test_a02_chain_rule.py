"""02_chain_rule's checks, called directly on the instructor's solution and on mistakes.

The simulated students graded through nbgrader are in tests/students/a02_chain_rule.py.
"""

from __future__ import annotations

import pytest
import torch

from autograder import graphs, notebooks
from autograder.assignments import a02
from autograder.checking.feedback import CheckFailed
from tests.conftest import ROOT

A = "02_chain_rule"


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
            meta.get("solution") or meta.get("grade_id") in ("setup", "f-definition")
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
