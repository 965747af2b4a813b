"""What runs on a Dask worker when grading on a cluster (see :mod:`.distributed`).

:class:`GradingPlugin` is the Dask worker plugin that carries the course's files and the
coordinator's expectations to each worker; on the worker it makes a :class:`GradingSite`,
which checks the worker can grade (:func:`refusal`), builds a private copy of the course
and runs a :class:`~.executor.LocalExecutor` fed through its ``serve`` method, once the
course's preparation made by the coordinator has come (:class:`PreparedCourse`).
:func:`grade_task` is the task the coordinator sends for each submission, with what was
given to it by hand and the course's record of its answers (:func:`hand_state`), so that
:class:`~autograder.core.cells.KeepHandGrades` grades it here as it would in the course.

Kept apart from :mod:`.distributed` (the coordinator's side), so that a local run never
imports Dask.
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
from dataclasses import asdict, replace
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from ..core.outcome import Outcome
from ..core.request import Settings
from .executor import JobInbox, LocalExecutor
from .prepared import GRADEBOOK

log = logging.getLogger("autograder.batch")

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


# What a Dask nanny adds to its worker's environment whatever its config says (see
# distributed.nanny.Nanny: a fixed hash seed, when none was set).
NANNY_HASH_SEED = "6640"


def nanny_environ() -> dict[str, str]:
    """The variables a Dask nanny sets in its worker process's environment by default,
    with the values it gives them (its ``pre-spawn-environ`` config: glibc's heap trimmed
    at 64 KiB, one BLAS thread; a fixed PYTHONHASHSEED)."""
    import dask

    found = {
        str(k): str(v)
        for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}).items()
        if v is not None
    }
    found.setdefault("PYTHONHASHSEED", NANNY_HASH_SEED)
    return found


def drop_nanny_environ(environ) -> list[str]:
    """Remove from `environ` what a Dask nanny put there (:func:`nanny_environ`: those
    variables holding exactly the nanny's values), so that the grading processes started
    here run as local grading's do on this machine; the names removed."""
    dropped = [k for k, v in nanny_environ().items() if environ.get(k) == v]
    for k in dropped:
        del environ[k]
    return dropped


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


def read_tree(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write `files` (relative path -> bytes) under `root`."""
    for rel, data in files.items():
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ValueError(f"refusing to write {rel!r} outside {root}")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """`root` made anew holding only `files`."""
    shutil.rmtree(root, ignore_errors=True)
    write_files(root, files)


# --- what grading keeps of hand grades, carried with each task ----------------------------


def _hand_state_paths(root: Path, assignment: str, student: str) -> tuple[Path, Path]:
    """The submission's records :class:`~autograder.core.cells.KeepHandGrades` reads and
    writes in course `root`: the folder of its answers as last graded (one file a
    notebook), and the hand grades kept when it was removed from the gradebook."""
    from ..core.cells import answers_record
    from ..core.nbgrader_io import STATE_DIR, hand_grades_file

    answers = answers_record(root / STATE_DIR, assignment, student, "-").parent
    return answers, hand_grades_file(root, assignment, student)


def hand_state(root: Path, assignment: str, student: str) -> dict[str, bytes]:
    """Those records (:func:`_hand_state_paths`) by path relative to `root`."""
    answers, kept = _hand_state_paths(Path(root), assignment, student)
    files = {f"{answers.relative_to(root)}/{k}": v for k, v in read_tree(answers).items()}
    if kept.is_file():
        files[str(kept.relative_to(root))] = kept.read_bytes()
    return files


def put_hand_state(root: Path, assignment: str, student: str, files: dict[str, bytes]) -> None:
    """Make the submission's records in course `root` those of `files` (from
    :func:`hand_state`): whatever else they held is removed, anything but them ignored."""
    root = Path(root)
    answers, kept = _hand_state_paths(root, assignment, student)
    shutil.rmtree(answers, ignore_errors=True)
    kept.unlink(missing_ok=True)
    ours = {str(kept.relative_to(root))}
    under = f"{answers.relative_to(root)}/"
    write_files(root, {k: v for k, v in files.items() if k in ours or k.startswith(under)})


def seed_hand_grades(api, assignment: str, student: str, given: dict | None) -> None:
    """Make this copy's gradebook hold the submission as the course's gradebook holds
    what was given to it by hand (`given`, from the coordinator's
    :func:`~.distributed.given_by_hand`: notebook -> grades and comments), or not at all
    when nothing was."""
    from nbgrader.api import MissingEntry

    with api.gradebook as gb:
        with contextlib.suppress(MissingEntry):
            gb.remove_submission(assignment, student)
        if not given:
            return
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
        for name, cells in given.items():
            try:
                nb = gb.find_submission_notebook(name, assignment, student)
            except MissingEntry:
                continue
            for grade in nb.grades:
                if grade.name in cells["grades"]:
                    manual, extra, needs, auto = cells["grades"][grade.name]
                    grade.manual_score, grade.extra_credit = manual, extra
                    grade.needs_manual_grade, grade.auto_score = needs, auto
            for comment in nb.comments:
                if comment.name in cells["comments"]:
                    comment.manual_comment = cells["comments"][comment.name]
        gb.db.commit()


class _Prepared:
    """The course's preparation for each run (plugin name -> files), as it reaches this
    worker process: the plugin that carries it and the one whose site waits for it may
    be set up in either order."""

    def __init__(self):
        self._cond = threading.Condition()
        self._files: dict[str, dict[str, bytes]] = {}

    def put(self, run: str, files: dict[str, bytes]) -> None:
        with self._cond:
            self._files[run] = files
            self._cond.notify_all()

    def drop(self, run: str) -> None:
        with self._cond:
            self._files.pop(run, None)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait(self, run: str, stop: threading.Event) -> dict[str, bytes] | None:
        """The run's files once they are here; None if `stop` is set first."""
        with self._cond:
            while run not in self._files and not stop.is_set():
                self._cond.wait(timeout=1.0)
            return None if stop.is_set() else self._files[run]


PREPARED = _Prepared()


# --- the worker's grading ------------------------------------------------------------------


_RUNNING = ("init", "starting", "running", "paused")  # a Dask worker's Status names


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
        self._stop = threading.Event()
        # How long each step of this worker's preparation took, in seconds (sent to the
        # coordinator with the "ready" message).
        self.phases: dict[str, float] = {}
        self._began = time.monotonic()
        self._first_task: float | None = None
        self._graded_here: set[tuple[str, str]] = set()  # (assignment, student)
        nthreads = getattr(worker, "nthreads", None) or getattr(
            getattr(worker, "state", None), "nthreads", None
        )
        # Submissions taken at once: the worker's threads (one task each). Of those,
        # `jobs` are graded at once (the plugin's word, else all of them); the others wait
        # in the inbox with their files written, so that a grading worker that finishes
        # starts on the next at once, not after a round trip to the scheduler.
        self.slots = max(1, nthreads or 1)
        self.jobs = min(self.slots, max(1, getattr(plugin, "jobs", None) or self.slots))

    # -- telling the coordinator (and the scheduler) what this worker can do
    def _on_loop(self, fn, *args, **kwargs) -> None:
        loop = getattr(self.worker, "loop", None)
        if loop is not None:
            loop.add_callback(fn, *args, **kwargs)

    def say(self, state: str, reason: str = "", **extra) -> None:
        msg = {"run": self.plugin.name, "state": state, "reason": reason, **extra}
        msg["worker"] = getattr(self.worker, "address", "?")
        (log.warning if state == "refused" else log.info)("autograder: %s %s", state, reason)
        self._on_loop(self.worker.log_event, TOPIC, msg)

    def _declare(self, amount: int) -> None:
        self._on_loop(self.worker.set_resources, **{self.plugin.resource: amount})

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Note in `phases` how long the block took."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - started

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
        """Build the course copy, warm up, then grade, in one thread; tasks wait until it
        is warm.

        One thread for all of it, alive as long as the grading processes: they are its
        children, and a child asking to die with its parent (PR_SET_PDEATHSIG) dies when
        the *thread* that started it ends.
        """
        self._pump = threading.Thread(target=self._main, name="autograder-grading", daemon=True)
        self._pump.start()

    def _main(self) -> None:
        try:
            settings = self._build()
        except Exception as exc:
            log.exception("autograder: preparing this worker failed")
            self._declare(0)
            self.refuse(f"preparing to grade failed: {type(exc).__name__}: {exc}")
            return
        if settings is None:  # closed before the course's preparation arrived
            self.ready.set()
            return
        self.phases["ready after"] = time.monotonic() - self._began
        self.ready.set()
        log.info(
            "autograder: prepared in %s",
            ", ".join(f"{k} {v:.2f} s" for k, v in self.phases.items()),
        )
        self.say("ready", f"{self.executor.jobs} grading workers", phases=dict(self.phases))
        self._run(settings)

    def _build(self) -> Settings | None:
        """The course copy and the warm grading workers; None if the run ended first.

        The fork server starts first (importing torch and the grading libraries takes it
        seconds); the rest is done meanwhile: nbgrader's import, and the course's
        preparation the coordinator sends once it has made it (:mod:`.prepared`, carried
        by :class:`PreparedCourse`: nbgrader's generate_assignment never runs here).
        """
        p = self.plugin
        # jsonschema's optional IRI-format checker compiles a grammar on import (~3 s of
        # CPU, taken from the warm-up) for a format no notebook schema uses: kept out of
        # this process before anything here imports nbconvert (as in a grading worker).
        sys.modules.setdefault("rfc3987_syntax", None)
        local = getattr(self.worker, "local_directory", None) or tempfile.gettempdir()
        # The working directory is the process's, shared by every thread: leave it in a
        # folder that outlives each run's copy (a removed one would fail the next run).
        os.chdir(local)
        self.root = root = Path(tempfile.mkdtemp(prefix="autograder-course-", dir=local))
        with self.timed("write files"):
            write_files(root, p.files)
            # This copy's own gradebook, whatever the coordinator's is.
            config = root / "nbgrader_config.py"
            db_url = f"sqlite:///{root / GRADEBOOK}"
            with config.open("a") as fh:
                fh.write(
                    "\n# Grading on a Dask worker: this copy's own gradebook.\n"
                    f"c.CourseDirectory.db_url = {db_url!r}\n"
                )
        settings = replace(p.settings, course_dir=str(root))
        jobs = self.jobs
        self.executor = LocalExecutor(
            jobs,
            log_dir=root / ".autograder" / "logs",
            job_timeout=p.job_timeout,
            learn_from=list(p.assignments),
        )
        # A nanny's worker process (a LocalCluster's, `dask worker` without --no-nanny)
        # has the nanny's settings in its environment; the grading processes are started
        # without them, as local grading's are (a heap trimmed at every 64 KiB freed
        # slows every kernel down).
        dropped = drop_nanny_environ(os.environ)
        if dropped:
            log.info("autograder: grading without the nanny's %s", ", ".join(dropped))
        with self.timed("fork server start"):
            self.executor.start(settings, jobs)
        with self.timed("nbgrader"):
            # (imported only now: about a second the fork server need not wait for)
            from ..core.nbgrader_io import nbgrader_api
            from . import gradebook, speedups

            gradebook.serialize_sqlite()
            # This process opens the copy's gradebook a few times per task, as a local
            # grading worker does: the same speed-ups for it (one engine per database, a
            # known file not set up again; see .speedups), process-wide, as there.
            speedups.install(speedups.GRADEBOOK_PATCHES)
            self.api = nbgrader_api(root)
        with self.timed("waiting for the prepared course"):
            prepared = PREPARED.wait(p.name, self._stop)
        if prepared is None:
            return None
        with self.timed("write prepared course"):
            write_files(root, prepared)
        with self.timed("grading workers ready"):
            if not self.executor.wait_ready():
                raise RuntimeError(
                    "the grading workers did not start: " + "; ".join(self.executor.notes)
                )
        fs = self.executor.forkserver
        if fs is not None and fs.warmup_seconds is not None:
            self.phases["fork server's own warm-up"] = fs.warmup_seconds
        return settings

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
    def grade(
        self,
        assignment: str,
        student: str,
        files: dict[str, bytes],
        given: dict | None = None,
        state: dict[str, bytes] | None = None,
    ) -> dict:
        """Grade one submission (`files`) as the course would: this copy first holds what
        the course's gradebook holds of it given by hand (`given`) and the course's
        records of it (`state`, :func:`hand_state`); the result carries those records as
        grading left them."""
        if self._first_task is None:
            self._first_task = time.monotonic()
            log.info("autograder: first task %.2f s after setup", self._first_task - self._began)
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
        write_tree(parts["submitted"], files)
        put_hand_state(root, assignment, student, state or {})
        # This copy's gradebook holds only submissions graded here: one never graded here
        # and given nothing by hand has nothing to seed or remove.
        if given or (assignment, student) in self._graded_here:
            seed_hand_grades(self.api, assignment, student, given)
        self._graded_here.add((assignment, student))
        box: list = [threading.Event()]
        with self._lock:
            self._waiters[(assignment, student)] = box
        self.inbox.put(assignment, student)
        box[0].wait()
        outcome: Outcome = box[1]
        result = {
            "outcome": outcome.to_json(),
            "worker": getattr(self.worker, "address", ""),
            "given": given or {},
            "state": hand_state(root, assignment, student),
        }
        if outcome.status == "graded":
            result["autograded"] = read_tree(parts["autograded"])
            result["feedback"] = read_tree(parts["feedback"])
            result["gradebook"] = gradebook_record(self.api, root, assignment, student)
        for folder in parts.values():
            shutil.rmtree(folder, ignore_errors=True)
        return result

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        PREPARED.wake()
        # No more tasks, unless the worker itself is closing (it then takes none, and
        # its scheduler may be gone).
        if getattr(getattr(self.worker, "status", None), "name", "running") in _RUNNING:
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


def grade_task(
    plugin_name: str,
    assignment: str,
    student: str,
    files: dict[str, bytes],
    given: dict | None = None,
    state: dict[str, bytes] | None = None,
) -> dict:
    """One submission graded on this Dask worker (the task :class:`DaskExecutor` sends;
    `given` and `state`: see :meth:`GradingSite.grade`)."""
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None or plugin.site is None:
        raise RuntimeError(f"this Dask worker was not prepared for run {plugin_name}")
    return plugin.site.grade(assignment, student, files, given, state)


def gradebook_record(api, root: Path, assignment: str, student: str) -> dict:
    """What nbgrader's autograde wrote to this copy's gradebook for the submission (its
    URL is absolute: no change of directory, which would race the other threads)."""
    from nbgrader.api import Comment, Grade, SubmittedNotebook
    from sqlalchemy.orm import joinedload

    from ..core.nbgrader_io import rows_with_cells

    with api.gradebook as gb:
        sub = gb.find_submission(assignment, student)
        notebooks = (
            gb.db.query(SubmittedNotebook)
            .options(joinedload(SubmittedNotebook.notebook))
            .filter_by(assignment_id=sub.id)
            .all()
        )
        # every grade and comment of the submission with its cell, a query each
        grades: dict = {nb.id: {} for nb in notebooks}
        for g in rows_with_cells(gb, Grade, grades):
            grades[g.notebook_id][g.cell.name] = {
                "auto_score": g.auto_score,
                "needs_manual_grade": bool(g.needs_manual_grade),
                "manual_score": g.manual_score,
                "extra_credit": g.extra_credit,
            }
        comments: dict = {nb.id: {} for nb in notebooks}
        for c in rows_with_cells(gb, Comment, comments):
            comments[c.notebook_id][c.cell.name] = {
                "auto_comment": c.auto_comment,
                "manual_comment": c.manual_comment,
            }
        return {
            "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
            "notebooks": {
                nb.notebook.name: {
                    "late_submission_penalty": nb.late_submission_penalty,
                    "flagged": bool(nb.flagged),
                    "grades": grades[nb.id],
                    "comments": comments[nb.id],
                }
                for nb in notebooks
            },
        }


class GradingPlugin(WorkerPlugin):
    """Prepares a Dask worker to grade one run's submissions (see the module doc)."""

    def __init__(
        self,
        *,
        name: str,
        resource: str,
        settings: Settings,
        files: dict[str, bytes],
        assignments: list[str],
        job_timeout: float | None,
        wanted_env: dict[str, str],
        wanted_sandbox: dict[str, bool],
        sandbox_env: dict[str, str],
        jobs: int | None = None,
    ):
        self.name = name
        self.jobs = jobs  # submissions a worker grades at once (None: its thread count)
        self.resource = resource
        self.settings = settings
        self.files = files
        self.assignments = assignments
        self.job_timeout = job_timeout
        self.wanted_env = wanted_env
        self.wanted_sandbox = wanted_sandbox
        self.sandbox_env = sandbox_env
        self.created = time.time()
        self.site: GradingSite | None = None  # on the worker

    def __getstate__(self):
        state = dict(self.__dict__)
        state["site"] = None
        return state

    async def setup(self, worker):
        # Checked before the plugin counts as registered, so before any task is sent: a
        # worker that cannot grade never declares the run's resource, which every task
        # of the run requires. Building the course copy and warming up take seconds:
        # done in a thread; the worker's tasks wait for it.
        import asyncio

        site = GradingSite(self, worker)
        self.site = site
        # (the coordinator's clock: the same machine's for a LocalCluster)
        site.phases["delivered"] = max(0.0, time.time() - self.created)
        with site.timed("check"):
            problem = await asyncio.to_thread(site.check)
        if problem:
            site.refuse(problem)
            return
        await worker.set_resources(**{self.resource: site.slots})
        site.start()

    def teardown(self, worker):
        if self.site is not None:
            self.site.close()
            self.site = None


class PreparedCourse(WorkerPlugin):
    """Carries the coordinator's preparation of the course (:mod:`.prepared`: the
    gradebook knowing the assignments, the generated files) to each worker of the run
    whose :class:`GradingPlugin` is named `run`."""

    def __init__(self, *, run: str, files: dict[str, bytes]):
        self.run = run
        self.files = files

    def setup(self, worker):
        PREPARED.put(self.run, self.files)

    def teardown(self, worker):
        PREPARED.drop(self.run)
