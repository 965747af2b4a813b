"""Grading on a Dask cluster: :class:`DaskExecutor` and what runs on each Dask worker.

The coordinator (:mod:`.coordinator`) hands :class:`DaskExecutor` its jobs as it would a
:class:`~.executor.LocalExecutor`; the executor sends them to the workers of a Dask
cluster (``tcp://HOST:8786``, or a ``LocalCluster`` it starts for ``local:N``) and yields
each outcome as it comes back. Nothing is shared but Dask's connections:

* A :class:`~.dask_plugin.GradingPlugin` (a Dask worker plugin) carries the course's
  ``nbgrader_config.py`` and every graded assignment's ``source/`` files to each worker,
  once per worker, and, on the worker, builds a private copy of the course (its own SQLite
  gradebook knowing the assignments) in the worker's local directory and starts a
  :class:`~.executor.LocalExecutor` there: the warm fork server and the grading workers
  start once per Dask worker, and grade with the same machinery as a local run (kernel
  sandbox, trusted judging, CPU-time cell limits).
* Before that, the worker checks that it can grade as the coordinator would: the same
  versions of Python, the grading libraries and this package's code, and every kernel
  sandbox primitive the coordinator's machine has. A worker that cannot says why (printed
  by the coordinator) and is never given a submission: tasks require a Dask resource that
  only a ready worker declares.
* Each task (:func:`grade_task`) carries one submission's files; it returns the outcome,
  the autograded notebook's and feedback's files, and the submission's grades and
  comments as the worker's gradebook recorded them.
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
import hashlib
import importlib.metadata
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from ..core.outcome import Outcome
from ..core.request import Settings
from .executor import Executor, JobInbox, LocalExecutor

log = logging.getLogger("autograder.batch")

ENV_CLUSTER = "AUTOGRADER_CLUSTER"
TOPIC = "autograder"
# Versions a worker must share with the coordinator to grade as it would.
PACKAGES = (
    "torch",
    "numpy",
    "nbgrader",
    "nbconvert",
    "nbclient",
    "nbformat",
    "jupyter_client",
    "ipykernel",
    "matplotlib",
    "distributed",
)
SANDBOX_ENV = "AUTOGRADER_SANDBOX"


class ClusterError(RuntimeError):
    """The cluster named cannot be used (bad address, unreachable, no worker can grade)."""


# --- what a worker must share with the coordinator ----------------------------------------


def _code_hash() -> str:
    """A digest of this package's Python files: the checks and the grading code."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def environment() -> dict[str, str]:
    """What grading here depends on besides the course: Python's and the libraries'
    versions and this package's code."""
    found = {"python": platform.python_version(), "autograder code": _code_hash()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def sandbox_primitives() -> dict[str, bool]:
    from . import sandbox

    return asdict(sandbox.available())


def refusal(wanted_env: dict[str, str], wanted_sandbox: dict[str, bool]) -> str | None:
    """Why this process cannot grade as the coordinator would, or None if it can."""
    from . import sandbox

    here = environment()
    problems = [
        f"{name} {here.get(name, 'absent')} here, {version} on the coordinator"
        for name, version in wanted_env.items()
        if here.get(name) != version
    ]
    have = sandbox.available()
    lacking = [name for name, on in wanted_sandbox.items() if on and not getattr(have, name)]
    if lacking:
        words = have.missing(sandbox.Limits.from_env()) or lacking
        problems.append("kernel sandbox incomplete: " + "; ".join(words))
    return "; ".join(problems) or None


# --- the course's files, carried to each worker once ---------------------------------------


def course_files(course_dir: Path, assignments: Iterable[str]) -> dict[str, bytes]:
    """nbgrader_config.py and the assignments' source/ files, by relative path."""
    files: dict[str, bytes] = {}
    config = course_dir / "nbgrader_config.py"
    if config.exists():
        files["nbgrader_config.py"] = config.read_bytes()
    for assignment in assignments:
        top = course_dir / "source" / assignment
        for path in sorted(top.rglob("*")):
            if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                files[str(path.relative_to(course_dir))] = path.read_bytes()
    return files


def _tree(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for rel, data in files.items():
        path = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ValueError(f"refusing to write {rel!r} outside {root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# --- the worker side ------------------------------------------------------------------------


class GradingSite:
    """One Dask worker's grading: a private course copy and a LocalExecutor."""

    def __init__(self, plugin, worker):
        self.plugin = plugin
        self.worker = worker
        self.root: Path | None = None
        self.problem: str | None = None
        self.ready = threading.Event()
        self.executor: LocalExecutor | None = None
        self.inbox = JobInbox()
        self._waiters: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()
        self._pump: threading.Thread | None = None
        self._closed = False
        nthreads = getattr(worker, "nthreads", None) or getattr(
            getattr(worker, "state", None), "nthreads", None
        )
        self.jobs = max(1, nthreads or 1)  # submissions graded at once: the worker's threads

    # -- telling the coordinator (and the scheduler) what this worker can do
    def _on_loop(self, fn, *args, **kwargs) -> None:
        loop = getattr(self.worker, "loop", None)
        if loop is not None:
            loop.add_callback(fn, *args, **kwargs)

    def say(self, state: str, reason: str = "") -> None:
        msg = {"run": self.plugin.name, "state": state, "reason": reason}
        msg["worker"] = getattr(self.worker, "address", "?")
        (log.warning if state == "refused" else log.info)("autograder: %s %s", state, reason)
        self._on_loop(self.worker.log_event, TOPIC, msg)

    def _declare(self, amount: int) -> None:
        self._on_loop(self.worker.set_resources, **{self.plugin.resource: amount})

    def check(self) -> str | None:
        """Why this worker cannot grade as the coordinator would (None: it can). The
        coordinator's sandbox settings become this worker's first."""
        p = self.plugin
        os.environ.update(p.sandbox_env)
        for name in [k for k in os.environ if k.startswith(SANDBOX_ENV)]:
            if name not in p.sandbox_env:
                del os.environ[name]
        return refusal(p.wanted_env, p.wanted_sandbox)

    def refuse(self, problem: str) -> None:
        self.problem = problem
        self.ready.set()
        self.say("refused", problem)

    def start(self) -> None:
        """Build the course copy and warm up, in a thread; tasks wait until it is done."""
        threading.Thread(target=self._prepare, name="autograder-prepare", daemon=True).start()

    def _prepare(self) -> None:
        try:
            self._build()
        except Exception as exc:
            log.exception("autograder: preparing this worker failed")
            self._declare(0)
            self.refuse(f"preparing to grade failed: {type(exc).__name__}: {exc}")
            return
        self.ready.set()
        self.say("ready", f"{self.executor.jobs} grading workers")

    def _build(self) -> None:
        from ..core.nbgrader_io import ensure_assignment, in_dir, nbgrader_api
        from . import gradebook

        p = self.plugin
        local = getattr(self.worker, "local_directory", None) or tempfile.gettempdir()
        self.root = root = Path(tempfile.mkdtemp(prefix="autograder-course-", dir=local))
        for rel, data in p.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        # This copy's own gradebook, whatever the coordinator's is.
        config = root / "nbgrader_config.py"
        db_url = f"sqlite:///{root / 'gradebook.db'}"
        with config.open("a") as fh:
            fh.write(
                "\n# Grading on a Dask worker: this copy's own gradebook.\n"
                f"c.CourseDirectory.db_url = {db_url!r}\n"
            )
        gradebook.serialize_sqlite()
        self.api = nbgrader_api(root)
        with in_dir(root):
            for assignment in p.assignments:
                ensure_assignment(self.api, root, assignment)
        settings = replace(p.settings, course_dir=str(root))
        jobs = self.jobs
        self.executor = LocalExecutor(
            jobs,
            log_dir=root / ".autograder" / "logs",
            job_timeout=p.job_timeout,
            learn_from=list(p.assignments),
        )
        self.executor.start(settings, jobs)
        if not self.executor.wait_ready():
            raise RuntimeError(
                "the grading workers did not start: " + "; ".join(self.executor.notes)
            )
        self._pump = threading.Thread(
            target=self._run, args=(settings,), name="autograder-pump", daemon=True
        )
        self._pump.start()

    def _run(self, settings: Settings) -> None:
        try:
            for outcome in self.executor.serve(settings, self.inbox):
                self._deliver(outcome)
        except Exception as exc:
            log.exception("autograder: the grading workers failed")
            self.problem = f"the grading workers failed: {type(exc).__name__}: {exc}"
            with self._lock:
                waiting = list(self._waiters)
            for assignment, student in waiting:
                self._deliver(
                    Outcome(student, assignment, "ungradable", self.problem, code="grader_error")
                )

    def _deliver(self, outcome: Outcome) -> None:
        with self._lock:
            box = self._waiters.pop((outcome.assignment, outcome.student), None)
        if box is not None:
            box.append(outcome)
            box[0].set()

    # -- one task
    def grade(self, assignment: str, student: str, files: dict[str, bytes]) -> dict:
        self.ready.wait()
        if self.problem or self.root is None or self._closed:
            raise RuntimeError(f"this worker cannot grade: {self.problem or 'closed'}")
        root = self.root
        parts = {
            top: root / top / student / assignment
            for top in ("submitted", "autograded", "feedback")
        }
        for folder in parts.values():
            shutil.rmtree(folder, ignore_errors=True)
        _write_tree(parts["submitted"], files)
        box: list = [threading.Event()]
        with self._lock:
            self._waiters[(assignment, student)] = box
        self.inbox.put(assignment, student)
        box[0].wait()
        outcome: Outcome = box[1]
        result = {"outcome": outcome.to_json(), "worker": getattr(self.worker, "address", "")}
        if outcome.status == "graded":
            result["autograded"] = _tree(parts["autograded"])
            result["feedback"] = _tree(parts["feedback"])
            result["gradebook"] = _gradebook_record(self.api, root, assignment, student)
        for folder in parts.values():
            shutil.rmtree(folder, ignore_errors=True)
        return result

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._declare(0)
        self.inbox.close()
        if self._pump is not None:
            self._pump.join(timeout=60)
        if self.executor is not None:
            self.executor.close()
        self.inbox.release()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def grade_task(plugin_name: str, assignment: str, student: str, files: dict[str, bytes]) -> dict:
    """One submission graded on this Dask worker (the task :class:`DaskExecutor` sends)."""
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None or plugin.site is None:
        raise RuntimeError(f"this Dask worker was not prepared for run {plugin_name}")
    return plugin.site.grade(assignment, student, files)


def _gradebook_record(api, root: Path, assignment: str, student: str) -> dict:
    """What nbgrader's autograde wrote to this copy's gradebook for the submission."""
    from ..core.nbgrader_io import in_dir

    with in_dir(root), api.gradebook as gb:
        sub = gb.find_submission(assignment, student)
        return {
            "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
            "notebooks": {
                nb.name: {
                    "late_submission_penalty": nb.late_submission_penalty,
                    "grades": {g.name: g.auto_score for g in nb.grades},
                    "comments": {c.name: c.auto_comment for c in nb.comments},
                }
                for nb in sub.notebooks
            },
        }


# --- the coordinator's side ----------------------------------------------------------------


def record_result(api, course_dir: Path, result: dict) -> Outcome:
    """Write what a worker sent back into the course: the gradebook (as nbgrader's
    SaveAutoGrades and AssignLatePenalties would: a grade given by hand is kept, and
    flagged for review), the autograded and feedback folders. The outcome's scores are
    then read back from the course's gradebook."""
    from ..core.nbgrader_io import forget_submission, in_dir, read_scores

    outcome = Outcome.from_json(result["outcome"])
    student, assignment = outcome.student, outcome.assignment
    with in_dir(course_dir):
        if outcome.status != "graded":
            forget_submission(api, course_dir, assignment, student)
            return outcome
        record = result["gradebook"]
        with api.gradebook as gb:
            gb.update_or_create_student(student)
            if record["timestamp"]:
                gb.update_or_create_submission(assignment, student, timestamp=record["timestamp"])
            else:
                gb.update_or_create_submission(assignment, student)
            for name, data in record["notebooks"].items():
                nb = gb.find_submission_notebook(name, assignment, student)
                nb.late_submission_penalty = data["late_submission_penalty"]
                for grade in nb.grades:
                    if grade.name in data["grades"]:
                        grade.auto_score = data["grades"][grade.name]
                        grade.needs_manual_grade = (
                            grade.manual_score is not None or grade.auto_score is None
                        )
                for comment in nb.comments:
                    if comment.name in data["comments"]:
                        comment.auto_comment = data["comments"][comment.name]
            gb.db.commit()
        _write_tree(course_dir / "autograded" / student / assignment, result["autograded"])
        _write_tree(course_dir / "feedback" / student / assignment, result["feedback"])
        fresh = read_scores(api, assignment, student)
    for name in ("code", "reason", "seconds", "kernel_cpu", "slowest_cell"):
        setattr(fresh, name, getattr(outcome, name))
    return fresh


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
    default: its share of the cores, plus one). The Dask worker's thread count is the
    number of submissions it grades at once.
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
        self.console = console
        self.ready_timeout = ready_timeout
        self.token = uuid.uuid4().hex[:12]
        self.plugin_name = f"autograder-{self.token}"
        self.resource = f"autograder-{self.token}"
        self.client = None
        self._cluster = None
        self.states: dict[str, tuple[str, str]] = {}  # worker -> (state, reason)
        self.graded_by: dict[tuple[str, str], str] = {}  # (assignment, student) -> worker
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self.dashboard: str | None = None

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _connect(self) -> None:
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
            threads = self.threads or max(1, cores // n) + 1
            self._cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=threads,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit=0,
                silence_logs=logging.WARNING,
            )
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(self.target, timeout=30)
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
        if state == "refused":
            note = f"Dask worker {worker} cannot grade, no submissions sent to it: {reason}"
            self.notes.append(note)
            self._say(f"WARNING: {note}")

    def start(self, settings: Settings, expected: int) -> None:
        if self.client is not None:
            return
        from . import sandbox
        from .dask_plugin import GradingPlugin

        self._connect()
        self.client.subscribe_topic(TOPIC, self._on_event)
        limits = sandbox.Limits.from_env()
        plugin = GradingPlugin(
            name=self.plugin_name,
            resource=self.resource,
            settings=settings,
            files=course_files(self.course_dir, self.assignments),
            assignments=self.assignments,
            job_timeout=self.job_timeout,
            wanted_env=environment(),
            wanted_sandbox=sandbox_primitives() if limits.enabled else {},
            sandbox_env={k: v for k, v in os.environ.items() if k.startswith(SANDBOX_ENV)},
        )
        self.client.register_plugin(plugin, name=self.plugin_name)

    def run(self, settings: Settings, students: Iterable[str]) -> Iterator[Outcome]:
        return self.run_jobs(settings, ((settings.assignment, s) for s in students))

    def run_jobs(self, settings: Settings, jobs: Iterable[tuple[str, str]]) -> Iterator[Outcome]:
        from distributed import wait

        from ..core.nbgrader_io import nbgrader_api

        jobs = list(jobs)
        if not jobs:
            return
        self.start(settings, len(jobs))
        api = nbgrader_api(self.course_dir)
        futures = {}
        for assignment, student in jobs:
            files = _tree(self.course_dir / "submitted" / student / assignment)
            future = self.client.submit(
                grade_task,
                self.plugin_name,
                assignment,
                student,
                files,
                key=f"grade-{assignment}-{student}-{self.token}",
                resources={self.resource: 1},
                pure=False,
                retries=0,
            )
            futures[future] = (assignment, student)
        pending = set(futures)
        waiting_since = time.monotonic()
        while pending:
            try:
                done, pending = wait(pending, timeout=2.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in done:
                assignment, student = futures[future]
                yield self._finish(api, future, assignment, student)
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

    def _finish(self, api, future, assignment: str, student: str) -> Outcome:
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
        return record_result(api, self.course_dir, result)

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
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(TOPIC)
            with contextlib.suppress(Exception):
                self.client.unregister_worker_plugin(self.plugin_name)
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None
