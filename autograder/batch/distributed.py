"""Grading on a Dask cluster: :class:`DaskExecutor` and what runs on each Dask worker.

The coordinator (:mod:`.coordinator`) hands :class:`DaskExecutor` its jobs as it would a
:class:`~.executor.LocalExecutor`; the executor sends them to the workers of a Dask
cluster (``tcp://HOST:8786``, or a ``LocalCluster`` it starts for ``local:N``) and yields
each outcome as it comes back. Nothing is shared but Dask's connections:

* A :class:`~.dask_worker.GradingPlugin` (a Dask worker plugin) carries the course's
  ``nbgrader_config.py`` and every graded assignment's ``source/`` files to each worker,
  once per worker, and, on the worker, builds a private copy of the course in the
  worker's local directory and starts a :class:`~.executor.LocalExecutor` there at once:
  the warm fork server and the grading workers start once per Dask worker, and grade
  with the same machinery as a local run (kernel sandbox, trusted judging, CPU-time cell
  limits).
* The course's preparation for grading (the gradebook knowing the assignments' cells,
  the generated student versions) is made once, by the coordinator, for its own
  gradebook; a :class:`~.dask_worker.PreparedCourse` plugin carries a copy of it
  (:mod:`.prepared`: a SQLite gradebook of the assignments' rows, the generated files) to
  each worker while its fork server warms up. No worker runs nbgrader's
  generate_assignment.
* Before that, the worker checks that it can grade as the coordinator would: the same
  versions of Python, the grading libraries and this package's code, and every kernel
  sandbox primitive the coordinator's machine has. A worker that cannot says why (printed
  by the coordinator) and is never given a submission: tasks require a Dask resource that
  only a ready worker declares.
* Each task (:func:`~.dask_worker.grade_task`) carries one submission's files, what the
  course's gradebook holds of it given by hand (:func:`given_by_hand`) and the course's
  records of it that keeping hand grades reads (its answers as last graded, the hand
  grades kept when it was removed from the gradebook); the worker's gradebook and course
  copy hold them before it is graded, so that
  :class:`~autograder.core.cells.KeepHandGrades` decides there as in a local run (a
  cell graded by hand is not marked for grading again while its answer is unchanged;
  kept hand grades are restored) and the feedback shows what was given by hand. It
  returns the outcome, the autograded notebook's and feedback's files, the
  submission's grades and comments as the worker's gradebook recorded them, and those
  records as grading left them.
* The coordinator alone writes the course's gradebook (SQLite or PostgreSQL, whatever
  ``db_url`` says) and its ``autograded/`` and ``feedback/`` folders
  (:func:`record_result`), as each result arrives; the outcome store then records it, so a
  killed run resumes as a local one does.

A Dask worker that dies mid-run has its submissions run again on another worker (Dask
reschedules the task; its result arrives once, and is recorded once). A task whose
workers keep dying is recorded as ungradable (``worker_crashed``), to be retried by the
next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..core.outcome import Outcome
from ..core.request import Settings
from .executor import Executor

log = logging.getLogger("autograder.batch")

ENV_CLUSTER = "AUTOGRADER_CLUSTER"


class ClusterError(RuntimeError):
    """The cluster named cannot be used (bad address, unreachable, no worker can grade)."""


# --- the course's files, carried to each worker once ---------------------------------------


def course_files(course_dir: Path, assignments: Iterable[str]) -> dict[str, bytes]:
    """What a worker grades with, by relative path: nbgrader_config.py, and each
    assignment's source/ files, release/ files and the released versions the course kept
    (``.autograder/released/``: what tampering is judged against)."""
    from ..core.nbgrader_io import STATE_DIR

    files: dict[str, bytes] = {}
    config = course_dir / "nbgrader_config.py"
    if config.exists():
        files["nbgrader_config.py"] = config.read_bytes()
    for assignment in assignments:
        for top in (
            course_dir / "source" / assignment,
            course_dir / "release" / assignment,
            course_dir / STATE_DIR / "released" / assignment,
        ):
            for path in sorted(top.rglob("*")):
                if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                    files[str(path.relative_to(course_dir))] = path.read_bytes()
    return files


# --- the coordinator's side ----------------------------------------------------------------


def given_by_hand(gb, assignments: Iterable[str]) -> dict[tuple[str, str], dict]:
    """(assignment, student) -> what was given by hand to that submission of one of
    `assignments` in gradebook `gb`, by notebook: ``{"grades": {cell: [manual_score,
    extra_credit, needs_manual_grade, auto_score]}, "comments": {cell: manual_comment}}``
    (only the cells given something; the automatic score too, since a cell graded by hand
    is marked for grading again when it changes), read in two queries. A submission
    given nothing is absent."""
    from nbgrader.api import (
        Assignment,
        BaseCell,
        Comment,
        Grade,
        Notebook,
        SubmittedAssignment,
        SubmittedNotebook,
    )

    names = sorted(set(assignments))

    def rows(model, columns, where):
        return (
            gb.db.query(
                Assignment.name, SubmittedAssignment.student_id, Notebook.name, BaseCell.name
            )
            .add_columns(*columns)
            .select_from(model)
            .join(BaseCell, BaseCell.id == model.cell_id)
            .join(SubmittedNotebook, SubmittedNotebook.id == model.notebook_id)
            .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
            .join(SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id)
            .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
            .filter(Assignment.name.in_(names), where)
        )

    given: dict[tuple[str, str], dict] = {}

    def cells(a, s, nb) -> dict:
        return given.setdefault((a, s), {}).setdefault(nb, {"grades": {}, "comments": {}})

    scored = (Grade.manual_score, Grade.extra_credit, Grade.needs_manual_grade, Grade.auto_score)
    for a, s, nb, cell, manual, extra, needs, auto in rows(
        Grade, scored, (Grade.manual_score.isnot(None)) | (Grade.extra_credit.isnot(None))
    ):
        cells(a, s, nb)["grades"][cell] = [manual, extra, bool(needs), auto]
    for a, s, nb, cell, text in rows(
        Comment, (Comment.manual_comment,), Comment.manual_comment.isnot(None)
    ):
        if text:
            cells(a, s, nb)["comments"][cell] = text
    return given


def record_result(api, course_dir: Path, result: dict, gb=None) -> Outcome:
    """Write what a worker sent back into the course: the gradebook, the autograded and
    feedback folders, and the records keeping hand grades reads (the submission's answers
    as graded, hand grades kept: as the worker's grading left them). In the gradebook the
    worker's automatic scores and comments, and its word on which cells need grading by
    hand (:class:`~autograder.core.cells.KeepHandGrades` decided it there, from what the
    task carried: see the module doc); what was given by hand stays, unless the worker
    put back hand grades kept from a removed submission. The outcome's scores are then
    read back from the course's gradebook.

    `gb`: an open Gradebook of the course to write through, kept open by the caller for a
    whole run (its engine then compiles each of nbgrader's statements once, not once per
    result); default: one opened for this result. Each result is committed on its own,
    or rolled back."""
    from ..core.nbgrader_io import forget_submission, in_dir, read_scores
    from .dask_worker import put_hand_state, write_tree

    outcome = Outcome.from_json(result["outcome"])
    student, assignment = outcome.student, outcome.assignment
    if "state" in result:
        put_hand_state(course_dir, assignment, student, result["state"])
    with in_dir(course_dir):
        if outcome.status != "graded":
            forget_submission(api, course_dir, assignment, student)
            return outcome
        with contextlib.ExitStack() as stack:
            if gb is None:
                gb = stack.enter_context(api.gradebook)
            try:
                with _one_transaction(gb):
                    _write_gradebook(gb, assignment, student, result)
                gb.db.commit()
            except BaseException:
                gb.db.rollback()
                raise
            write_tree(course_dir / "autograded" / student / assignment, result["autograded"])
            write_tree(course_dir / "feedback" / student / assignment, result["feedback"])
            fresh = read_scores(api, assignment, student, gb)
            gb.db.commit()  # (no transaction left open between results)
    for name in ("code", "reason", "seconds", "kernel_cpu", "slowest_cell"):
        setattr(fresh, name, getattr(outcome, name))
    return fresh


@contextlib.contextmanager
def _one_transaction(gb):
    """nbgrader's Gradebook methods called in this block flush where they would commit:
    a result is written in one transaction (one commit, not one per method: a disk sync
    on SQLite, a round trip on PostgreSQL), all of it or none, and the rows it made stay
    loaded rather than expired by each commit and read again."""
    db = gb.db
    db.commit = db.flush  # (shadows the session's commit on this object only)
    try:
        yield
    finally:
        del db.commit


def _write_gradebook(gb, assignment: str, student: str, result: dict) -> None:
    """The worker's record of a graded submission into `gb` (uncommitted)."""
    from nbgrader.api import Comment, Grade

    from ..core.nbgrader_io import rows_with_cells

    record = result["gradebook"]
    with warnings.catch_warnings():
        # nbgrader's add_submission builds its rows in a way SQLAlchemy 2 warns about
        # (harmless: the rows are added); the local workers' logs hold the same.
        warnings.filterwarnings("ignore", message=".*not in session.*")
        gb.update_or_create_student(student)
        if record["timestamp"]:
            gb.update_or_create_submission(assignment, student, timestamp=record["timestamp"])
        else:
            gb.update_or_create_submission(assignment, student)
    given = result.get("given") or {}
    for name, data in record["notebooks"].items():
        nb = gb.find_submission_notebook(name, assignment, student)
        nb.late_submission_penalty = data["late_submission_penalty"]
        nb.flagged = data.get("flagged", nb.flagged)
        sent = given.get(name) or {"grades": {}, "comments": {}}
        # the notebook's grades and comments with their cells, a query each
        for grade in rows_with_cells(gb, Grade, [nb.id]):
            got = data["grades"].get(grade.cell.name)
            if got is None:
                continue
            grade.auto_score = got["auto_score"]
            grade.needs_manual_grade = got["needs_manual_grade"]
            by_hand = [got["manual_score"], got["extra_credit"]]
            if by_hand != (sent["grades"].get(grade.cell.name) or [None, None])[:2]:
                grade.manual_score, grade.extra_credit = by_hand  # restored there
        for comment in rows_with_cells(gb, Comment, [nb.id]):
            got = data["comments"].get(comment.cell.name)
            if got is None:
                continue
            comment.auto_comment = got["auto_comment"]
            if (got["manual_comment"] or None) != sent["comments"].get(comment.cell.name):
                comment.manual_comment = got["manual_comment"]  # restored there


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """``local:N`` -> ("local", N); a scheduler's address -> ("address", it)."""
    spec = spec.strip()
    if spec.startswith("local"):
        _, _, n = spec.partition(":")
        try:
            count = int(n) if n else 0
        except ValueError:
            count = -1
        if count < 1:
            raise ClusterError(f"--cluster {spec!r}: write local:N with N workers, e.g. local:2")
        return "local", count
    if "://" not in spec:
        if ":" not in spec:
            raise ClusterError(
                f"--cluster {spec!r}: give a scheduler's address (tcp://HOST:8786) or local:N"
            )
        spec = f"tcp://{spec}"
    return "address", spec


def cluster_setting(course_dir: Path, given: str | None) -> str | None:
    """The cluster to grade on: `given` (the command line), else $AUTOGRADER_CLUSTER, else
    ``c.Autograder.cluster`` in nbgrader_config.py; None: grade on this machine."""
    if given:
        return given
    if os.environ.get(ENV_CLUSTER, "").strip():
        return os.environ[ENV_CLUSTER].strip()
    from ..core.nbgrader_io import load_config

    configured = load_config(course_dir).get("Autograder", {}).get("cluster")
    return str(configured) if configured else None


class DaskExecutor(Executor):
    """Grades on the workers of a Dask cluster (see the module doc).

    `cluster`: a scheduler's address (``tcp://HOST:8786``) or ``local:N`` (a LocalCluster
    of N worker processes on this machine, each grading ``threads`` submissions at once;
    default: its share of the cores, plus one). A Dask worker takes as many submissions
    at once as it has threads and grades ``threads`` of them at once (default: all); the
    others wait there ready, their files written, for the next free grading worker. A
    LocalCluster's workers have twice ``threads`` threads.
    """

    def __init__(
        self,
        cluster: str,
        *,
        course_dir: Path,
        assignments: list[str],
        job_timeout: float | None = None,
        threads: int | None = None,
        console=None,
        ready_timeout: float = 600.0,
        connect_timeout: float = 30.0,
    ):
        try:
            import distributed  # noqa: F401
        except ImportError as exc:  # pragma: no cover
            raise ClusterError(
                "grading on a cluster needs Dask's distributed (pip install 'autograder[cluster]')"
            ) from exc
        self.kind, self.target = parse_cluster(cluster)
        self.course_dir = Path(course_dir)
        self.assignments = list(assignments)
        self.job_timeout = job_timeout
        self.threads = threads
        self._jobs_per_worker = threads  # (local:N: its default, once the cores are known)
        self.console = console
        self.ready_timeout = ready_timeout
        self.connect_timeout = connect_timeout
        self.token = uuid.uuid4().hex[:12]
        self.plugin_name = f"autograder-{self.token}"
        self.prepared_name = f"{self.plugin_name}-prepared"
        self._prepared_sent = False
        self.resource = f"autograder-{self.token}"
        self.client = None
        self._cluster = None
        self._starting: threading.Thread | None = None  # a local:N cluster's start, if begun
        self._starting_failed: list[BaseException] = []
        self.states: dict[str, tuple[str, str]] = {}  # worker -> (state, reason)
        self.graded_by: dict[tuple[str, str], str] = {}  # (assignment, student) -> worker
        self._jobs: dict[str, tuple[str, str]] = {}  # task key -> (assignment, student)
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self.dashboard: str | None = None
        self._topic: str | None = None
        # Seconds each step of the run's start took here (connect, course files, plugin
        # registration, the course's preparation sent), when the first worker said it was
        # ready and the first outcome came (from the start), closing; and each worker's
        # own preparation (worker -> phase -> seconds, see GradingSite.phases).
        self.phases: dict[str, float] = {}
        self.worker_phases: dict[str, dict[str, float]] = {}
        self._started: float | None = None

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _connect(self) -> None:
        import dask
        from distributed import Client, LocalCluster

        # Dask's own INFO lines (workers joining, leaving) would drown the progress bar.
        for name in ("distributed", "distributed.scheduler", "distributed.nanny"):
            if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
                logging.getLogger(name).setLevel(logging.WARNING)
        if self.kind == "local":
            n = int(self.target)
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover
                cores = os.cpu_count() or 1
            self._jobs_per_worker = self.threads or max(1, cores // n) + 1
            # A nanny sets its variables (dask_worker.nanny_environ) in this process's
            # environment before it starts its worker: put back as they were after.
            from .dask_worker import nanny_environ

            before = {k: os.environ.get(k) for k in nanny_environ()}
            # Dask's statistical profiler samples every thread of a worker every 10 ms
            # (the dashboard's profile page), CPU taken from grading on these cores; a
            # cluster started here does without it (the task stream and progress stay).
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                self._cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=2 * self._jobs_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    memory_limit=0,
                    silence_logs=logging.WARNING,
                )
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(self.target, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {self.target}: {exc}"
                ) from exc
        self.dashboard = self.client.dashboard_link
        self._say(f"Dask cluster {self.client.scheduler.address}: dashboard {self.dashboard}")

    def _on_event(self, event) -> None:
        _, msg = event
        if not isinstance(msg, dict) or msg.get("run") != self.plugin_name:
            return
        worker, state, reason = msg.get("worker", "?"), msg.get("state"), msg.get("reason", "")
        with self._lock:
            self.states[worker] = (state, reason)
            if state == "ready" and self._started is not None:
                self.phases.setdefault("first worker ready", time.monotonic() - self._started)
                self.worker_phases[worker] = dict(msg.get("phases") or {})
        if state == "refused":
            note = f"Dask worker {worker} cannot grade, no submissions sent to it: {reason}"
            self.notes.append(note)
            self._say(f"WARNING: {note}")

    def start(self, settings: Settings, expected: int) -> None:
        """Connect and hand the workers the grading plugin (they start warming up).

        A scheduler that cannot be reached raises :class:`ClusterError` here. A
        ``local:N`` cluster is started in the background instead: its processes take a
        second or two to come up, time the run spends preparing the gradebook and
        checking the submissions meanwhile (as local grading's fork server warms up
        meanwhile); :meth:`run_jobs` waits for it.
        """
        if self.client is not None or self._starting is not None:
            return
        if self.kind != "local":
            self._start(settings)
            return
        failed: list[BaseException] = []

        def start_in_background() -> None:
            try:
                self._start(settings)
            except BaseException as exc:  # raised again by _started_up
                failed.append(exc)

        self._starting = threading.Thread(
            target=start_in_background, name="autograder-cluster-start", daemon=True
        )
        self._starting_failed = failed
        self._starting.start()

    def _started_up(self) -> None:
        """Wait for a start begun in the background; raise what it raised."""
        if self._starting is None:
            return
        self._starting.join()
        self._starting = None
        if self._starting_failed:
            exc = self._starting_failed.pop()
            if isinstance(exc, ClusterError):
                raise exc
            raise ClusterError(
                f"starting the Dask cluster {self.kind}:{self.target} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _start(self, settings: Settings) -> None:
        from . import sandbox
        from .dask_worker import SANDBOX_ENV, TOPIC, GradingPlugin, environment, sandbox_primitives

        self._started = began = time.monotonic()
        self._connect()
        self.client.subscribe_topic(TOPIC, self._on_event)
        self._topic = TOPIC
        self.phases["connect"] = (mark := time.monotonic()) - began
        files = course_files(self.course_dir, self.assignments)
        self.phases["course files"] = (now := time.monotonic()) - mark
        mark = now
        limits = sandbox.Limits.from_env()
        plugin = GradingPlugin(
            name=self.plugin_name,
            resource=self.resource,
            settings=settings,
            files=files,
            assignments=self.assignments,
            job_timeout=self.job_timeout,
            wanted_env=environment(),
            wanted_sandbox=sandbox_primitives() if limits.enabled else {},
            sandbox_env={k: v for k, v in os.environ.items() if k.startswith(SANDBOX_ENV)},
            jobs=self._jobs_per_worker,
        )
        self.client.register_plugin(plugin, name=self.plugin_name)
        self.phases["plugin registered"] = time.monotonic() - mark

    def run(self, settings: Settings, students: Iterable[str]) -> Iterator[Outcome]:
        return self.run_jobs(settings, ((settings.assignment, s) for s in students))

    def run_jobs(self, settings: Settings, jobs: Iterable[tuple[str, str]]) -> Iterator[Outcome]:
        from ..core.nbgrader_io import in_dir, nbgrader_api

        jobs = list(jobs)
        if not jobs:
            return
        self.start(settings, len(jobs))
        self._started_up()
        api = nbgrader_api(self.course_dir)
        self._send_preparation(api)
        with in_dir(self.course_dir):
            # One Gradebook for the run's reading and writing (see record_result).
            gb = api.gradebook
        try:
            given = given_by_hand(gb, {assignment for assignment, _ in jobs})
            gb.db.commit()
            yield from self._submit_and_record(api, gb, jobs, given)
        finally:
            gb.close()

    def _submit_and_record(self, api, gb, jobs, given) -> Iterator[Outcome]:
        from distributed import wait

        from .dask_worker import grade_task, hand_state, read_tree

        futures = {}
        for assignment, student in jobs:
            files = read_tree(self.course_dir / "submitted" / student / assignment)
            future = self.client.submit(
                grade_task,
                self.plugin_name,
                assignment,
                student,
                files,
                given.get((assignment, student)),
                hand_state(self.course_dir, assignment, student),
                key=f"grade-{assignment}-{student}-{self.token}",
                resources={self.resource: 1},
                pure=False,
                retries=0,
            )
            futures[future] = self._jobs[future.key] = (assignment, student)
        pending = set(futures)
        waiting_since = time.monotonic()
        while pending:
            try:
                done, pending = wait(pending, timeout=2.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in done:
                assignment, student = futures[future]
                if self._started is not None:
                    self.phases.setdefault("first outcome", time.monotonic() - self._started)
                yield self._finish(api, gb, future, assignment, student)
            if done:
                waiting_since = time.monotonic()
            elif pending:
                reason = self._nobody_can_grade(time.monotonic() - waiting_since)
                if reason:
                    for future in pending:
                        future.cancel()
                        assignment, student = futures[future]
                        yield Outcome(student, assignment, "ungradable", reason, code="no_worker")
                    pending = set()

    def _send_preparation(self, api) -> None:
        """Send the workers the course's preparation (:mod:`.prepared`), once: what they
        wait for, their fork servers warming up meanwhile, before they can grade."""
        from .dask_worker import PreparedCourse
        from .prepared import prepared_files

        if self._prepared_sent:
            return
        mark = time.monotonic()
        if self._started is not None:
            self.phases["jobs arrived"] = mark - self._started
        files = prepared_files(api, self.course_dir, self.assignments)
        self.phases["prepared course"] = (now := time.monotonic()) - mark
        self.client.register_plugin(
            PreparedCourse(run=self.plugin_name, files=files), name=self.prepared_name
        )
        self.phases["prepared course registered"] = time.monotonic() - now
        self._prepared_sent = True

    def job_of(self, key: str) -> tuple[str, str]:
        """The (assignment, student) a task of this run grades."""
        return self._jobs[key]

    def _finish(self, api, gb, future, assignment: str, student: str) -> Outcome:
        try:
            result = future.result()
        except Exception as exc:  # the task failed on every worker it was tried on
            return Outcome(
                student,
                assignment,
                "ungradable",
                f"grading on the cluster failed: {type(exc).__name__}: {exc}",
                code="worker_crashed",
            )
        finally:
            future.release()
        self.graded_by[(assignment, student)] = result.get("worker", "")
        return record_result(api, self.course_dir, result, gb)

    def _nobody_can_grade(self, idle: float) -> str | None:
        """Why no submission can be graded (every worker refused, or none joined within
        `ready_timeout`), or None while some worker can or may yet."""
        workers = set(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        with self._lock:
            states = {w: s for w, s in self.states.items() if w in workers}
        if any(state == "ready" for state, _ in states.values()):
            return None
        if workers and all(states.get(w, ("", ""))[0] == "refused" for w in workers):
            reasons = "; ".join(f"{w}: {r}" for w, (_, r) in states.items())
            return f"no Dask worker can grade ({reasons})"
        if idle > self.ready_timeout:
            return f"no Dask worker became ready to grade within {self.ready_timeout:.0f} s"
        return None

    def close(self) -> None:
        began = time.monotonic()
        with contextlib.suppress(ClusterError):  # a failed start leaves nothing to close
            self._started_up()
        if self.client is not None:
            if self._topic:
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(self._topic)
            # (a cluster started here is closed below: its workers tear the plugins down)
            for name in (self.plugin_name, self.prepared_name) if self._cluster is None else ():
                with contextlib.suppress(Exception):
                    self.client.unregister_worker_plugin(name)
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None
        self.phases.setdefault("close", time.monotonic() - began)
