"""Grade one synthetic class twice — plain `nbgrader autograde`, then this course's grading
command — check that the scores are identical, and print both times, their ratio and the
peak memory of each run.

    .venv/bin/python benchmarks/grade_class.py [--students 30] [--assignments A ...]
                                               [--jobs N] [--per-assignment]
                                               [--sandbox-off] [--bracket | --interleave]
                                               [--work-dir DIR]

The class: `--students` students, each submitting every released assignment; 40 % submit
the instructor's solutions, 40 % wrong answers (half of their answer cells return
perturbed values), 20 % the blank release notebook. Both runs grade identical copies of
the same course, with AUTOGRADER_SEED fixed so hidden tests draw the same inputs. The
gradebooks are prepared (`nbgrader generate_assignment`, and the course's own once-per-course
preparation) before timing; the timed part is
what an instructor would run after collecting submissions:

- plain:   `nbgrader autograde <assignment>`, one assignment after the other;
- course:  `autograder grade A B ...`, one command for every assignment (parallel
           workers, kernels forked from a warm server, trusted re-checks, the kernel
           sandbox, feedback HTML and the grades CSV included);
- with --per-assignment: `autograder grade <assignment>`, one command per assignment;
- with --sandbox-off: the course's command again with AUTOGRADER_SANDBOX=0, to show
           what the sandbox costs;
- with --bracket: the course's command also just before the plain run (this machine's
           speed drifts over the minutes plain takes); the plain run is then also
           compared with the mean of the course's runs on either side of it;
- with --interleave: the course's command before the plain run and again after each of
           its assignments (a fresh copy of the class each time), so that its runs sample
           the machine's speed across the whole span of the plain run; the plain run is
           then compared with their mean.

Peak memory is the largest sum, over the run's whole process tree (coordinator, workers,
fork server, kernels), of each process's proportional set size (shared pages counted
once), sampled every two seconds (reading PSS costs CPU; the sampler's own CPU time is printed).
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import notebooks  # noqa: E402
from autograder.batch.executor import default_jobs  # noqa: E402
from autograder.core.nbgrader_io import tools_on_path  # noqa: E402

SEED = "20261124"

PERTURB = """

import functools as _bench_functools

import torch as _bench_torch


def _bench_perturb(fn):
    @_bench_functools.wraps(fn)
    def wrong(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, _bench_torch.Tensor):
            return out * 1.5 + 0.1
        if isinstance(out, tuple):
            return tuple(
                o * 1.5 + 0.1 if isinstance(o, _bench_torch.Tensor) else o for o in out
            )
        return out

    return wrong


for _bench_name in {names!r}:
    globals()[_bench_name] = _bench_perturb(globals()[_bench_name])
"""


def released(root: Path) -> list[str]:
    return sorted(
        p.name
        for p in (root / "release").iterdir()
        if (p / f"{p.name}.ipynb").exists() and (root / "source" / p.name).is_dir()
    )


def functions(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]


def submission(assignment: str, i: int) -> tuple[str, nbformat.NotebookNode]:
    """Student i's notebook for `assignment`: correct, wrong or blank."""
    release = notebooks.read(ROOT / "release" / assignment / f"{assignment}.ipynb")
    source = notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")
    answers = notebooks.solutions(source)
    kind = i % 10
    if kind >= 8:
        return "blank", release
    if kind >= 4:
        for j, gid in enumerate(sorted(answers)):
            names = functions(answers[gid])
            if names and (i + j) % 2 == 0:
                answers[gid] = answers[gid] + PERTURB.format(names=names)
        return "wrong", notebooks.fill(release, answers)
    return "correct", notebooks.fill(release, answers)


def build(base: Path, assignments: list[str], students: int) -> dict[str, int]:
    """The course directory at `base` with every submission; counts by kind."""
    base.mkdir(parents=True)
    shutil.copy2(ROOT / "nbgrader_config.py", base / "nbgrader_config.py")
    kinds: dict[str, int] = {}
    for a in assignments:
        shutil.copytree(ROOT / "source" / a, base / "source" / a)
        shutil.copytree(ROOT / "release" / a, base / "release" / a)
        for i in range(students):
            kind, nb = submission(a, i)
            kinds[kind] = kinds.get(kind, 0) + 1
            notebooks.write(nb, base / "submitted" / f"student{i:03d}" / a / f"{a}.ipynb")
    return kinds


def prepare(course: Path, assignments: list[str], env: dict) -> None:
    """Put each assignment in the gradebook (not timed: both runs need it, once per course
    and not per grading run): nbgrader's generate_assignment, then this course's own
    preparation, which the course's command does on its first run (the generated copy it
    restores deleted cells from, and its record of the source it was made from)."""
    for a in assignments:
        subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", a, "--force", "--create"],
            cwd=course,
            env=env,
            check=True,
            capture_output=True,
        )
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from autograder.core.nbgrader_io import ensure_assignment, in_dir, nbgrader_api\n"
        "course = Path(sys.argv[1]).resolve()\n"
        "with in_dir(course):\n"
        "    api = nbgrader_api(course)\n"
        "    for a in sys.argv[2:]:\n"
        "        ensure_assignment(api, course, a)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(course), *assignments],
        cwd=course,
        env=env,
        check=True,
        capture_output=True,
    )


