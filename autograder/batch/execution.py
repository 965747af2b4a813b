"""nbgrader's Execute preprocessor, with each cell's time limit measured in kernel CPU time.

nbclient's own per-cell timeout is wall-clock: on a busy machine a correct cell can run out
of it, and the student loses the points. Here a watch thread samples the CPU time of the
kernel process (and of children it has waited for) while a cell runs. A cell that uses more
than ``cpu_limit`` CPU seconds is interrupted (SIGINT, as nbclient would); one that keeps
running for ``interrupt_grace_*`` more is killed with its whole process group, so a loop that
ignores interrupts still ends. A cell whose kernel neither runs nor waits to run for
``stall_limit`` seconds (asleep or blocked: :mod:`.stall`) is interrupted the same way,
and killed if it stays so for :data:`.stall.GRACE` more. A generous ``wall_limit``
catches what is left. nbclient's own timeout stays as a last resort, set above all of
these.

What happened is recorded per notebook (:class:`~autograder.core.runs.NotebookRun`) in the
submission's :class:`SubmissionContext`, so the grader can tell "interrupted, rest graded"
from "killed" from "kernel died".
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from traitlets import Float, Instance

from ..core.runs import CellEvent, NotebookRun
from ..judge.preprocessor import TrustedExecute
from . import stall


@dataclass
class SubmissionContext:
    """What the grading of one submission hands its kernels and collects from them: the
    kernel sandbox's part of the fork request (:meth:`.sandbox.Jail.start`; None when
    kernels are not sandboxed), the audit hook's FIFO (:meth:`.audit.Watch.start`) and
    one :class:`NotebookRun` per notebook executed.

    The grading worker makes one per submission and hands it to
    :class:`WatchedExecute` through the nbgrader API's config
    (``WatchedExecute.submission``); the preprocessor passes it on to the kernel manager
    it creates, whose provisioner (:class:`.provisioner.ForkProvisioner`) reads it.
    Traitlets copies config values into each component: a context is one live object,
    so a copy is the context itself.
    """

    sandbox: dict | None = None
    audit: dict | None = None
    runs: list[NotebookRun] = field(default_factory=list)

    @property
    def workdir(self) -> str | None:
        """The sandboxed kernel's private directory (None without a sandbox)."""
        return self.sandbox.get("workdir") if self.sandbox else None

    def __deepcopy__(self, memo) -> SubmissionContext:
        return self


def cell_label(cell, index: int) -> str:
    grade_id = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
    return grade_id or f"cell {index + 1}"


class KernelClock:
    """CPU seconds used by a process, its reaped children and (sampled) live children."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self.proc = psutil.Process(pid)
        self._children = 0.0
        self._n = 0
        self._children_lists: bool | None = None

    def cpu(self) -> float:
        try:
            t = self.proc.cpu_times()
        except self._psutil.Error:
            return float("nan")
        own = t.user + t.system + t.children_user + t.children_system
        self._n += 1
        if self._n % 10 == 1:  # live children: only now and then
            total = 0.0
            with contextlib.suppress(self._psutil.Error):
                for child in self.descendants():
                    with contextlib.suppress(self._psutil.Error):
                        ct = child.cpu_times()
                        total += ct.user + ct.system
            self._children = total
        return own + self._children

    def descendants(self) -> list:
        """The process's live descendants, read from each thread's children list in
        /proc (a few small reads), rather than psutil's scan of every process on the
        machine (~1 ms); psutil's where the kernel keeps no such lists."""
        if self._children_lists is None:
            pid = self.proc.pid
            self._children_lists = os.path.exists(f"/proc/{pid}/task/{pid}/children")
        if not self._children_lists:
            return self.proc.children(recursive=True)
        found: list = []
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            kids: list[int] = []
            with contextlib.suppress(OSError):  # a process or thread gone meanwhile
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with (
                        contextlib.suppress(OSError),
                        open(f"/proc/{pid}/task/{tid}/children") as fh,
                    ):
                        kids += [int(k) for k in fh.read().split()]
            for kid in kids:
                with contextlib.suppress(self._psutil.Error):
                    found.append(self._psutil.Process(kid))
                todo.append(kid)
        return found


