"""Rebuild examples/sample_class/ from the release notebooks and the simulated students.

    .venv/bin/python examples/build_sample_class.py

Each sample student is one simulated student of tests/students/ per assignment (the
perfect one, a blank one, and realistic mistakes), written in nbgrader's layout
`sample_class/<student>/<assignment>/<assignment>.ipynb`.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import notebooks  # noqa: E402

# sample student -> which simulated student they are, per assignment (first match wins).
CLASS = {
    "alice": ["perfect"],
    "bob": ["blank"],
    "chen": [
        "double_backward",
        "accumulated_rows",
        "adjoint_missing_factor",
        "summed_batch",
        "grads_not_zeroed",
    ],
    "dara": [
        "missing_chain_factor",
        "transposed",
        "graph_missing_reciprocal",
        "no_create_graph",
        "where_nan",
    ],
    "eli": [
        "cos_alias_import",
        "vjp_swapped",
        "analytic_uses_autograd",
        "wrong_tensors",
        "naive_softplus",
    ],
    "fay": ["alt_float32", "alt_float32", "alt_float32", "alt_float32"],
    "gus": [
        "exact_equality",
        "alt_functional",
        "alt_graph_renamed",
        "alt_autograd_grad",
        "alt_apis",
    ],
}

CORPORA = {
    "01_derivatives": "tests.students.a01_derivatives",
    "02_chain_rule": "tests.students.a02_chain_rule",
    "03_vector_jacobian": "tests.students.a03_vector_jacobian",
    "04_parametrized": "tests.students.a04_parametrized",
    "05_using_autograd": "tests.students.a05_using_autograd",
}


def main() -> None:
    out = ROOT / "examples" / "sample_class"
    if out.exists():
        shutil.rmtree(out)
    for assignment, module_name in CORPORA.items():
        release = ROOT / "release" / assignment / f"{assignment}.ipynb"
        try:
            corpus = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        if not release.exists():
            continue
        source = notebooks.read(next((ROOT / "source" / assignment).glob("*.ipynb")))
        for student, choices in CLASS.items():
            name = next((c for c in choices if c in corpus.STUDENTS), None)
            if name is None:
                continue
            sim = corpus.STUDENTS[name]
            nb = notebooks.read(release)
            if not sim.blank:
                answers = notebooks.solutions(source)
                answers.update(sim.answers)
                nb = notebooks.fill(nb, answers)
            notebooks.write(nb, out / student / assignment / f"{assignment}.ipynb")
            print(f"{student:6s} {assignment:20s} {name}")


if __name__ == "__main__":
    main()
