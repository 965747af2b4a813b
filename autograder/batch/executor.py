"""Where submissions are executed: the executor interface and the local executor.

The coordinator hands an :class:`Executor` the run's
:class:`~autograder.core.request.Settings` and the (assignment, student) jobs to grade,
all in one queue (:meth:`Executor.run_jobs`), and reads outcomes back as they finish, in
any order. It never learns how: :class:`LocalExecutor` runs worker processes on this
machine (one more than the cores) with kernels forked from a warm fork server;
:class:`~.distributed.DaskExecutor` sends them to the workers of a Dask cluster, each of
which runs a :class:`LocalExecutor` of its own (fed through :meth:`LocalExecutor.serve`). An executor that grades one assignment at a
time implements only :meth:`Executor.run`; the default :meth:`Executor.run_jobs` feeds it
the queue assignment by assignment.

An executor must yield exactly one outcome per student it was given, whatever happens to
the worker that graded it (crash, hang): the batch always finishes.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.outcome import Outcome
from ..core.request import Settings
from . import provisioner, sandbox


class Executor(abc.ABC):
    """Runs grading jobs and yields their outcomes as they finish."""

    jobs: int = 1

    def start(self, settings: Settings, expected: int) -> None:  # noqa: B027 - optional hook
        """Begin warming up for about `expected` jobs before they are known (optional)."""

    @abc.abstractmethod
    def run(self, settings: Settings, students: Iterable[str]) -> Iterator[Outcome]:
        """Grade each student's submission; yield one Outcome per student, in any order."""

    def run_jobs(self, settings: Settings, jobs: Iterable[tuple[str, str]]) -> Iterator[Outcome]:
        """Grade (assignment, student) pairs of several assignments sharing `settings`
        (but for the assignment); one Outcome per pair, in any order.

        This default grades one assignment after the other through :meth:`run`; an
        executor that can mix assignments in one queue overrides it, so that no core waits
        for the last submissions of one assignment before the next starts.
        """
        by_assignment: dict[str, list[str]] = {}
        for assignment, student in jobs:
            by_assignment.setdefault(assignment, []).append(student)
        for assignment, students in by_assignment.items():
            yield from self.run(replace(settings, assignment=assignment), students)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release whatever the executor holds (processes, servers)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_jobs() -> int:
    """One worker more than the cores this process may run on.

    A worker and its kernel take turns (the worker waits while the kernel runs a cell, and
    both wait on start-up and messages), so one pair per core leaves cores idle in those
    gaps; one extra pair fills them. Cell limits count CPU time, so sharing the cores
    costs no one any points.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores) + 1


# Starts a worker without running the course package's __init__ (which imports the whole
# checking library eagerly): `autograder` becomes a bare package and a worker imports only
# what it uses. And jsonschema's optional IRI-format checker is left out: importing it
# compiles a grammar (~2 s of CPU) for a format no notebook schema uses.
WORKER_BOOT = f"""
import sys, types
sys.modules["rfc3987_syntax"] = None  # optional to jsonschema; compiles a grammar (~2 s)
package = types.ModuleType("autograder")
package.__path__ = [{str(Path(__file__).resolve().parents[1])!r}]
sys.modules["autograder"] = package
from autograder.batch.worker import main
main(sys.argv[1:])
"""


def quiet_threads(environ) -> dict[str, str]:
    """One intra-op thread per process: the workers (and kernels) already use every core,
    and a process that imported torch with its thread pool running cannot fork."""
    env = dict(environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


# --- fork server process ----------------------------------------------------------------


class ForkServerProcess:
    """The fork server as a child process; `socket` is None if it could not start."""

    def __init__(self, run_dir: Path, log_dir: Path, *, startup_timeout: float = 180.0):
        self.run_dir = run_dir
        self.socket: str | None = str(run_dir / "forkserver.sock")
        self.log = log_dir / "forkserver.log"
        self.kernel_log = log_dir / "kernels.log"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.warmup_seconds: float | None = None
        self.problem: str | None = None
        self.ready: bool | None = None

    def start(self, learn: list[str] | None = None, workers: list[str] | None = None) -> None:
        """Start warming up; `learn`: instructor notebooks whose imports to preload;
        `workers`: ``FD:LOG`` slots of grading workers for the server to start (see
        :func:`~.forkserver.start_worker_template`), the descriptors passed to it."""
        env = quiet_threads(os.environ)
        workers = workers or []
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("forkserver.py")),
                    self.socket,
                    "--kernel-log",
                    str(self.kernel_log),
                    *(["--learn", *learn] if learn is not None else []),
                    *(["--owner", str(os.getpid()), "--workers", *workers] if workers else []),
                ],
                pass_fds=[int(slot.split(":", 1)[0]) for slot in workers],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self.run_dir,
                start_new_session=True,  # a Ctrl-C at the terminal is the coordinator's
            )

    def wait_ready(self) -> bool:
        """Block until warm; False (and `problem` set) if it failed to start."""
        if self.ready is not None:
            return self.ready
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ok = bool(sel.select(timeout=self.startup_timeout))
        line = self.proc.stdout.readline().decode().strip() if ok else ""
        sel.close()
        if line.startswith("ready"):
            with contextlib.suppress(ValueError, IndexError):
                self.warmup_seconds = float(line.split()[1])
            self.ready = True
            return True
        tail = self.log.read_text(errors="replace")[-500:] if self.log.exists() else ""
        self.problem = f"fork server did not start: {line or 'no answer'} {tail}".strip()
        self.stop()
        self.ready = False
        return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Wait until processes that are not our children have exited; SIGKILL any left."""
    sel = selectors.DefaultSelector()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            sel.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
    deadline = time.monotonic() + timeout
    try:
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                sel.unregister(key.fd)
                os.close(key.fd)
        for key in list(sel.get_map().values()):
            with contextlib.suppress(OSError):
                os.kill(key.data, signal.SIGKILL)
            os.close(key.fd)
    finally:
        sel.close()


