"""Grading on a Dask cluster: how it scales with workers, and what Dask costs.

    .venv/bin/python benchmarks/dask_scaling.py [--students 10] [--assignments A ...]
                                                [--skip-scaling] [--skip-overhead]
                                                [--rounds N] [--phases N] [--prepared]

The synthetic class of benchmarks/grade_class.py (`--students` students, each submitting
every assignment named; 40 % correct, 40 % wrong, 20 % blank), with AUTOGRADER_SEED fixed
so that every run draws the same hidden inputs. Every run grades a fresh copy of it, and
all runs must give the same cell scores. With `--prepared`, the class's gradebook is
prepared once before any copy is made (as benchmarks/grade_class.py does: what a course
does once, not on every grading run), so that no run times it.

1. Scaling: a `dask scheduler` and one `dask worker` pinned to one core (`taskset`), and
   two workers pinned to one core each, run one, two, two, one (the machine's speed
   drifts: each setting is timed early and late, and their means compared); each worker
   grades two submissions at once (one more than its core, as local grading does). Timed in this process around
   `autograder.course.grade`: the whole run (the workers' warm-up included: the plugin
   reaches them as the run starts) and the grading span from the first outcome to the
   last. Throughput ratio = mean (submissions / span) with two over the same with one.
2. Overhead: `autograder grade` on this machine's workers against
   `autograder grade --cluster local:1` (a LocalCluster of one Dask worker running as many
   grading workers as local grading does), both as commands pinned to the same cores,
   in `--rounds` rounds (default 2) of local, cluster, cluster, local; overhead = mean
   cluster time / mean local time - 1 (each round's own figure printed too).
3. Fixed cost (with `--phases N`): N runs, in this process, of `autograder.course.grade`
   on a LocalCluster of one Dask worker, each printing how long each step of the run's
   start took: here (connect, the course's files gathered, the plugin registered, the
   first worker ready, the first outcome) and on the worker (plugin delivered, checks,
   files written, gradebook prepared, fork server started and warm, grading workers
   ready, all of it).

The machine's speed drifts when it is shared: the figures mean something only side by
side, within one run of this script.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import grade_class  # noqa: E402

from autograder import course as course_mod  # noqa: E402
from autograder.batch.distributed import DaskExecutor  # noqa: E402

DASK = Path(sys.executable).parent / "dask"
AUTOGRADER = Path(sys.executable).parent / "autograder"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TimedDask(DaskExecutor):
    """A DaskExecutor noting when each outcome arrives."""

    def run_jobs(self, settings, jobs):
        self.arrivals: list[float] = []
        for outcome in super().run_jobs(settings, jobs):
            self.arrivals.append(time.perf_counter())
            yield outcome


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def cluster_run(course: Path, assignments: list[str], pins: list[int], logs: Path) -> dict:
    """Grade `course` on a fresh scheduler with one worker per core in `pins`."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with (logs / "scheduler.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
                    + ["--dashboard-address", f"127.0.0.1:{_free_port()}", "--no-show"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=logs,
                )
            )
        for i, core in enumerate(pins):
            wdir = logs / f"worker-{i}"
            wdir.mkdir()
            with (wdir / "log.txt").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        ["taskset", "-c", str(core), str(DASK), "worker", address]
                        + ["--nthreads", "2", "--no-nanny", "--host", "127.0.0.1"]
                        + ["--no-dashboard", "--memory-limit", "0", "--name", f"w{i}"]
                        + ["--local-directory", str(wdir)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=wdir,
                    )
                )
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(len(pins), timeout=120)
        executor = TimedDask(address, course_dir=course, assignments=assignments)
        started = time.perf_counter()
        with executor:
            outcomes = course_mod.grade(
                course_dir=course, assignment=assignments, progress=False, executor=executor
            )
        wall = time.perf_counter() - started
        span = executor.arrivals[-1] - executor.arrivals[0]
        return {
            "n": len(outcomes),
            "wall": wall,
            "span": span,
            "first": executor.arrivals[0] - started,
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def phases_run(course: Path, assignments: list[str]) -> tuple[dict, dict, float, str]:
    """Grade `course` on a LocalCluster of one worker; (coordinator's phases, the worker's
    phases, whole run's seconds, how many were graded)."""
    executor = DaskExecutor("local:1", course_dir=course, assignments=assignments)
    started = time.perf_counter()
    with executor:
        outcomes = course_mod.grade(
            course_dir=course, assignment=assignments, progress=False, executor=executor
        )
    wall = time.perf_counter() - started
    worker = next(iter(executor.worker_phases.values()), {})
    graded = f"{sum(o.status == 'graded' for o in outcomes)} of {len(outcomes)} graded"
    return dict(executor.phases), worker, wall, graded


def _seconds(phases: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in phases.items())


def command_run(
    course: Path, assignments: list[str], pins: list[int], extra: list[str], log: Path
) -> float:
    started = time.perf_counter()
    with log.open("ab") as out:
        subprocess.run(
            [
                "taskset",
                "-c",
                ",".join(map(str, pins)),
                str(AUTOGRADER),
                "grade",
                *assignments,
                *extra,
            ],
            cwd=course,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=10)
    p.add_argument("--assignments", nargs="*", help="default: every released assignment")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        metavar="N",
        help="overhead: N rounds of local, cluster, cluster, local (default: %(default)s)",
    )
    p.add_argument(
        "--phases", type=int, default=0, metavar="N", help="time the start's steps in N runs"
    )
    p.add_argument(
        "--prepared", action="store_true", help="prepare the class's gradebook before timing"
    )
    p.add_argument("--work-dir", type=Path, help="keep the course directories here")
    args = p.parse_args(argv)

    os.environ["AUTOGRADER_SEED"] = grade_class.SEED
    assignments = args.assignments or grade_class.released(ROOT)
    here = cores()
    if len(here) < 2:
        print("needs at least two cores", file=sys.stderr)
        return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="dask-bench-"))
    template = work / "class"
    kinds = grade_class.build(template, assignments, args.students)
    if args.prepared:
        bindir = str(Path(sys.executable).parent)  # alembic, nbgrader
        env = dict(os.environ, PATH=os.pathsep.join([bindir, os.environ.get("PATH", "")]))
        grade_class.prepare(template, assignments, env)
    total = args.students * len(assignments)
    print(
        f"class: {args.students} students x {len(assignments)} assignments = {total} notebooks"
        f" {kinds}{', gradebook prepared' if args.prepared else ''}"
    )
    print(f"cores: {here}; load average at start: {os.getloadavg()[0]:.1f}")
    results: dict[str, list[dict]] = {}
    reference = None

    def fresh(name: str) -> Path:
        target = work / name
        shutil.copytree(template, target)
        return target

    def same_scores(name: str, course: Path) -> None:
        nonlocal reference
        got = grade_class.scores(course)
        if reference is None:
            reference = got
        elif got != reference:
            differ = sum(got.get(k) != v for k, v in reference.items())
            raise SystemExit(f"{name}: {differ} cell scores differ from the first run's")

    if not args.skip_scaling:
        # one, two, two, one: the machine's speed drifts, so each setting is timed early
        # and late, and the ratio taken between their means
        rates: dict[int, list[float]] = {1: [], 2: []}
        for i, count in enumerate((1, 2, 2, 1)):
            label = "one worker, one core" if count == 1 else "two workers, a core each"
            pins = here[:count]
            course = fresh(f"scaling-{i}-{count}")
            r = cluster_run(course, assignments, pins, work / f"scaling-{i}-{count}-logs")
            same_scores(label, course)
            rate = (r["n"] - 1) / r["span"]
            rates[count].append(rate)
            results.setdefault(label, []).append(r)
            print(
                f"{label:28s} run {i}: {r['n']} notebooks: run {r['wall']:.1f} s (first outcome"
                f" after {r['first']:.1f} s), grading span {r['span']:.1f} s, {rate:.3f} notebooks/s"
            )
        one = sum(rates[1]) / 2
        two = sum(rates[2]) / 2
        walls = {
            k: sum(r["wall"] for r in results[k]) / 2
            for k in ("one worker, one core", "two workers, a core each")
        }
        print(
            f"throughput ratio, two workers / one: {two / one:.2f} ({two:.3f} / {one:.3f}"
            f" notebooks/s; whole runs: {walls['one worker, one core'] / walls['two workers, a core each']:.2f})"
        )

    if not args.skip_overhead:
        pins = here[:2]
        times: dict[str, list[float]] = {"local": [], "cluster": []}
        order = ("local", "cluster", "cluster", "local") * args.rounds
        for i, kind in enumerate(order):
            course = fresh(f"overhead-{i}-{kind}")
            extra = ["--cluster", "local:1"] if kind == "cluster" else []
            t = command_run(course, assignments, pins, extra, work / f"overhead-{i}-{kind}.log")
            same_scores(f"{kind} run {i}", course)
            times[kind].append(t)
            print(f"{kind:8s} run {i}: {t:.1f} s")
            if i % 4 == 3:  # a round's figure: its two cluster runs over its two local ones
                r = i // 4
                mine = {k: sum(v[2 * r : 2 * r + 2]) / 2 for k, v in times.items()}
                print(f"  round {r}: {100 * (mine['cluster'] / mine['local'] - 1):+.1f} %")
        local = sum(times["local"]) / len(times["local"])
        cluster = sum(times["cluster"]) / len(times["cluster"])
        print(
            f"overhead of a LocalCluster on the same cores: local {local:.1f} s, cluster"
            f" {cluster:.1f} s (means of {len(times['local'])} runs each):"
            f" {100 * (cluster / local - 1):+.1f} %"
        )
    for i in range(args.phases):
        course = fresh(f"phases-{i}")
        load = os.getloadavg()[0]
        here_, worker, wall, graded = phases_run(course, assignments)
        same_scores(f"phases run {i}", course)
        print(f"phases run {i} (load {load:.1f}): whole run {wall:.1f} s, {graded}")
        # (jobs arrived, first worker ready, first outcome: seconds from the start)
        print(f"  coordinator, s: {_seconds(here_)}")
        print(f"  worker, s: {_seconds(worker)}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; identical cell scores in every run")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
