"""Grading a whole class: plan, dispatch to an executor, record every outcome.

The coordinator never executes student code. It prepares the gradebook, sorts out the
submissions that cannot be graded at all (no file, invalid JSON, another assignment's
notebook, ...), skips the ones already graded by an earlier run and unchanged since, hands
the rest to an executor and records each outcome as it arrives. The grading workers write
the gradebook themselves through nbgrader, one transaction at a time machine-wide
(:mod:`.gradebook`); the coordinator's own outcome store (:mod:`.store`) is what makes a
re-run skip finished work and a killed run resume.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .. import course
from . import gradebook, store
from .executor import Executor, LocalExecutor
from .progress import GradingProgress
from .worker import Settings, forget

DEFAULT_CPU_LIMIT = 120.0
# Failures of the grading machinery rather than of the submission: never reused.
RETRY_CODES = {"worker_crashed", "worker_hung", "grader_error", "lost"}


def limits(course_dir: Path, timeout: float | None, wall_timeout: float | None):
    """(cpu, wall) seconds per cell: `timeout` defaults to the course's Execute.timeout,
    measured in CPU time; the wall limit to five times that (at least a minute)."""
    if timeout is None:
        cfg = course.load_config(course_dir)
        configured = cfg.Execute.get("timeout")
        timeout = float(configured) if configured and configured > 0 else DEFAULT_CPU_LIMIT
    wall = wall_timeout if wall_timeout is not None else max(60.0, 5.0 * timeout)
    return float(timeout), float(wall)


def settings_for(
    *,
    course_dir: Path,
    assignment: str,
    feedback: bool = True,
    timeout: float | None = None,
    wall_timeout: float | None = None,
) -> Settings:
    """The settings every job of a run shares (see :func:`limits`)."""
    cpu_limit, wall_limit = limits(course_dir, timeout, wall_timeout)
    return Settings(
        course_dir=str(Path(course_dir).resolve()),
        assignment=assignment,
        feedback=feedback,
        cpu_limit=cpu_limit,
        wall_limit=wall_limit,
        # Time for an interrupted cell to stop by itself: generous, but short next to a
        # short wall limit.
        interrupt_grace_wall=min(20.0, max(5.0, wall_limit / 2)),
    )


def _code_cells(course_dir: Path, assignment: str) -> int:
    import nbformat

    n = 0
    for path in (course_dir / "source" / assignment).glob("*.ipynb"):
        nb = nbformat.read(str(path), as_version=4)
        n += sum(c.cell_type == "code" for c in nb.cells)
    return max(n, 1)


def _settings_key(settings: Settings) -> str:
    """What, besides the files, an earlier outcome must have been graded with to be reused."""
    return f"feedback={settings.feedback};cpu={settings.cpu_limit:g};wall={settings.wall_limit:g}"


def _roster(course_dir: Path, assignment: str, students: list[str] | None) -> list[str]:
    """The students named (each once, in order), else everyone who submitted `assignment`."""
    return list(dict.fromkeys(students or _submitted(course_dir, assignment)))


def _submitted(course_dir: Path, assignment: str) -> list[str]:
    sub = course_dir / "submitted"
    if not sub.exists():
        return []
    return sorted(p.name for p in sub.iterdir() if (p / assignment).is_dir())


def grade_class(
    *,
    course_dir: Path,
    assignment: str,
    students: list[str] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    wall_timeout: float | None = None,
    feedback: bool = True,
    force: bool = False,
    progress: bool | None = None,
    console: Console | None = None,
    executor: Executor | None = None,
) -> list[course.Outcome]:
    """Grade every submission of `assignment`; one Outcome per student, in roster order.

    `jobs`: parallel workers (default: one more than the cores). `timeout`: CPU seconds a cell may
    use (default: the course's Execute.timeout); `wall_timeout`: wall seconds a cell may
    take. `force`: grade again even what an earlier run graded and has not changed since.
    `progress`: show a progress bar (default: only on a terminal).
    """
    course_dir = Path(course_dir).resolve()
    settings = settings_for(
        course_dir=course_dir,
        assignment=assignment,
        feedback=feedback,
        timeout=timeout,
        wall_timeout=wall_timeout,
    )
    wall_limit = settings.wall_limit
    key = _settings_key(settings)
    roster = _roster(course_dir, assignment, students)
    own_executor = executor is None
    if executor is None:
        log_dir = store.state_dir(course_dir) / "logs" / assignment
        shutil.rmtree(log_dir, ignore_errors=True)
        per_job = _code_cells(course_dir, assignment) * (
            wall_limit + settings.interrupt_grace_wall + 10
        )
        executor = LocalExecutor(jobs, log_dir=log_dir, job_timeout=per_job + 600)
    try:
        if _likely_work(course_dir, assignment, roster, key, force):
            # Warm up (kernels' imports, workers' imports) while the gradebook is prepared
            # and the submissions checked; stopped unused if nothing needs grading.
            executor.start(settings, len(roster))
        return _grade(
            course_dir, assignment, roster, settings, key, force, progress, console, executor
        )
    finally:
        if own_executor:
            executor.close()


def _likely_work(course_dir: Path, assignment: str, roster, key: str, force: bool) -> bool:
    """Whether some submission has no recorded outcome for its current files."""
    if not roster:
        return False
    if force:
        return True
    outcome_store = store.OutcomeStore.for_course(course_dir)
    try:
        for student in roster:
            earlier = outcome_store.get(assignment, student)
            fp = store.fingerprint(course_dir, assignment, student, key)
            if earlier is None or earlier[0] != fp or earlier[1].code in RETRY_CODES:
                return True
        return False
    finally:
        outcome_store.close()


@dataclass
class _Plan:
    """One assignment's run before any submission is executed: the outcomes already known
    (ungradable, unchanged since an earlier run) and the students left to grade."""

    assignment: str
    roster: list[str]
    outcomes: dict[str, course.Outcome] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    todo: list[str] = field(default_factory=list)

    def result(self) -> list[course.Outcome]:
        for student in self.roster:  # an executor must answer for every student; be sure
            if student not in self.outcomes:
                self.outcomes[student] = course.Outcome(
                    student,
                    self.assignment,
                    "ungradable",
                    "no outcome from the executor",
                    code="lost",
                )
        return [self.outcomes[s] for s in self.roster]


def _plan(course_dir, assignment, roster, key, force, outcome_store, feedback) -> _Plan:
    """Prepare the gradebook for `assignment`, record what needs no execution, list the rest."""
    gradebook.serialize_sqlite()
    api = course.nbgrader_api(course_dir)
    plan = _Plan(assignment, roster)
    with course._in_dir(course_dir):
        course._ensure_assignment(api, course_dir, assignment)
        with api.gradebook as gb:
            in_gradebook = {s.student.id for s in gb.find_assignment(assignment).submissions}
        for student in roster:
            fp = store.fingerprint(course_dir, assignment, student, key)
            plan.fingerprints[student] = fp
            problem = course.submission_problem(course_dir, assignment, student)
            earlier = None if force else outcome_store.get(assignment, student)
            if problem is not None:
                code, reason = problem
                if student in in_gradebook:
                    forget(api, course_dir, assignment, student)
                outcome = course.Outcome(student, assignment, "ungradable", reason, code=code)
                outcome.reused = (
                    earlier is not None
                    and earlier[0] == fp
                    and ((earlier[1].code, earlier[1].reason) == (code, reason))
                )
                outcome_store.put(outcome, fp)
                plan.outcomes[student] = outcome
                continue
            if earlier is not None and earlier[0] == fp:
                reused = _reuse(api, course_dir, earlier[1], in_gradebook, feedback)
                if reused is not None:
                    plan.outcomes[student] = reused
                    continue
            plan.todo.append(student)
    return plan


def _execute(plans: list[_Plan], settings, outcome_store, progress, console, executor) -> None:
    """Run every plan's remaining submissions through `executor` in one queue, recording
    each outcome as it arrives."""
    by_name = {plan.assignment: plan for plan in plans}
    jobs = [(plan.assignment, student) for plan in plans for student in plan.todo]
    label = plans[0].assignment if len(plans) == 1 else f"{len(plans)} assignments"
    with GradingProgress(
        label,
        len(jobs),
        reused=sum(len(plan.outcomes) for plan in plans),
        enabled=progress,
        console=console,
    ) as bar:
        for outcome in executor.run_jobs(settings, jobs):
            plan = by_name[outcome.assignment]
            outcome_store.put(outcome, plan.fingerprints[outcome.student])
            plan.outcomes[outcome.student] = outcome
            bar.advance(outcome)


def _grade(course_dir, assignment, roster, settings, key, force, progress, console, executor):
    outcome_store = store.OutcomeStore.for_course(course_dir)
    try:
        plan = _plan(course_dir, assignment, roster, key, force, outcome_store, settings.feedback)
        _execute([plan], settings, outcome_store, progress, console, executor)
    finally:
        outcome_store.close()
    return plan.result()


def grade_assignments(
    *,
    course_dir: Path,
    assignments: list[str],
    students: list[str] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    wall_timeout: float | None = None,
    feedback: bool = True,
    force: bool = False,
    progress: bool | None = None,
    console: Console | None = None,
) -> list[course.Outcome]:
    """Grade several assignments in one run: the fork server and the workers start once
    (and learn from every assignment's notebooks) instead of once per assignment, and the
    submissions of every assignment share one queue. Outcomes come back assignment by
    assignment, each in roster order."""
    course_dir = Path(course_dir).resolve()
    first = settings_for(
        course_dir=course_dir,
        assignment=assignments[0],
        feedback=feedback,
        timeout=timeout,
        wall_timeout=wall_timeout,
    )
    cells = max(_code_cells(course_dir, a) for a in assignments)
    per_job = cells * (first.wall_limit + first.interrupt_grace_wall + 10)
    key = _settings_key(first)
    rosters = {a: _roster(course_dir, a, students) for a in assignments}
    log_dir = store.state_dir(course_dir) / "logs" / "all"
    shutil.rmtree(log_dir, ignore_errors=True)
    with LocalExecutor(
        jobs, log_dir=log_dir, job_timeout=per_job + 600, learn_from=list(assignments)
    ) as executor:
        if any(_likely_work(course_dir, a, rosters[a], key, force) for a in assignments):
            # Warm up while every assignment's gradebook is prepared and its submissions
            # checked (see grade_class).
            executor.start(first, sum(map(len, rosters.values())))
        outcome_store = store.OutcomeStore.for_course(course_dir)
        try:
            plans = [
                _plan(course_dir, a, rosters[a], key, force, outcome_store, feedback)
                for a in assignments
            ]
            # One queue for the whole run: no core idles at the end of each assignment.
            _execute(plans, first, outcome_store, progress, console, executor)
        finally:
            outcome_store.close()
    return [outcome for plan in plans for outcome in plan.result()]


def _reuse(
    api, course_dir: Path, earlier: course.Outcome, in_gradebook: set[str], feedback: bool
) -> course.Outcome | None:
    """The earlier outcome if its results are all still in place, else None."""
    student, assignment = earlier.student, earlier.assignment
    if earlier.code in RETRY_CODES:
        return None
    if earlier.status == "graded":
        autograded = course_dir / "autograded" / student / assignment
        fb = course_dir / "feedback" / student / assignment
        if student not in in_gradebook or not autograded.is_dir():
            return None
        if feedback and not any(fb.glob("*.html")):
            return None
        # The gradebook is the truth (an instructor may have graded by hand since).
        fresh = course._read_scores(api, assignment, student)
        fresh.code, fresh.reason = earlier.code, earlier.reason
        fresh.seconds, fresh.kernel_cpu = earlier.seconds, earlier.kernel_cpu
    else:
        if student in in_gradebook:
            return None
        fresh = earlier
    fresh.reused = True
    if math.isnan(fresh.score):  # pragma: no cover - defensive
        return None
    return fresh