# --- local executor ---------------------------------------------------------------------


class JobInbox:
    """Jobs handed to a running :meth:`LocalExecutor.serve` from other threads; putting
    one wakes the executor's wait at once."""

    KEY = "inbox"

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._jobs: list[tuple[str, str]] = []
        self._closed = False
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._writer.send(b"!")

    def put(self, assignment: str, student: str) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the inbox is closed")
            self._jobs.append((assignment, student))
        self._wake()

    def close(self) -> None:
        """No more jobs: the executor's serve ends once those taken are done."""
        with self._lock:
            self._closed = True
        self._wake()

    def take(self) -> tuple[list[tuple[str, str]], bool]:
        """The jobs put since the last call, and whether the inbox is closed."""
        with self._lock:
            jobs, self._jobs = self._jobs, []
            return jobs, self._closed

    def release(self) -> None:
        self.reader.close()
        self._writer.close()


@dataclass
class _Worker:
    index: int
    sock: socket.socket
    buf: bytes = b""
    ready: bool = False
    job: tuple[str, str] | None = None  # (assignment, student) being graded
    started: float = 0.0
    pid: int | None = None
    by_forkserver: bool = False  # started by the fork server, not a process of our own


class LocalExecutor(Executor):
    """Worker processes on this machine (see :func:`default_jobs`) fed from a queue of students.

    Kernels are forked from a warm fork server (``fork=True``), so no worker pays the
    torch/matplotlib import; without it, each kernel is an ordinary ``ipykernel`` process.
    A worker that dies or hangs past ``job_timeout`` is replaced; its student is recorded
    as ungradable with the reason. ``kernel_nice`` lowers the kernels' scheduling priority
    below the workers' (0: same). One executor can grade several assignments in turn
    (with the same limits): ``learn_from`` names them, so that the fork server preloads
    what all of their notebooks import.
    """

    def __init__(
        self,
        jobs: int | None = None,
        *,
        fork: bool = True,
        log_dir: Path | None = None,
        job_timeout: float | None = None,
        kernel_nice: int = 0,
        learn_from: list[str] | None = None,
    ):
        self.jobs = max(1, jobs or default_jobs())
        self.fork = fork
        self.job_timeout = job_timeout
        self.kernel_nice = kernel_nice
        self.learn_from = learn_from
        # Sockets and the kernelspec live in a short private temporary directory (a Unix
        # socket path must stay under ~100 bytes); logs where the caller wants them.
        self.run_dir = Path(tempfile.mkdtemp(prefix="ag-"))
        self.log_dir = Path(log_dir) if log_dir else self.run_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._startup_failures = 0
        self.forkserver: ForkServerProcess | None = None
        self.workers: dict[int, _Worker] = {}
        self._procs: list[subprocess.Popen] = []
        self.sel = selectors.DefaultSelector()
        self.notes: list[str] = []
        self._next_index = 0

    # -- lifecycle
    def _learn_notebooks(self, settings: Settings) -> list[str]:
        source = Path(settings.course_dir) / "source"
        return [
            str(p)
            for a in self.learn_from or [settings.assignment]
            for p in sorted((source / a).glob("*.ipynb"))
        ]

    def _settings_for_workers(self, settings: Settings) -> Settings:
        if self.forkserver is None or self.forkserver.socket is None:
            return replace(settings, forkserver=None, kernel_dir=None)
        kernel_dir = self.run_dir / "jupyter"
        provisioner.write_kernelspec(kernel_dir, self.forkserver.socket, nice=self.kernel_nice)
        return replace(settings, forkserver=self.forkserver.socket, kernel_dir=str(kernel_dir))

    def _spawn_workers(self, settings: Settings, n: int, *, learn: list[str] | None = None) -> None:
        """Start `n` workers as one process that forks the others after its imports.

        With `learn` (the notebooks to learn preloads from), that process is forked by the
        fork server, which is started here: it has imported torch and matplotlib for the
        kernels by then. Otherwise it is a process of its own (WORKER_BOOT).
        """
        pairs = [socket.socketpair() for _ in range(n)]
        indexes = list(range(self._next_index, self._next_index + n))
        self._next_index += n
        slots = [
            f"{theirs.fileno()}:{self.log_dir / f'worker-{i}.log'}"
            for i, (_, theirs) in zip(indexes, pairs, strict=True)
        ]
        try:
            if learn is not None:
                assert self.forkserver is not None
                self.forkserver.start(learn=learn, workers=slots)
            else:
                self._procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", WORKER_BOOT]
                        + [arg for slot in slots for arg in ("--slot", slot)],
                        pass_fds=[theirs.fileno() for _, theirs in pairs],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        cwd=settings.course_dir,
                        env=quiet_threads(os.environ),
                        start_new_session=True,
                    )
                )
        finally:
            for _, theirs in pairs:
                theirs.close()
        for index, (mine, _) in zip(indexes, pairs, strict=True):
            mine.sendall(json.dumps(settings.to_json()).encode() + b"\n")
            worker = _Worker(index, mine, by_forkserver=learn is not None)
            self.workers[index] = worker
            self.sel.register(mine, selectors.EVENT_READ, index)

    def _spawn_worker(self, settings: Settings) -> None:
        self._spawn_workers(settings, 1)

    def _retire(self, worker: _Worker, *, kill: bool) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(worker.sock)
        if not kill:
            with contextlib.suppress(OSError):
                worker.sock.sendall(b"null\n")
        worker.sock.close()  # a worker reading its socket exits at end of file
        if kill and worker.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(worker.pid, signal.SIGKILL)
        self.workers.pop(worker.index, None)

    def close(self) -> None:
        by_server = [w.pid for w in self.workers.values() if w.by_forkserver and w.pid]
        for worker in list(self.workers.values()):
            self._retire(worker, kill=worker.job is not None)
        for proc in self._procs:  # each exits once its workers have
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        _wait_gone(by_server, timeout=30)  # (not our children: waited for by pid)
        if self.forkserver is not None:
            self.forkserver.stop()
            self.forkserver = None
        self.sel.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- the run
    def start(self, settings: Settings, expected: int) -> None:
        """Start the fork server, which starts the workers once it has imported torch and
        matplotlib (without a fork server: start the workers)."""
        if self.workers or self.forkserver is not None:
            return
        if self.fork:
            self.forkserver = ForkServerProcess(self.run_dir, self.log_dir)
        self._worker_settings = self._settings_for_workers(settings)
        self._warn_sandbox()
        self._spawn_workers(
            self._worker_settings,
            min(self.jobs, max(1, expected)),
            learn=self._learn_notebooks(settings) if self.fork else None,
        )

    def _warn_sandbox(self) -> None:
        """Say once per run, loudly, which kernel protections this machine lacks."""
        limits = sandbox.Limits.from_env()
        missing = sandbox.available().missing(limits) if self.fork else []
        if not self.fork and limits.enabled:
            missing = ["kernels are not forked: the kernel sandbox is off"]
        for note in missing:
            self.notes.append(f"sandbox: {note}")
            print(f"WARNING: kernel sandbox: {note}", file=sys.stderr, flush=True)

    def wait_ready(self, timeout: float = 300.0) -> bool:
        """Block until the fork server is warm and every worker has said it is ready."""
        deadline = time.monotonic() + timeout
        if self.forkserver is not None and self.forkserver.proc is not None:
            self.forkserver.wait_ready()
        while any(not w.ready for w in self.workers.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self.sel.select(timeout=min(left, 1.0)):
                worker = self.workers.get(key.data)
                if worker is not None and not worker.ready and not self._read_ready(worker):
                    if not worker.by_forkserver:
                        return False  # a worker of our own could not start
                    list(self._lost(worker, self._worker_settings, [], "did not start"))
        return True

    def _read_ready(self, worker: _Worker) -> bool:
        """Read what a starting worker said; False if it is gone."""
        try:
            data = worker.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            return False
        worker.buf += data
        while b"\n" in worker.buf and not worker.ready:
            line, worker.buf = worker.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "ready" in msg:
                worker.ready = True
                worker.pid = int(msg["ready"])
        return True

    def run(self, settings: Settings, students: Iterable[str]) -> Iterator[Outcome]:
        return self.run_jobs(settings, ((settings.assignment, s) for s in students))

    def run_jobs(self, settings: Settings, jobs: Iterable[tuple[str, str]]) -> Iterator[Outcome]:
        """One queue for every job, whatever its assignment: a worker takes the next job as
        soon as it is free."""
        queue = list(jobs)
        if not queue:
            return
        self.start(settings, len(queue))
        worker_settings = self._ready_for(settings)
        pending = len(queue)
        while pending:
            self._dispatch(queue)
            for outcome in self._collect(worker_settings, queue):
                pending -= 1
                yield outcome

    def serve(self, settings: Settings, inbox: JobInbox) -> Iterator[Outcome]:
        """Like :meth:`run_jobs`, for jobs that keep arriving: each is taken from `inbox`
        as soon as it is put there (another thread may put them); ends once the inbox is
        closed and every job taken has its outcome."""
        self.start(settings, self.jobs)
        worker_settings = self._ready_for(settings)
        queue: list[tuple[str, str]] = []
        pending = 0
        self.sel.register(inbox.reader, selectors.EVENT_READ, JobInbox.KEY)
        try:
            while True:
                taken, closed = inbox.take()
                queue += taken
                pending += len(taken)
                if closed and not pending:
                    return
                self._dispatch(queue)
                for outcome in self._collect(worker_settings, queue):
                    pending -= 1
                    yield outcome
        finally:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(inbox.reader)

    def _ready_for(self, settings: Settings) -> Settings:
        """The workers' settings, once the fork server is warm; the run's must match them."""
        if replace(self._worker_settings, assignment=settings.assignment) != replace(
            settings,
            forkserver=self._worker_settings.forkserver,
            kernel_dir=self._worker_settings.kernel_dir,
        ):
            raise ValueError("this executor's workers were started with other settings")
        # No job before the fork server is warm (or known to be absent): a job started
        # earlier would fall back to an ordinary, slow kernel.
        if self.forkserver is not None and self.forkserver.proc is not None:
            if not self.forkserver.wait_ready():
                self.notes.append(self.forkserver.problem or "fork server unavailable")
        return self._worker_settings

    def _dispatch(self, queue: list[tuple[str, str]]) -> None:
        """Hand the next jobs of `queue` to the idle workers."""
        for worker in list(self.workers.values()):
            if worker.ready and worker.job is None and queue:
                worker.job = queue.pop(0)
                worker.started = time.monotonic()
                assignment, student = worker.job
                job = {"student": student, "assignment": assignment}
                worker.sock.sendall(json.dumps(job).encode() + b"\n")

    def _collect(self, worker_settings: Settings, queue: list[tuple[str, str]]):
        """Wait for messages; yield finished outcomes; replace dead or hung workers."""
        events = self.sel.select(timeout=1.0)
        for key, _ in events:
            if key.data == JobInbox.KEY:  # new jobs: taken by the caller's loop
                with contextlib.suppress(OSError):
                    key.fileobj.recv(1 << 16)
                continue
            worker = self.workers.get(key.data)
            if worker is None:
                continue
            try:
                data = worker.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                yield from self._lost(worker, worker_settings, queue, "crashed")
                continue
            worker.buf += data
            while b"\n" in worker.buf:
                line, worker.buf = worker.buf.split(b"\n", 1)
                msg = json.loads(line)
                if "ready" in msg:
                    worker.ready = True
                    worker.pid = int(msg["ready"])
                elif "outcome" in msg:
                    worker.job = None
                    yield Outcome.from_json(msg["outcome"])
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if (
                worker.job is not None
                and self.job_timeout
                and now - worker.started > self.job_timeout
            ):
                yield from self._lost(worker, worker_settings, queue, "hung")

    def _lost(self, worker, worker_settings, queue, how: str):
        job = worker.job
        log = self.log_dir / f"worker-{worker.index}.log"
        self._retire(worker, kill=True)
        if job is not None:
            note = f"the grading worker {how} (log: {log})"
            assignment, student = job
            yield Outcome(student, assignment, "ungradable", note, code=f"worker_{how}")
        # A worker the fork server was to start, gone before it said it was ready: the
        # server failed early (it starts them while warming up). Start one of our own,
        # as without a fork server; that is no failure of the workers.
        unstarted = not worker.ready and worker.by_forkserver
        if unstarted:
            note = "the fork server did not start the grading workers: started directly"
            if note not in self.notes:
                self.notes.append(note)
        elif not worker.ready:
            self._startup_failures += 1
        if self._startup_failures >= 3:
            # Workers cannot even start (broken install?): fail what is left, loudly.
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            note = "grading workers cannot start" + (f": {tail[0][:300]}" if tail else "")
            while queue:
                assignment, student = queue.pop(0)
                yield Outcome(student, assignment, "ungradable", note, code="worker_crashed")
            return
        if queue or unstarted:
            self._spawn_worker(worker_settings)
