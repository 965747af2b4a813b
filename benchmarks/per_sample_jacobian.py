"""Per-sample Jacobians of f(x; a, b) = a·x + b: one backward per sample vs vectorised.

Times the instructor's solutions of 04_parametrized Q2 (read from the source notebook, so
the figures are for exactly the code the notebook teaches) and, for comparison,
`torch.autograd.grad(..., is_grads_batched=True)` and `functional.jacobian(vectorize=True)`.
Prints each timing (best of `repeat` runs, after one warm-up) and its ratio to the loop.

    .venv/bin/python benchmarks/per_sample_jacobian.py [--batch 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from autograder import notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "source" / "04_parametrized" / "04_parametrized.ipynb"


def linear(x, a, b):
    return a * x + b


def _solutions() -> dict[str, Callable]:
    """The notebook's Q2 solution functions, defined as the notebook defines them."""
    ns: dict = {}
    exec("import torch\nfrom torch.func import functional_call, jacrev, vmap\n", ns)
    exec(notebooks.solutions(notebooks.read(NOTEBOOK))["q2-answer"], ns)
    return ns


def is_grads_batched(f, x, a, b):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    out = f(x, a, b).reshape(-1)
    j_a, j_b = torch.autograd.grad(out, (a, b), torch.eye(out.numel()), is_grads_batched=True)
    return torch.stack([j_a, j_b], dim=1)


def jacobian_vectorize(f, x, a, b):
    j_a, j_b = torch.autograd.functional.jacobian(
        lambda a, b: f(x, a, b).reshape(-1), (a, b), vectorize=True
    )
    return torch.stack([j_a, j_b], dim=1)


def best_time(fn: Callable, *args, repeat: int) -> float:
    fn(*args)  # warm-up: the first torch.func call imports and initialises its machinery
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main(*, batch: int = 1000, repeat: int = 5) -> dict[str, float]:
    """Time every method at `batch` samples; print a table; return {method: seconds}."""
    torch.set_default_dtype(torch.float64)
    ns = _solutions()
    methods = {
        "loop (one backward per sample)": ns["per_sample_jacobian_loop"],
        "functional.jacobian": ns["per_sample_jacobian_functional"],
        "functional.jacobian(vectorize=True)": jacobian_vectorize,
        "autograd.grad(is_grads_batched=True)": is_grads_batched,
        "vmap(jacrev) (the notebook's vectorised)": ns["per_sample_jacobian_vectorized"],
    }
    x = torch.linspace(-2.0, 2.0, batch).reshape(batch, 1)
    a, b = torch.tensor(3.0), torch.tensor(-1.0)
    expected = torch.cat([x, torch.ones_like(x)], dim=1)
    times: dict[str, float] = {}
    for name, fn in methods.items():
        torch.testing.assert_close(fn(linear, x, a, b), expected)  # time only right answers
        times[name] = best_time(fn, linear, x, a, b, repeat=repeat)
    loop = times["loop (one backward per sample)"]
    print(f"Per-sample Jacobian of a·x + b w.r.t. (a, b), B = {batch}, best of {repeat} runs")
    for name, t in times.items():
        print(f"  {name:42s} {1e3 * t:9.2f} ms   {loop / t:7.1f}x vs loop")
    vec = times["vmap(jacrev) (the notebook's vectorised)"]
    print(f"loop / vectorised = {loop / vec:.0f}x")
    return times


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="number of samples B")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per method")
    args = parser.parse_args(argv)
    main(batch=args.batch, repeat=args.repeat)


if __name__ == "__main__":
    cli()
