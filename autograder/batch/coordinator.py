"""Grading a whole class: plan, dispatch to an executor, record every outcome.

The coordinator never executes student code. It prepares the gradebook, sorts out the
submissions that cannot be graded at all (no file, invalid JSON, another assignment's
notebook, ...), skips the ones already graded by an earlier run and unchanged since, hands
the rest to an executor and records each outcome as it arrives. Local grading workers
write the gradebook themselves through nbgrader, one transaction at a time machine-wide
(:mod:`.gradebook`); on a Dask cluster the workers send their results back and this
process alone writes the gradebook (:mod:`.distributed`); the coordinator's own outcome store (:mod:`.store`) is what makes a
re-run skip finished work and a killed run resume.

One entry point, :func:`grade`, for one assignment or several: every submission of the
run goes into one queue, whatever executor runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ..core.nbgrader_io import (
    ensure_assignment,
    forget_submission,
    in_dir,
    load_config,
    nbgrader_api,
    read_scores,
)
from ..core.outcome import Outcome
from ..core.request import GradeRequest, Settings
from ..core.submissions import submission_problem, submitted_students
from . import gradebook, store
from .distributed import DaskExecutor, cluster_setting
from .executor import Executor, LocalExecutor
from .progress import GradingProgress

DEFAULT_CPU_LIMIT = 120.0
# Failures of the grading machinery rather than of the submission: never reused.
RETRY_CODES = {"worker_crashed", "worker_hung", "grader_error", "lost", "no_worker"}


def limits(course_dir: Path, timeout: float | None, wall_timeout: float | None):
    """(cpu, wall) seconds per cell: `timeout` defaults to the course's Execute.timeout,
    measured in CPU time; the wall limit to five times that (at least a minute)."""
    if timeout is None:
        cfg = load_config(course_dir)
        configured = cfg.Execute.get("timeout")
        timeout = float(configured) if configured and configured > 0 else DEFAULT_CPU_LIMIT
    wall = wall_timeout if wall_timeout is not None else max(60.0, 5.0 * timeout)
    return float(timeout), float(wall)


def settings_for(request: GradeRequest) -> Settings:
    """The settings every job of the request's run shares (see :func:`limits`); the
    assignment named is the request's first (each job names its own)."""
    cpu_limit, wall_limit = limits(request.course_dir, request.timeout, request.wall_timeout)
    return Settings(
        course_dir=str(request.course_dir),
        assignment=request.assignments[0],
        feedback=request.feedback,
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


def _roster(course_dir: Path, assignment: str, students) -> list[str]:
    """The students named (each once, in order), else everyone who submitted `assignment`."""
    return list(dict.fromkeys(students or submitted_students(course_dir, assignment)))


def grade(
    request: GradeRequest, *, executor: Executor | None = None, console: Console | None = None
) -> list[Outcome]:
    """Grade every submission the request names; outcomes assignment by assignment, each
    in roster order.

    Several assignments are graded in one run: the fork server and the workers start once
    (and learn from every assignment's notebooks) instead of once per assignment, and the
    submissions of every assignment share one queue (:meth:`.Executor.run_jobs`), so no
    core idles at the end of each assignment. `executor`: where the submissions run
    (default: a :class:`.LocalExecutor` of ``request.jobs`` workers, or a
    :class:`.DaskExecutor` when a cluster is named (see
    :func:`.distributed.cluster_setting`); closed at the end).
    """
    course_dir = request.course_dir
    assignments = list(request.assignments)
    settings = settings_for(request)
    key = _settings_key(settings)
    force = request.force
    rosters = {a: _roster(course_dir, a, request.students) for a in assignments}
    own_executor = executor is None
    if executor is None:
        cells = max(_code_cells(course_dir, a) for a in assignments)
        per_job = cells * (settings.wall_limit + settings.interrupt_grace_wall + 10)
        cluster = cluster_setting(course_dir, request.cluster)
        if cluster:
            executor = DaskExecutor(
                cluster,
                course_dir=course_dir,
                assignments=assignments,
                job_timeout=per_job + 600,
                threads=request.jobs,
                console=console,
            )
        else:
            # logs/<time>-<assignment>/ (…-all/ for several assignments), one folder per run
            name = assignments[0] if len(assignments) == 1 else "all"
            log_dir = store.run_log_dir(course_dir, name)
            executor = LocalExecutor(
                request.jobs, log_dir=log_dir, job_timeout=per_job + 600, learn_from=assignments
            )
    try:
        if any(_likely_work(course_dir, a, rosters[a], key, force) for a in assignments):
            # Warm up (kernels' imports, workers' imports) while the gradebook is prepared
            # and the submissions checked; stopped unused if nothing needs grading.
            executor.start(settings, sum(map(len, rosters.values())))
        outcome_store = store.OutcomeStore.for_course(course_dir)
        try:
            plans = [
                _plan(course_dir, a, rosters[a], key, force, outcome_store, request.feedback)
                for a in assignments
            ]
            _execute(plans, settings, outcome_store, request.progress, console, executor)
        finally:
            outcome_store.close()
    finally:
        if own_executor:
            executor.close()
    return [outcome for plan in plans for outcome in plan.result()]


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
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    todo: list[str] = field(default_factory=list)

    def result(self) -> list[Outcome]:
        for student in self.roster:  # an executor must answer for every student; be sure
            if student not in self.outcomes:
                self.outcomes[student] = Outcome(
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
    api = nbgrader_api(course_dir)
    plan = _Plan(assignment, roster)
    with in_dir(course_dir):
        ensure_assignment(api, course_dir, assignment)
        with api.gradebook as gb:
            in_gradebook = {s.student.id for s in gb.find_assignment(assignment).submissions}
        for student in roster:
            fp = store.fingerprint(course_dir, assignment, student, key)
            plan.fingerprints[student] = fp
            problem = submission_problem(course_dir, assignment, student)
            earlier = None if force else outcome_store.get(assignment, student)
            if problem is not None:
                code, reason = problem
                if student in in_gradebook:
                    forget_submission(api, course_dir, assignment, student)
                outcome = Outcome(student, assignment, "ungradable", reason, code=code)
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


def _reuse(
    api, course_dir: Path, earlier: Outcome, in_gradebook: set[str], feedback: bool
) -> Outcome | None:
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
        fresh = read_scores(api, assignment, student)
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
