"""A grading worker: nbgrader's own autograde and feedback, one submission at a time.

An executor starts workers (:data:`~.executor.WORKER_BOOT`, ``--slot FD:LOG`` per worker) and talks to each
over a socket in JSON lines: first the :class:`Settings`, then one
``{"student": ..., "assignment": ...}`` per submission, answered by
``{"student": ..., "outcome": {...}}``. Everything a worker needs is
in the settings and the course directory, so workers can run wherever that directory is
visible. The grading itself is :meth:`Grader.grade`: nbgrader's Autograde converter with its
default preprocessors, except that Execute is :class:`~.execution.WatchedExecute` (CPU-time
cell limits) and kernels come from the fork server when there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..core.failures import classify, code_for, describe
from ..core.nbgrader_io import forget_submission, in_dir, load_config, read_scores, tools_on_path
from ..core.outcome import Outcome
from ..core.request import Settings
from . import audit, gradebook, processes, provisioner, redact, sandbox, stall


class Grader:
    """Grades submissions of one assignment in this process (see the module doc)."""

    def __init__(self, settings: Settings):
        from . import execution, speedups, tamper

        self._execution, self._tamper = execution, tamper
        self.settings = settings
        self.course_dir = Path(settings.course_dir)
        tools_on_path()
        gradebook.serialize_sqlite()
        speedups.install()
        os.environ["OMP_NUM_THREADS"] = str(settings.kernel_threads)
        os.environ["MKL_NUM_THREADS"] = str(settings.kernel_threads)
        if settings.forkserver and settings.kernel_dir:
            os.environ[provisioner.SOCKET_ENV] = settings.forkserver
            paths = [settings.kernel_dir, *filter(None, [os.environ.get("JUPYTER_PATH")])]
            os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
            provisioner.register_entry_point()
        # The kernel sandbox needs forked kernels (it is applied in the fork server's child).
        limits = sandbox.Limits.from_env()
        self.jail = None
        # Evidence of reads outside the kernel's directory (a hook in the forked kernel).
        self.audit = None
        if settings.forkserver and settings.kernel_dir:
            package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            self.audit = audit.Watch(extra_allowed=[package])
        if settings.forkserver and settings.kernel_dir and limits.enabled:
            self.jail = sandbox.Jail(limits, settings.course_dir)
            if self.jail.missing:
                logging.getLogger("autograder.batch").warning(
                    "KERNEL SANDBOX INCOMPLETE: %s", "; ".join(self.jail.missing)
                )
        self._stall_limit = stall.limit_from_env()
        self.api = self._api()
        # Lines of every assignment's solutions and hidden tests, kept out of the feedback.
        self.secrets = redact.Secrets(self.course_dir)

    def _api(self):
        from nbgrader.apps import NbGraderAPI
        from nbgrader.converters import Autograde
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.preprocessors import Execute

        from . import execution

        s = self.settings
        cfg = load_config(self.course_dir)
        # nbgrader's pipeline as configured, with Execute swapped for the watched one.
        pipeline = cfg.Autograde.get("autograde_preprocessors") or list(
            Autograde.class_traits()["autograde_preprocessors"].default()
        )
        cfg.Autograde.autograde_preprocessors = [
            execution.WatchedExecute if p in (Execute, "nbgrader.preprocessors.Execute") else p
            for p in pipeline
        ]
        cfg.WatchedExecute.cpu_limit = float(s.cpu_limit)
        cfg.WatchedExecute.wall_limit = float(s.wall_limit)
        cfg.WatchedExecute.stall_limit = self._stall_limit
        cfg.WatchedExecute.interrupt_grace_cpu = float(s.interrupt_grace_cpu)
        cfg.WatchedExecute.interrupt_grace_wall = float(s.interrupt_grace_wall)
        cfg.WatchedExecute.timeout = s.nbclient_timeout
        cfg.WatchedExecute.interrupt_on_timeout = True
        # Waiting for a kernel's last messages is not the student's time: make it load-proof.
        cfg.WatchedExecute.iopub_timeout = 120
        cfg.WatchedExecute.startup_timeout = max(120, int(cfg.Execute.get("startup_timeout", 0)))
        cfg.WatchedExecute.shutdown_kernel = "immediate"  # the kernel's state is thrown away
        if s.forkserver and s.kernel_dir:
            cfg.WatchedExecute.kernel_name = provisioner.KERNEL_NAME
            cfg.WatchedExecute.extra_arguments = ["--HistoryManager.hist_file=:memory:"]
        # the feedback pages' exporter: speedups' exporter, with the tamper banner
        cfg.GenerateFeedback.exporter_class = self._tamper.FeedbackExporter
        # nbconvert validates the whole notebook after every preprocessor of a pass (five
        # per pass, ~4 ms each); once after the pass's last one is enough here, since a
        # notebook still invalid then fails the same way.
        cfg.Exporter.optimistic_validation = True
        coursedir = CourseDirectory(config=cfg)
        return NbGraderAPI(coursedir=coursedir, config=cfg)

    def grade(self, student: str, assignment: str | None = None) -> Outcome:
        """Grade `student`'s submission of `assignment` (default: the settings')."""
        started = time.monotonic()
        with in_dir(self.course_dir):
            outcome = self._grade(student, assignment or self.settings.assignment)
        outcome.seconds = round(time.monotonic() - started, 3)
        return outcome

    def _grade(self, student: str, a: str) -> Outcome:
        submitted = self.course_dir / "submitted" / student / a
        box = self.jail.start(str(submitted)) if self.jail else None
        spy = self.audit.start(box and box["workdir"]) if self.audit else None
        if spy is not None and box and box.get("view"):
            spy["allow"] = [*spy["allow"], "/tmp"]  # the kernel's own, private /tmp
            # ... but the course and the checkout stay outside wherever they lie, under
            # /tmp too (only what is allowed inside them, the package and the venv, is not)
            spy["deny"] = [os.path.realpath(self.course_dir), *_checkout()]
        context = self._execution.SubmissionContext(sandbox=box, audit=spy)
        # Handed to this submission's Execute preprocessors (and from them to the kernel
        # provisioner) through the API's config: see SubmissionContext.
        self.api.config.WatchedExecute.submission = context
        try:
            result = self.api.autograde(a, student, force=True, create=True)
        finally:
            self.api.config.WatchedExecute.submission = None
            runs = context.runs
            status = next((r.exit_status for r in runs if r.died_in), None)
            limits_hit = self.jail.finish(status) if self.jail else []
            evidence = self.jail.evidence if self.jail else ""
            reads = self.audit.finish() if self.audit else []
        # Connections the kernel tried (refused: it has no network) are not reads.
        tried = [r.split(" ", 1)[1] for r in reads if r.startswith(audit.NETWORK_EVENT + " ")]
        reads = [r for r in reads if not r.startswith(audit.NETWORK_EVENT + " ")]
        refused = ""
        if tried and self.jail is not None and self.jail.offline:
            refused = f"network refused: the kernel has none, and tried {', '.join(tried[:3])}"
        kernel_cpu = round(sum(r.cpu for r in runs), 3)
        slowest = max((r.slowest_cell for r in runs), default=0.0)
        if not result.get("success"):
            code, reason = classify(
                result,
                runs,
                self.settings,
                limits=limits_hit,
                evidence=evidence,
                stall_limit=self._stall_limit,
            )
            if refused:
                reason = f"{reason}; {refused}"
            forget_submission(self.api, self.course_dir, a, student)
            return Outcome(
                student,
                a,
                "ungradable",
                reason,
                code=code,
                kernel_cpu=kernel_cpu,
                slowest_cell=slowest,
            )
        outcome = read_scores(self.api, a, student)
        outcome.kernel_cpu = kernel_cpu
        outcome.slowest_cell = slowest
        stopped = [e for r in runs for e in r.events if e.action == "interrupted"]
        if stopped:
            outcome.code = code_for(stopped)
            word = "stalled" if outcome.code == "stalled" else "timed out"
            outcome.reason = f"{word}: " + "; ".join(
                describe(e, self.settings, self._stall_limit) for e in stopped
            )
            outcome.reason += " (interrupted; the other cells were graded)"
        if limits_hit:
            note = "; ".join(limits_hit)
            outcome.code = outcome.code or "limit_exceeded"
            outcome.reason = f"{outcome.reason}; {note}" if outcome.reason else note
        flags = self._tamper.describe(self.course_dir, a, student, reads=reads)
        leaked = redact.describe(redact.scrub(self.course_dir, self.secrets, a, student))
        if leaked:
            flags = f"{flags}; {leaked}" if flags else f"tampered: {leaked}"
        self._tamper.mark_flagged(self.api, a, student, flags)  # formgrader's "Flagged?"
        added = self._tamper.notes(self.course_dir, a, student)  # questions newer than it
        if added:
            outcome.reason = f"{outcome.reason}; {added}" if outcome.reason else added
        if flags:
            outcome.code = outcome.code or "tampered"
            outcome.reason = f"{outcome.reason}; {flags}" if outcome.reason else flags
        if refused:
            outcome.code = outcome.code or "network_refused"
            outcome.reason = f"{outcome.reason}; {refused}" if outcome.reason else refused
        if self.settings.feedback:
            self._tamper.flag_feedback(self.api.config, flags)  # the pages' banner, if any
            fb = self.api.generate_feedback(a, student, force=True)
            if not fb.get("success"):
                outcome.code = outcome.code or "feedback_failed"
                note = "feedback failed: " + classify(fb)[1]
                outcome.reason = f"{outcome.reason}; {note}" if outcome.reason else note
        return outcome


# --- process main ----------------------------------------------------------------------


def _serve(sock: socket.socket) -> None:
    rfile = sock.makefile("rb")

    def send(msg: dict) -> None:
        sock.sendall(json.dumps(msg).encode() + b"\n")

    log = logging.getLogger("autograder.batch")
    settings = Settings.from_json(json.loads(rfile.readline()))
    os.chdir(settings.course_dir)  # (already there unless the fork server started us)
    grader = Grader(settings)
    send({"ready": os.getpid()})
    for line in rfile:
        job = json.loads(line)
        if job is None:
            break
        student = job["student"]
        assignment = job.get("assignment") or settings.assignment
        cpu = time.process_time()
        try:
            outcome = grader.grade(student, assignment)
        except Exception as exc:  # the batch goes on; the failure is this student's outcome
            log.exception("grading %s failed", student)
            outcome = Outcome(
                student,
                assignment,
                "ungradable",
                f"grading failed: {type(exc).__name__}: {exc}",
                code="grader_error",
            )
        send({"student": student, "outcome": outcome.to_json()})
        log.info(
            "%s/%s: %s in %.2f s (worker CPU %.2f s, kernel CPU %.2f s)",
            student,
            assignment,
            outcome.status,
            outcome.seconds,
            time.process_time() - cpu,
            outcome.kernel_cpu,
        )
    if grader.jail is not None:
        grader.jail.close()
    if grader.audit is not None:
        grader.audit.close()
    t = os.times()
    log.info(
        "worker %d done: %.2f s CPU (user %.2f, system %.2f)",
        os.getpid(),
        t.user + t.system,
        t.user,
        t.system,
    )


# Imported once, before a worker process forks its siblings (see `main`).
HEAVY = (
    "nbgrader.apps",
    "nbgrader.converters",
    "nbgrader.preprocessors",
    "nbconvert.exporters.html",
    "nbclient",
    "jupyter_client.manager",
    "jupyter_client.asynchronous",
    "sqlalchemy.dialects.sqlite",
    "bs4",
    "psutil",
    "sqlite3",
    # the trusted side of grading: the checks re-run here, with torch's references
    "torch",
    "matplotlib.pyplot",
    "autograder.judge.preprocessor",
    "autograder.kernel.remote",
)


def _warm_torch() -> None:
    """Run, once before the workers fork, the kinds of torch computation the checks' own
    references use: torch imports much of itself lazily on first use (forward-mode AD's
    decompositions, torch.func, the compiler stack behind some operators), seconds of
    CPU that every worker would otherwise pay again."""
    import torch
    from torch.autograd import forward_ad as fwAD

    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64, requires_grad=True)
    y = (1 / x + x**2 * torch.sin(x) - torch.exp(-x)).sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    g.sum().backward()
    v = x.detach()
    torch.autograd.functional.jacobian(lambda t: t**2, v)
    torch.autograd.functional.hessian(lambda t: (t**3).sum(), v)
    torch.func.vmap(torch.func.jacrev(torch.sin))(v)
    torch.func.vmap(torch.func.grad(lambda t: (t**2).sum()))(v.reshape(5, 1))
    with fwAD.dual_level():
        dual = fwAD.make_dual(v, torch.ones_like(v))
        fwAD.unpack_dual(torch.sin(dual) / dual)
    torch.nn.Linear(2, 1)(torch.ones(3, 2)).sum().backward()


def _course_checks() -> list[str]:
    """The course's check modules (autograder.assignments.*), which test cells name."""
    import pkgutil

    from .. import assignments

    return [f"{assignments.__name__}.{m.name}" for m in pkgutil.iter_modules(assignments.__path__)]


