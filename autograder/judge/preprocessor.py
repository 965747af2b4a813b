"""TrustedExecute: nbgrader's Execute, each test cell judged again in the grading process.

Each test cell, right after it ran in the student's kernel (before the next cell runs),
has its checks run again *here*, in the grading process, which never executes student
code (:mod:`.verdict`). The checks draw fresh inputs and compute references with this
process's own torch; the student's functions are reached through stand-ins
(:mod:`.transport`). The test cell's outputs are replaced by this verdict, so nbgrader's
own scoring (SaveAutoGrades) records what the trusted side decided. Nothing the student's
code does to torch, numpy, this package, builtins, IPython hooks or stdout in the kernel
can change a comparison, and nothing a later cell does can change an earlier verdict.

The kernel is told that hidden tests are decided here, and skips them
(:func:`autograder.assignments.defer_hidden`); it still runs the visible ones. If a
visible check passed in the kernel but fails here, the submission changed how checks
behave in its kernel: the cell says so and carries a tamper mark. So does a cell whose
re-check the kernel blocked (the helper the grader talks to disabled): those checks
score nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from .outputs import CappedExecute
from .planning import check_modules, defined_sources, parse, resolve
from .transport import Channel, Listener, Session
from .verdict import assess, in_kernel_passed, judge, verdict_outputs

# How long the kernel's side of a channel may take to connect.
CONNECT_WAIT = 30.0


def is_test_cell(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def runs_released_code(nb: NotebookNode, released: NotebookNode) -> bool:
    """Whether `nb` (a submission as nbgrader prepared it) runs only the code of
    `released`: the same code cells in the same order, but for test cells, whose code
    nbgrader restores from the gradebook (their ids must be the released ones)."""

    def code(book):
        return [c.source for c in book.cells if c.cell_type == "code" and not is_test_cell(c)]

    def test_ids(book):
        return {_grade_id(c) for c in book.cells if is_test_cell(c)}

    return code(nb) == code(released) and test_ids(nb) <= test_ids(released)


def _grade_id(cell: NotebookNode):
    return (cell.get("metadata", {}).get("nbgrader", {}) or {}).get("grade_id")


class TrustedExecute(CappedExecute):
    """nbgrader's Execute; every test cell is judged again in this (trusted) process as
    soon as it has run (see the module doc). Output is capped (:class:`CappedExecute`)."""

    def preprocess(self, nb, resources=None, km=None):
        self._modules: dict | None = None  # the check modules' aliases (locked cells)
        self._per_request: str | None = None  # why there is no channel, once it failed
        released = self.released_notebook(resources or {})
        self._released_code = released is not None and runs_released_code(nb, released)
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        cell, resources = super().preprocess_cell(cell, resources, index)
        if is_test_cell(cell):
            if self._released_code and not in_kernel_passed(cell):
                # Nothing but the course's own code ran (no answer written, no cell
                # added or changed), and this cell failed in the kernel: there is no
                # student code to distrust, and the re-check could only fail the same way.
                return cell, resources
            self.judge_cell(cell, index)
        return cell, resources

    def released_notebook(self, resources: dict) -> NotebookNode | None:
        """The notebook as students received it, if known (a hook; None: not known, and
        every test cell is judged)."""
        return None

    # --- the kernel ----------------------------------------------------------------------

    def kernel_env(self) -> dict[str, str]:
        """The kernel's environment: the grader's, plus the word that hidden tests are
        run here (the kernel skips them: see :func:`autograder.assignments.defer_hidden`)."""
        from ..assignments import HIDDEN_BY_GRADER

        return dict(os.environ, **{HIDDEN_BY_GRADER: "1"})

    async def async_start_new_kernel(self, **kwargs) -> None:
        kwargs.setdefault("env", self.kernel_env())
        await super().async_start_new_kernel(**kwargs)

    start_new_kernel = run_sync(async_start_new_kernel)

    def channel_dir(self) -> str | None:
        """A directory the kernel can reach, for the channel's socket (None: a new
        temporary directory)."""
        return None

    @contextlib.contextmanager
    def judging(self, index: int, label: str) -> Iterator[None]:
        """Around the trusted re-check of one test cell (a hook for time limits)."""
        yield

    def _run_in_kernel(self, code: str) -> list[NotebookNode]:
        # nbclient writes the executed cell back into the notebook at its index: run the
        # request as a scratch cell appended at the end, then take it out again.
        cell = new_code_cell(code)
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        try:
            self.execute_cell(cell, index, store_history=False)
        except CellTimeoutError:
            pass
        finally:
            done = self.nb.cells.pop(index)
        return done.outputs

    def _kernel_alive(self, settle: float = 0.0) -> bool:
        """Whether the kernel process still runs (watched for `settle` seconds: a kernel
        that has just closed its sockets may not have been seen to exit yet)."""

        async def alive():
            return await ensure_async(self.km.is_alive())

        deadline = time.monotonic() + settle
        while True:
            try:
                if not run_sync(alive)():
                    return False
            except Exception:
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.05)

    def _open_channel(self) -> Channel | None:
        """Start :func:`autograder.kernel.remote.channel` in the kernel and connect it; None if
        it does not come up (requests then go through the kernel's execute machinery, for
        the rest of the notebook; :attr:`_per_request` says why)."""
        if self._per_request is not None:
            return None
        try:
            listener = Listener(self.channel_dir())
        except OSError as exc:
            self._per_request = f"no socket for it: {exc}"
        else:
            with listener:
                msg_id = self.kc.execute(
                    listener.kernel_code,
                    store_history=False,
                    allow_stdin=False,
                    stop_on_error=False,
                )
                channel, why = run_sync(self._connect)(listener, msg_id)
            if channel is not None:
                return channel
            self._per_request = why
        self.log.warning(
            "the grading channel did not come up (%s): asking the kernel per call",
            self._per_request,
        )
        return None

    async def _connect(self, listener: Listener, msg_id: str) -> tuple[Channel | None, str]:
        """The channel the kernel's execution `msg_id` opens to `listener`, or (None, why):
        that execution ended without connecting, or it did not connect in time."""
        loop = asyncio.get_running_loop()
        listener.server.setblocking(False)
        ended = asyncio.ensure_future(self._reply_to(msg_id))
        deadline = loop.time() + CONNECT_WAIT
        try:
            while True:
                accepting = asyncio.ensure_future(loop.sock_accept(listener.server))
                done, _ = await asyncio.wait(
                    {accepting, ended},
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if accepting in done:
                    conn, _ = accepting.result()
                    channel = listener.take(conn, self.timeout or 600)
                    if channel is not None:
                        return channel, ""
                    continue
                accepting.cancel()
                if ended in done:
                    return None, _ended_without_connecting(ended.result())
                # the channel cell may still be waiting: nbclient skips its late reply
                with contextlib.suppress(Exception):
                    await ensure_async(self.km.interrupt_kernel())
                return None, f"it did not connect within {CONNECT_WAIT:g} s"
        finally:
            ended.cancel()

    async def _reply_to(self, msg_id: str) -> dict:
        """The content of the kernel's reply to the execution `msg_id` (replies to
        anything else are skipped, as nbclient skips them)."""
        while True:
            msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=None))
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg.get("content", {})

    # --- judging a test cell ------------------------------------------------------------

    def judge_cell(self, cell: NotebookNode, index: int) -> None:
        """Run the test cell's checks here, against the kernel as it is now; the verdict
        replaces the cell's outputs."""
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if self._modules is None:
            self._modules = check_modules(self.nb)
        calls = parse(cell.source, self._modules)
        if calls is None:
            self.log.warning(
                "test cell %s is not made of autograder check calls: it is scored from "
                "the kernel's own output",
                meta.get("grade_id"),
            )
            return
        passed_in_kernel = in_kernel_passed(cell)
        label = str(meta.get("grade_id") or f"cell {index + 1}")
        hint = str(meta.get("grade_id", ""))
        with self.judging(index, label):
            channel = self._open_channel()
            session = Session(
                self._run_in_kernel, defined_sources(self.nb, index + 1), channel=channel
            )
            try:
                verdict = judge(resolve(calls, session), hint)
                # (a kernel that died while asked per request was seen by nbclient)
                broken = channel is not None and channel.broken
                if broken and not self._kernel_alive(settle=0.5):
                    raise DeadKernelError(f"the kernel died while {label} was re-checked")
            finally:
                if channel is not None:
                    channel.close()
        blocked = list(session.blocked)
        if blocked and self._per_request:  # said once when both ways failed alike
            why = self._per_request
            blocked = [f"its channel to the grader did not start ({why})"] + [
                b for b in blocked if why not in b
            ]
        tamper = assess(
            verdict, passed_in_kernel=passed_in_kernel, blocked=blocked, question_hint=hint
        )
        cell.outputs = verdict_outputs(verdict, tamper, blocked)


def _ended_without_connecting(reply: dict) -> str:
    """Why the kernel's channel execution ended before connecting, from its reply."""
    status = reply.get("status")
    if status == "error":
        return f"{reply.get('ename', 'an error')}: {str(reply.get('evalue', ''))[:200]}".rstrip(
            ": "
        )
    if status == "ok":
        return "the kernel ran it and returned without connecting"
    return f"the kernel answered {status!r}"