class CellWatch:
    """Watches one kernel; a thread checks the running cell against the limits."""

    def __init__(
        self,
        pid: int,
        pgid: int | None,
        *,
        cpu_limit: float,
        wall_limit: float,
        grace_cpu: float,
        grace_wall: float,
        run: NotebookRun,
        interval: float = 0.1,
        stall_limit: float = 0.0,
    ):
        self.pid = pid
        self.pgid = pgid or pid
        self.clock = KernelClock(pid)
        self.cpu_limit = cpu_limit
        self.wall_limit = wall_limit
        self.grace_cpu = grace_cpu
        self.grace_wall = grace_wall
        self.run = run
        self.interval = interval
        self.stall = stall.Meter(stall_limit)  # sleeping or blocked, not just slow
        self.start_cpu = self.clock.cpu()
        self.last_cpu = self.start_cpu
        self._lock = threading.Lock()
        self._cell: dict | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cell-watch", daemon=True)
        self._thread.start()

    def start_cell(self, index: int, label: str) -> None:
        with self._lock:
            self._cell = {
                "index": index,
                "label": label,
                "cpu0": self.clock.cpu(),
                "wall0": time.monotonic(),
                "state": "running",
            }
            self.stall.reset()

    def end_cell(self) -> None:
        with self._lock:
            if self._cell is not None:
                wall = time.monotonic() - self._cell["wall0"]
                self.run.slowest_cell = max(self.run.slowest_cell, round(wall, 3))
            self._cell = None

    def current_label(self) -> str | None:
        with self._lock:
            return self._cell["label"] if self._cell else None

    def stop(self) -> float:
        """Stop watching; return the kernel CPU time used while watched."""
        self._stop.set()
        self._thread.join(timeout=5)
        cpu = self.clock.cpu()
        if cpu == cpu:  # not NaN: the kernel is still there
            self.last_cpu = cpu
        return max(0.0, self.last_cpu - self.start_cpu)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pgid, sig)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                cell = self._cell
                if cell is None:
                    continue
                cpu_now = self.clock.cpu()
                if cpu_now != cpu_now:  # NaN: the kernel is gone
                    continue
                self.last_cpu = cpu_now
                cpu = cpu_now - cell["cpu0"]
                wall = time.monotonic() - cell["wall0"]
                if cell["state"] == "running":
                    over = (
                        "cpu" if cpu > self.cpu_limit else "wall" if wall > self.wall_limit else ""
                    ) or ("stall" if self.stall.stalled(self._pids) else "")
                    if over:
                        self.stall.reset()
                        cell.update(state="interrupted", cpu1=cpu, wall1=wall)
                        self._record(cell, "interrupted", cpu, wall, over)
                        self._signal(signal.SIGINT)
                elif cell["state"] == "interrupted":
                    if (
                        cpu - cell["cpu1"] > self.grace_cpu
                        or wall - cell["wall1"] > self.grace_wall
                        or self.stall.stalled(self._pids, limit=stall.GRACE)
                    ):
                        cell["state"] = "killed"
                        self._record(cell, "killed", cpu, wall, self.run.events[-1].limit)
                        self._signal(signal.SIGKILL)

    def _pids(self) -> list[int]:
        return [self.pid, *(p.pid for p in self.clock.descendants())]

    def _record(self, cell: dict, action: str, cpu: float, wall: float, limit: str) -> None:
        self.run.events.append(
            CellEvent(cell["index"], cell["label"], action, round(cpu, 2), round(wall, 2), limit)
        )


class QuickReadyClient(AsyncKernelClient):
    """jupyter_client's async kernel client, ready as soon as the kernel is.

    The stock ``wait_for_ready`` ends by draining IOPub until nothing has arrived for
    0.2 s: a fixed 0.2 s per kernel, as long as a forked kernel takes to start. Here the
    drain stops after 10 ms of quiet; anything later is a status message of the
    kernel_info requests, which nbclient skips (it reads only replies to its own
    requests).
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        import asyncio
        from queue import Empty

        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                msg = None
            if msg is not None and msg["msg_type"] == "kernel_info_reply":
                try:  # IOPub connected? (the kernel_info request's status message)
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(msg)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
            await asyncio.sleep(0)
        while True:
            try:
                await self.iopub_channel.get_msg(timeout=0.01)
            except Empty:
                break


class SubmissionKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, carrying the submission's context to the provisioner
    that starts its kernel (the provisioner's parent is its kernel manager)."""

    submission = Instance(SubmissionContext, allow_none=True)