def start_workers(slots: list[tuple[int, str]], owner: int | None = None) -> int:
    """Run one worker per slot as children of this process, then wait for them.

    The children are forked after the heavy imports, so each worker pays them once per
    run instead of once per worker. Each child dies with this process, and this process
    dies with the executor: as its child (PR_SET_PDEATHSIG), or, when the fork server
    started it, by watching the executor's pid (`owner`). So killing a grading run leaves
    no worker behind; a single worker killed for hanging takes no sibling with it.
    """
    gc.disable()  # as the kernels' fork server does: the workers share these pages
    for name in (*HEAVY, *_course_checks()):
        __import__(name)
    try:
        _warm_torch()
    except Exception:  # only ever costs speed
        logging.getLogger("autograder.batch").exception("warming torch up failed")
    from . import speedups

    speedups.warm_feedback_templates()
    pids = []
    for fd, log in slots:
        if processes.threads() != 1:  # forking a threaded process is unsafe: start afresh instead
            proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.batch.worker", "--slot", f"{fd}:{log}"],
                pass_fds=[fd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            pids.append(proc.pid)
            os.close(fd)
            continue
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                gc.enable()
                processes.die_with_parent()
                for other, _ in slots:
                    if other != fd:
                        with contextlib.suppress(OSError):
                            os.close(other)
                code = _run_worker(fd, log)
            finally:
                os._exit(code)
        pids.append(pid)
        os.close(fd)
    _wait_for(pids, owner)
    return 0


def _wait_for(pids: list[int], owner: int | None) -> None:
    """Reap the workers; if `owner` ends first, return at once (the workers die with this
    process)."""
    if owner is None:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        return
    sel = selectors.DefaultSelector()
    try:
        sel.register(os.pidfd_open(owner), selectors.EVENT_READ, None)
    except ProcessLookupError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            sel.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
    while len(sel.get_map()) > 1:
        for key, _ in sel.select():
            if key.data is None:
                return
            sel.unregister(key.fd)
            os.close(key.fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(key.data, 0)


def _run_worker(fd: int, log: str) -> int:
    if log:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("autograder.batch").setLevel(logging.INFO)
    sock = socket.socket(fileno=fd)
    try:
        _serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="autograder grading worker")
    parser.add_argument(
        "--slot",
        action="append",
        required=True,
        help="FD:LOG, a socket to the executor and a log file; one worker per slot",
    )
    args = parser.parse_args(argv)
    slots = [(int(fd), log) for fd, log in (a.split(":", 1) for a in args.slot)]
    processes.die_with_parent()
    code = _run_worker(*slots[0]) if len(slots) == 1 else start_workers(slots)
    # Nothing left to clean up: skip the interpreter's slow teardown.
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())


def _checkout() -> list[str]:
    """The checkout the package runs from (a folder with the project's pyproject.toml
    beside the package), or nothing when it is installed elsewhere (site-packages)."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [os.path.realpath(top)] if os.path.exists(os.path.join(top, "pyproject.toml")) else []