class PeakMemory:
    """Largest total PSS of a process and its descendants, sampled in a thread.

    Reading a process's PSS walks its page tables (/proc/PID/smaps_rollup): on a grading
    run's tree of large forked processes that costs real CPU, taken from the run being
    timed. So samples are two seconds apart, and the sampler's own CPU time is kept
    (`cpu`) to be printed beside the figures.
    """

    def __init__(self, pid: int, interval: float = 2.0):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.peak_processes = 0
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_full_info().pss
            except psutil.Error:
                pass
        if total > self.peak:
            self.peak, self.peak_processes = total, len(procs)

    def _loop(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(self.interval):
            self._sample()
        self.cpu = time.thread_time() - started

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


SAMPLER_CPU = [0.0]


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float, int]:
    """Run `cmd`; return (wall seconds, CPU seconds of the whole tree, peak PSS bytes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=out)
        with PeakMemory(proc.pid) as mem:
            proc.wait()
    SAMPLER_CPU[0] += mem.cpu
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, mem.peak


def scores(course: Path) -> dict[tuple[str, str, str], float | None]:
    """(student, assignment, cell) -> automatic score, from the gradebook."""
    db = sqlite3.connect(str(course / "gradebook.db"))
    try:
        rows = db.execute(
            "SELECT s.student_id, a.name, c.name, g.auto_score"
            " FROM grade g"
            " JOIN submitted_notebook sn ON g.notebook_id = sn.id"
            " JOIN submitted_assignment s ON sn.assignment_id = s.id"
            " JOIN assignment a ON s.assignment_id = a.id"
            " JOIN base_cell c ON g.cell_id = c.id"
        ).fetchall()
    finally:
        db.close()
    return {(s, a, c): v for s, a, c, v in rows}


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--assignments", nargs="*", help="default: every released assignment")
    p.add_argument(
        "--jobs", type=int, default=None, help="workers (default: one more than the cores)"
    )
    p.add_argument(
        "--per-assignment",
        action="store_true",
        help="also time `autograder grade <assignment>` once per assignment",
    )
    p.add_argument(
        "--sandbox-off",
        action="store_true",
        help="also time the course's command with the kernel sandbox off (its cost)",
    )
    p.add_argument(
        "--bracket",
        action="store_true",
        help="also time the course's command just before the plain run, and compare the "
        "plain run with the mean of the runs on either side of it",
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="also time the course's command before the plain run and after each of its "
        "assignments, and compare the plain run with the mean of those runs",
    )
    p.add_argument("--work-dir", type=Path, help="keep the course directories here")
    args = p.parse_args(argv)
    if args.bracket and args.interleave:
        p.error("--interleave already times the course's command before the plain run")

    assignments = args.assignments or released(ROOT)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="grade-class-"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    env = dict(os.environ, AUTOGRADER_SEED=SEED)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])  # alembic, nbgrader
    tools_on_path()
    jobs = args.jobs or default_jobs()
    jobs_arg = ["--jobs", str(args.jobs)] if args.jobs else []
    command = [sys.executable, "-m", "autograder.cli"]

    # (label, folder, [(what, argv, extra env)])
    ours = [("all", [*command, "grade", *jobs_arg, *assignments], {})]
    runs = [
        (
            "plain nbgrader autograde, sequential",
            "plain",
            [(a, [sys.executable, "-m", "nbgrader", "autograde", a], {}) for a in assignments],
        ),
        (f"autograder grade, one command ({jobs} workers)", "course", ours),
    ]
    if args.bracket:
        # The machine's speed drifts over the minutes the plain run takes: time the course's
        # command just before it too, and compare the plain run with the mean of the two.
        runs.insert(
            0, (f"autograder grade, one command, before plain ({jobs} workers)", "before", ours)
        )
    # The course's runs between the plain run's assignments (--interleave); the last one,
    # after the plain run's last assignment, is the "course" run itself.
    between = [f"between-{i}" for i in range(len(assignments))] if args.interleave else []
    for i, folder in enumerate(between):
        where = "before plain" if i == 0 else f"after plain's {assignments[i - 1]}"
        runs.append((f"autograder grade, one command, {where} ({jobs} workers)", folder, ours))
    if args.per_assignment:
        runs.append(
            (
                f"autograder grade <assignment>, one per assignment ({jobs} workers)",
                "per-assignment",
                [(a, [*command, "grade", *jobs_arg, a], {}) for a in assignments],
            )
        )
    if args.sandbox_off:
        runs.append(
            (
                f"autograder grade, one command, sandbox off ({jobs} workers)",
                "no-sandbox",
                [
                    (
                        "all",
                        [*command, "grade", *jobs_arg, *assignments],
                        {"AUTOGRADER_SANDBOX": "0"},
                    )
                ],
            )
        )

    first = work / runs[0][1]
    kinds = build(first, assignments, args.students)
    for _, folder, _ in runs[1:]:
        shutil.copytree(first, work / folder)
    for _, folder, _ in runs:
        prepare(work / folder, assignments, env)

    n = args.students * len(assignments)
    print(
        f"class: {args.students} students x {len(assignments)} assignments = {n} notebooks "
        f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}); "
        f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    # The order steps run in: each run's steps in turn, or with --interleave the course's
    # runs between the plain run's assignments (before the first, after each).
    labels = {folder: label for label, folder, _ in runs}
    schedule = [(folder, step) for _, folder, steps in runs for step in steps]
    if between:
        plain = [(f, step) for f, step in schedule if f == "plain"]
        ours_at = {f: step for f, step in schedule if f in between or f == "course"}
        rest = [(f, s) for f, s in schedule if f not in ours_at and f != "plain"]
        schedule = []
        for i, plain_step in enumerate(plain):
            schedule += [(between[i], ours_at[between[i]]), plain_step]
        schedule += [("course", ours_at["course"])] + rest
    totals: dict[str, list] = {}
    for folder, (what, cmd, extra) in schedule:
        wall, cpu, mem = timed(cmd, work / folder, dict(env, **extra), work / f"{folder}.log")
        t = totals.setdefault(folder, [0.0, 0.0, 0])
        t[0], t[1], t[2] = t[0] + wall, t[1] + cpu, max(t[2], mem)
        print(f"  {labels[folder]}: {what}: {wall:6.1f} s", flush=True)
    results = [(labels[f], f, *totals[f]) for f in dict.fromkeys(f for f, _ in schedule)]

    all_scores = {folder: scores(work / folder) for _, folder, *_ in results}
    keys = set().union(*all_scores.values())
    differ = sorted(k for k in keys if len({s.get(k) for s in all_scores.values()}) > 1)
    course_dir = work / "course"
    feedback = sum(1 for _ in (course_dir / "feedback").glob("*/*/*.html"))
    graded = len({(s, a) for s, a, _ in all_scores["course"]})

    print()
    width = max(len(label) for label, *_ in results)
    for label, _, wall, cpu, peak in results:
        print(f"{label:<{width}} {wall:7.1f} s  (CPU {cpu:7.1f} s, peak memory {mib(peak)})")
    by_folder = {folder: wall for _, folder, wall, _, _ in results}
    plain_wall = by_folder["plain"]
    for label, folder, wall, _, _ in results:
        if folder != "plain":
            print(
                f"speed-up, {label}: {plain_wall / wall:.1f}x"
                f"  ({plain_wall / n:.2f} s vs {wall / n:.2f} s per notebook)"
            )
    if "before" in by_folder:
        mean = (by_folder["before"] + by_folder["course"]) / 2
        print(
            f"speed-up against the mean of the course's runs just before and just after the"
            f" plain run ({mean:.1f} s): {plain_wall / mean:.1f}x"
        )
    if between:
        spread = [by_folder[f] for f in [*between, "course"]]
        mean = sum(spread) / len(spread)
        print(
            f"speed-up against the mean of the course's {len(spread)} runs interleaved with"
            f" the plain run ({mean:.1f} s; {min(spread):.1f} to {max(spread):.1f} s):"
            f" {plain_wall / mean:.1f}x"
        )
    if "no-sandbox" in by_folder:
        cost = by_folder["course"] / by_folder["no-sandbox"] - 1
        print(f"sandbox cost: {100 * cost:+.1f} % wall time (sandbox on vs off, same class)")
    peak = max(r[4] for r in results if r[1] != "plain")
    print(
        f"memory: peak {mib(peak)} for {jobs} workers; budget {jobs} x 1 GiB + coordinator"
        f" -> {'within' if peak <= (jobs + 1) * 2**30 else 'OVER'}"
    )
    print(f"feedback HTML: {feedback} of {graded} graded submissions")
    print(f"memory sampling (every 2 s, beside the runs): {SAMPLER_CPU[0]:.1f} s of CPU in all")
    print(f"machine load at the end: {os.getloadavg()[0]:.1f}")
    if differ:
        print(f"SCORES DIFFER in {len(differ)} cells, e.g.:")
        for k in differ[:10]:
            print(f"  {k}: " + ", ".join(f"{f} {s.get(k)}" for f, s in all_scores.items()))
        return 1
    print(
        f"scores identical: {len(all_scores['plain'])} graded cells in {graded} submissions "
        f"({len(all_scores)} runs)"
    )
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