def _read_released(path: str):
    """The notebook at `path` (None if unreadable), remembered while the file is unchanged."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    known = _RELEASED.get(path)
    if known is None or known[0] != stamp:
        import nbformat

        try:
            known = (stamp, nbformat.read(path, as_version=4))
        except Exception:
            return None
        _RELEASED[path] = known
    return known[1]


_RELEASED: dict[str, tuple] = {}  # path -> ((mtime, size), notebook)


class WatchedExecute(TrustedExecute):
    """nbgrader's Execute preprocessor with CPU-time cell limits (see the module doc).

    Built on TrustedExecute: as each test cell has run, its checks are run again in this
    (grading) process, which decides the score (see autograder/judge/preprocessor.py).
    """

    cpu_limit = Float(120.0, help="CPU seconds a cell may use before it is interrupted.").tag(
        config=True
    )
    wall_limit = Float(600.0, help="Wall seconds a cell may take before it is interrupted.").tag(
        config=True
    )
    stall_limit = Float(
        stall.DEFAULT_LIMIT,
        help="Seconds a cell's kernel may sleep or wait without running (0: no such limit).",
    ).tag(config=True)
    interrupt_grace_cpu = Float(
        2.0, help="CPU seconds an interrupted cell may still use before the kernel is killed."
    ).tag(config=True)
    interrupt_grace_wall = Float(
        20.0, help="Wall seconds an interrupted cell may still take before the kernel is killed."
    ).tag(config=True)

    submission = Instance(
        SubmissionContext,
        allow_none=True,
        help="The submission being graded: its kernels' sandbox and audit FIFO, and where "
        "each notebook's run is recorded (None: recorded nowhere, no sandbox).",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SubmissionKernelManager)
        super().__init__(*args, **kwargs)

    def released_notebook(self, resources: dict):
        """The student version of today's source, as the gradebook's preparation wrote it
        (nbgrader runs this in the course directory); None if there is none."""
        from ..core.cells import generated_notebook
        from ..core.nbgrader_io import STATE_DIR

        info = resources.get("nbgrader") or {}
        if not info.get("assignment") or not info.get("notebook"):
            return None
        path = generated_notebook(Path.cwd() / STATE_DIR, info["assignment"], info["notebook"])
        return _read_released(str(path))

    def preprocess(self, nb, resources=None, km=None):
        self._run = NotebookRun()
        if self.submission is not None:
            self.submission.runs.append(self._run)
        self._watch: CellWatch | None = None
        started = time.monotonic()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            if self._watch is not None:
                self._run.cpu = round(self._watch.stop(), 3)
            self._run.wall = round(time.monotonic() - started, 3)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.client_class = f"{QuickReadyClient.__module__}.{QuickReadyClient.__name__}"
        if isinstance(km, SubmissionKernelManager):
            km.submission = self.submission
        return km

    def _watch_kernel(self) -> CellWatch | None:
        if self._watch is None:
            provisioner = getattr(self.km, "provisioner", None)
            pid = getattr(provisioner, "pid", None)
            if pid:
                self._watch = CellWatch(
                    pid,
                    getattr(provisioner, "pgid", None),
                    cpu_limit=self.cpu_limit,
                    wall_limit=self.wall_limit,
                    grace_cpu=self.interrupt_grace_cpu,
                    grace_wall=self.interrupt_grace_wall,
                    stall_limit=self.stall_limit,
                    run=self._run,
                )
        return self._watch

    def execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        """Every execution goes through here: the notebook's cells, and any code run in the
        kernel after them (e.g. by a grader asking the kernel for values)."""
        if cell.cell_type != "code" or not cell.source.strip():
            return super().execute_cell(cell, cell_index, execution_count, store_history)
        self._run.cells += 1
        with self._watched(cell_index, cell_label(cell, cell_index)):
            return super().execute_cell(cell, cell_index, execution_count, store_history)

    def channel_dir(self) -> str | None:
        return self.submission.workdir if self.submission is not None else None

    def judging(self, index: int, label: str):
        """The trusted re-check of a test cell runs under the same limits as a cell."""
        return self._watched(index, f"{label} (re-check)")

    @contextlib.contextmanager
    def _watched(self, index: int, label: str):
        """Run the block as the kernel's current cell: CPU and wall limits apply, and a
        kernel that dies meanwhile is recorded as having died in `label`."""
        watch = self._watch_kernel()
        if watch is not None:
            watch.start_cell(index, label)
        try:
            yield
        except DeadKernelError:
            self._run.died_in = label
            self._run.exit_status = self._exit_status()
            raise
        finally:
            if watch is not None:
                watch.end_cell()

    def _exit_status(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None:
            return None
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            status = process.poll()
            if status is not None:
                return status
            time.sleep(0.05)
        return None
