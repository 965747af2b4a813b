"""What the kernel's filesystem allowlist costs per submission, measured side by side.

    sudo .venv/bin/python benchmarks/sandbox_view.py [--rounds 30]

Kernels are forked from a warm server, so bubblewrap does not start them: for each
submission it builds a mount namespace around a placeholder process, and the forked
kernel enters it (autograder/batch/sandbox.py, ``View``). This times, alternating in
each round so that the machine's drift affects both alike:

- the view: bubblewrap building it and the placeholder ending (once per submission);
- a fork of this (torch-importing) process whose child enters the view, lists its
  root and exits, against the same fork without the view.

Needs root (as the sandbox does) and /usr/bin/bwrap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.batch import sandbox  # noqa: E402


def _fork(view: dict | None) -> float:
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if view is not None:
                sandbox.enter_view(view)
            os.listdir("/")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the child failed")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args(argv)
    if os.geteuid() != 0 or not sandbox.available().bwrap:
        print("needs root and bubblewrap", file=sys.stderr)
        return 2
    import torch  # noqa: F401 - a process as large as the fork server

    here = Path(sandbox.__file__).resolve().parents[1]
    expose = sorted({os.path.realpath(p) for p in (here, sys.prefix, sys.base_prefix)})
    build, plain, entered = [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.rounds):
            plain.append(_fork(None))
            started = time.perf_counter()
            view = sandbox.View(workdir, expose)
            built = time.perf_counter() - started
            entered.append(_fork(view.request()))
            started = time.perf_counter()
            view.close()
            build.append(built + time.perf_counter() - started)

    def ms(xs):
        return f"median {1000 * statistics.median(xs):6.1f} ms (min {1000 * min(xs):.1f})"

    print(f"{args.rounds} rounds, alternating (a shared machine: compare within a round)")
    print(f"view built and closed by bubblewrap:   {ms(build)}")
    print(f"fork + exit, no view:                  {ms(plain)}")
    print(f"fork + enter the view + exit:          {ms(entered)}")
    extra = statistics.median(b + e - p for b, e, p in zip(build, entered, plain, strict=True))
    print(f"per submission, the allowlist adds:    {1000 * extra:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
