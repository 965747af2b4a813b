"""Trusted grading: scores decided in the grader's process, not in the student's kernel.

`TrustedExecute` is nbgrader's Execute preprocessor with one step added: after the
notebook has run (so the student's functions exist in the kernel), each test cell's
checks are run again *here*, in the grading process, which never executes student code.
The checks draw fresh inputs and compute references with this process's own torch; the
student's functions are reached through :class:`RemoteObject` stand-ins that ask the
kernel to evaluate them and hand back plain data (:mod:`autograder.kernel.wire`). The test
cell's outputs are replaced by this verdict, so nbgrader's own scoring
(SaveAutoGrades) records what the trusted side decided. Nothing the student's code does
to torch, numpy, this package, builtins, IPython hooks or stdout in the kernel can
change a comparison.

The requests travel over a :class:`Channel`: one kernel execution starts
:func:`autograder.kernel.remote.channel`, which then answers JSON lines on a Unix socket
(about 0.5 ms a request, against ~15 ms for a kernel execution per request, and a
hidden test may make hundreds). If the channel does not come up, each request is a
kernel execution of :func:`autograder.kernel.remote.serve`, as before.

The kernel is told that hidden tests are decided here, and skips them
(:func:`autograder.assignments.defer_hidden`); it still runs the visible ones. If a
visible check passed in the kernel but fails here, the submission changed how checks
behave in its kernel: the cell says so and carries a tamper mark.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import io
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

from ..checking import forbid
from ..checking.feedback import CheckFailed, Finding
from ..kernel import wire

TAMPER_MIME = "application/vnd.autograder.tamper+json"


class RemoteError(Exception):
    """An exception raised by the student's code in the kernel, carried back as data."""

    def __init__(self, type_name: str, message: str, where: str = ""):
        super().__init__(f"{message}")
        self.type_name = type_name
        self.where = where


class RemoteNotImplemented(NotImplementedError):
    pass


class Channel:
    """A direct line to :func:`autograder.kernel.remote.channel` running in the kernel.

    JSON lines over a Unix socket. A reply must echo its request's id (nothing the kernel
    wrote ahead of time can pass for one) and is capped in size. A broken line, or a
    kernel gone silent past `timeout`, is a :class:`RemoteError` for this and every later
    request; `broken` says why.
    """

    MAX_REPLY = 64 * 2**20

    def __init__(self, sock, timeout: float | None):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.rfile = sock.makefile("rb")
        self.next_id = 0
        self.broken: str | None = None

    def request(self, req: dict) -> dict:
        if self.broken:
            raise RemoteError("KernelError", f"the kernel gave no result ({self.broken})")
        self.next_id += 1
        ident = self.next_id
        try:
            self.sock.sendall(json.dumps(dict(req, id=ident)).encode() + b"\n")
            for _ in range(1000):
                line = self.rfile.readline(self.MAX_REPLY + 1)
                if not line.endswith(b"\n"):
                    why = "reply too large" if len(line) > self.MAX_REPLY else "connection closed"
                    raise ConnectionError(why)
                reply = json.loads(line)
                if not isinstance(reply, dict):
                    raise wire.WireError("malformed reply")
                if reply.get("id") == ident:
                    return reply
                # a line that answers nothing asked: written ahead of time, skip it
            raise ConnectionError("replies to nothing asked")
        except TimeoutError:
            self.broken = "timed out: the kernel did not answer in time"
        except (OSError, ValueError) as exc:
            self.broken = str(exc) or type(exc).__name__
        raise RemoteError("KernelError", f"the kernel gave no result ({self.broken})")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if not self.broken:
                self.sock.sendall(b'{"op": "bye"}\n')
        with contextlib.suppress(OSError):
            self.rfile.close()
            self.sock.close()


@dataclass
class Session:
    """How the trusted side reaches the kernel: over a :class:`Channel` when one is open,
    else `run(code) -> list of outputs` (one kernel execution per request)."""

    run: Any
    sources: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    channel: Channel | None = None

    def request(self, req: dict) -> dict:
        self.calls += 1
        if self.channel is not None:
            return self.channel.request(req)
        code = (
            "__import__('autograder.kernel.remote', fromlist=['serve']).serve("
            + repr(json.dumps(req))
            + ")"
        )
        outputs = self.run(code)
        replies = [
            o
            for o in outputs
            if o.get("output_type") == "display_data" and wire.MIME in o.get("data", {})
        ]
        if not replies:
            errors = [o for o in outputs if o.get("output_type") == "error"]
            if errors and errors[-1].get("ename") == "CellTimeoutError":
                raise RemoteError("TimeoutError", "timed out: the kernel did not answer in time")
            detail = errors[-1].get("ename", "") if errors else "no reply"
            raise RemoteError("KernelError", f"the kernel gave no result ({detail})")
        reply = replies[-1]["data"][wire.MIME]
        if isinstance(reply, str):
            reply = json.loads(reply)
        if not isinstance(reply, dict):
            raise wire.WireError("malformed reply")
        return reply


class RemoteObject:
    """Stand-in for an object in the student's kernel (usually one of their functions)."""

    def __init__(self, session: Session, expr: str):
        self._session = session
        self._expr = expr
        self.__name__ = expr.split(".")[-1]

    def __repr__(self) -> str:
        return f"<student's {self._expr}>"

    @property
    def source(self) -> str:
        return self._session.sources.get(self._expr, "")

    def _decode(self, data: Any) -> Any:
        return wire.decode(data, refs=lambda e: RemoteObject(self._session, e))

    def __call__(self, *args, **kwargs):
        watches = list(forbid.WATCHES)
        req = {
            "op": "call",
            "target": self._expr,
            "args": wire.encode(list(args)),
            "kwargs": wire.encode(dict(kwargs)),
            "watch": _watch_request(watches),
        }
        return self._finish(args, watches, self._session.request(req))

    def _autograder_each(self, arg_lists: list[tuple]) -> list:
        """The calls `self(*args)` for each of `arg_lists` in one request (see
        :func:`autograder.checking.checks.call_each`): one callable per call the kernel made, each
        returning or raising what that call did. The kernel stops at the first call that
        raises; a reply with fewer results and no such call is no result at all."""
        watches = list(forbid.WATCHES)
        req = {
            "op": "each",
            "target": self._expr,
            "calls": [{"args": wire.encode(list(args))} for args in arg_lists],  # no kwargs
            "watch": _watch_request(watches),
        }
        reply = self._session.request(req)
        replies = reply.get("each") if "raised" not in reply else [reply]
        if (
            not isinstance(replies, list)
            or not all(isinstance(r, dict) for r in replies)
            or len(replies) > len(arg_lists)
            or (len(replies) < len(arg_lists) and not (replies and "raised" in replies[-1]))
        ):
            raise RemoteError("KernelError", "the kernel gave no result (malformed reply)")
        return [
            functools.partial(self._finish, args, watches, r)
            for args, r in zip(arg_lists, replies, strict=False)
        ]

    def _finish(self, args: tuple, watches: list, reply: dict):
        """What a call returned or raised in the kernel, as if it had happened here."""
        for (_, _, hits), got in zip(watches, reply.get("hits", []), strict=False):
            if isinstance(got, list):
                hits.extend(str(h) for h in got[:100_000])
        for message in reply.get("warnings", [])[:20]:
            warnings.warn(str(message), UserWarning, stacklevel=2)
        if "raised" in reply:
            raised = reply["raised"]
            mro = [str(m) for m in raised.get("mro", [])]
            message = str(raised.get("message", ""))
            if "NotImplementedError" in mro:
                raise RemoteNotImplemented(message)
            raise RemoteError(mro[0] if mro else "Exception", message, str(raised.get("where", "")))
        _apply_module_changes(args, reply.get("modules"))
        return self._decode(reply.get("ok"))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        reply = self._session.request({"op": "getattr", "target": f"{self._expr}.{name}"})
        if "raised" in reply:
            raise AttributeError(reply["raised"].get("message", name))
        return self._decode(reply.get("ok"))

    def bound_references(self, names: set[str]) -> list[str]:
        reply = self._session.request(
            {"op": "inspect", "target": self._expr, "names": sorted(names)}
        )
        bound = (
            (reply.get("ok") or {}).get("bound", []) if isinstance(reply.get("ok"), dict) else []
        )
        return [str(b) for b in bound][:20]


def _watch_request(watches: list) -> list:
    """What the kernel is to record while the call runs (see :mod:`autograder.checking.forbid`)."""
    return [[kind, sorted(names)] for kind, names, _ in watches]


def _apply_module_changes(args: tuple, changes: Any) -> None:
    """Mirror on the grader's modules what the student's call did to their copies in the
    kernel (a replaced parameter becomes a new tensor here too; values are copied)."""
    import torch

    if not isinstance(changes, list):
        return
    for change in changes[:10]:
        if not isinstance(change, dict):
            continue
        index = change.get("index")
        if not isinstance(index, int) or not 0 <= index < len(args):
            continue
        module = args[index]
        if not isinstance(module, torch.nn.Module):
            continue
        params = dict(module.named_parameters())
        replaced = set(change.get("replaced") or [])
        for name, data in dict(change.get("state") or {}).items():
            if name not in params:
                continue
            try:
                value = wire.decode(data)
            except wire.WireError:
                continue
            if not isinstance(value, torch.Tensor) or value.shape != params[name].shape:
                continue
            owner_path, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_path) if owner_path else module
            if name in replaced:
                setattr(owner, leaf, torch.nn.Parameter(value.detach().to(params[name].dtype)))
            else:
                with torch.no_grad():
                    params[name].copy_(value)


# --- reading a test cell -------------------------------------------------------------------


def check_modules(nb: NotebookNode) -> dict[str, Any]:
    """alias -> trusted module, from `import`s of autograder modules in locked cells.

    Only locked cells count (nbgrader restores them from the gradebook before execution),
    so a student cannot rebind an alias to a module of their choosing.
    """
    aliases: dict[str, Any] = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if cell.cell_type != "code" or not (meta.get("locked") or meta.get("grade")):
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autograder"):
                for a in node.names:
                    name = f"{node.module}.{a.name}"
                    with contextlib.suppress(ImportError):
                        aliases[a.asname or a.name] = importlib.import_module(name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("autograder") and a.asname:
                        aliases[a.asname] = importlib.import_module(a.name)
    return aliases


def _python_only(source: str) -> str:
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


@dataclass
class PlannedCall:
    function: Any
    args: list[Any]
    kwargs: dict[str, Any]


def plan(source: str, modules: dict[str, Any], session: Session) -> list[PlannedCall] | None:
    """The check calls of a test cell, or None if it holds anything else.

    Accepted statements: `alias.check_name(arg, ..., key=const)` where arguments are
    names of objects in the kernel or literals.
    """
    try:
        tree = ast.parse(_python_only(source))
    except SyntaxError:
        return None
    calls = []
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            return None
        call = stmt.value
        func = call.func
        if not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in modules
            and not func.attr.startswith("_")
        ):
            return None
        fn = getattr(modules[func.value.id], func.attr, None)
        if not callable(fn):
            return None
        args = []
        for a in call.args:
            value = _argument(a, session)
            if value is _NOT_ALLOWED:
                return None
            args.append(value)
        kwargs = {}
        for kw in call.keywords:
            value = _argument(kw.value, session)
            if kw.arg is None or value is _NOT_ALLOWED:
                return None
            kwargs[kw.arg] = value
        calls.append(PlannedCall(fn, args, kwargs))
    return calls


_NOT_ALLOWED = object()


def _argument(node: ast.AST, session: Session) -> Any:
    if isinstance(node, ast.Name):
        return fetch(session, node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _NOT_ALLOWED


def fetch(session: Session, name: str) -> Any:
    """A name in the kernel: its value if it is plain data (a tensor, a small module, …),
    else a stand-in that reaches it there (the student's functions)."""
    try:
        reply = session.request({"op": "getattr", "target": name})
    except wire.WireError:
        return RemoteObject(session, name)
    if "raised" in reply or not isinstance(reply.get("ok"), dict | list | str | int | float):
        return RemoteObject(session, name)
    data = reply["ok"]
    if isinstance(data, dict) and "__ref__" in data:
        return RemoteObject(session, name)
    try:
        return wire.decode(data, refs=lambda e: RemoteObject(session, e))
    except wire.WireError:
        return RemoteObject(session, name)


def defined_sources(nb: NotebookNode) -> dict[str, str]:
    """name -> source of the code cell(s) that define it at top level (for static checks)."""
    out: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            names = []
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                out[name] = out.get(name, "") + "\n" + cell.source
    return out


# --- verdicts --------------------------------------------------------------------------------


@dataclass
class Verdict:
    passed: bool
    stdout: str
    failure: CheckFailed | None = None
    in_hidden: bool = False  # the failing call was a hidden test (`hidden=True`)


def judge(calls: list[PlannedCall], question_hint: str = "") -> Verdict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for pc in calls:
            hidden = bool(pc.kwargs.get("hidden"))
            try:
                pc.function(*pc.args, **pc.kwargs)
            except CheckFailed as exc:
                return Verdict(False, out.getvalue(), exc, hidden)
            except RemoteNotImplemented:
                return Verdict(
                    False,
                    out.getvalue(),
                    CheckFailed(
                        question_hint or "this question",
                        "not answered yet",
                        ["your function still raises NotImplementedError"],
                    ),
                    hidden,
                )
            except (DeadKernelError, KeyboardInterrupt):
                raise
            except Exception as exc:  # anything else: the answer could not be checked
                return Verdict(
                    False,
                    out.getvalue(),
                    CheckFailed(
                        question_hint or "this question",
                        "could not be checked",
                        [f"{type(exc).__name__}: {str(exc)[:300]}"],
                    ),
                    hidden,
                )
    return Verdict(True, out.getvalue())


def _in_kernel_passed(cell: NotebookNode) -> bool:
    return not any(
        o.get("output_type") == "error"
        or (o.get("output_type") == "stream" and o.get("name") == "stderr")
        for o in cell.outputs
    )


def verdict_outputs(verdict: Verdict, tamper: list[str]) -> list[NotebookNode]:
    outputs = []
    if verdict.stdout:
        outputs.append(new_output("stream", name="stdout", text=verdict.stdout))
    if tamper:
        outputs.append(
            new_output(
                "display_data",
                data={
                    TAMPER_MIME: {"flags": tamper},
                    "text/plain": "⚠ " + "; ".join(tamper),
                },
            )
        )
    if verdict.failure is not None:
        text = verdict.failure.render(color=True)
        outputs.append(
            new_output(
                "error",
                ename="CheckFailed",
                evalue=verdict.failure.summary,
                traceback=text.splitlines(),
            )
        )
    return outputs


class TrustedExecute(Execute):
    """nbgrader's Execute, then every test cell judged again in this (trusted) process.

    Also caps what one cell may print (a flood of output would otherwise be held in the
    grader's memory and written into the gradebook's notebooks)."""

    max_output_bytes = Integer(
        1_000_000, help="Output kept per cell; the rest is dropped with a note."
    ).tag(config=True)
    max_total_output_bytes = Integer(
        10_000_000, help="Output kept per notebook; the rest is dropped with a note."
    ).tag(config=True)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in (content.get("data") or {}).values()
        )
        used = getattr(self, "_output_used", {})
        self._output_used = used
        used[cell_index] = used.get(cell_index, 0) + size
        over_cell = used[cell_index] > self.max_output_bytes
        over_total = getattr(self, "_output_kept", 0) + size > self.max_total_output_bytes
        if (over_cell or over_total) and msg["msg_type"] in (
            "stream",
            "display_data",
            "execute_result",
            "update_display_data",
        ):
            cut = getattr(self, "_output_cut", set())
            self._output_cut = cut
            if cell_index not in cut:
                cut.add(cell_index)
                limit = (
                    f"this cell printed more than {self.max_output_bytes} bytes"
                    if over_cell
                    else f"the notebook printed more than {self.max_total_output_bytes} bytes"
                )
                note = new_output("stream", name="stdout", text=f"\n[output cut: {limit}]\n")
                outs.append(note)
            return None
        self._output_kept = getattr(self, "_output_kept", 0) + size
        return super().output(outs, msg, display_id, cell_index)

    def preprocess(self, nb, resources=None, km=None):
        from nbclient import NotebookClient

        NotebookClient.__init__(self, nb, km)
        self._output_used, self._output_cut, self._output_kept = {}, set(), 0
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        with self.setup_kernel(**self._kernel_kwargs()):
            assert self.kc
            info_msg = self.wait_for_reply(self.kc.kernel_info())
            assert info_msg
            self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
            for index, cell in enumerate(self.nb.cells):
                self.preprocess_cell(cell, resources, index)
            self.judge_test_cells()
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _kernel_env(self) -> dict[str, str]:
        """The kernel's environment: the grader's, plus the word that hidden tests are
        run here (the kernel skips them: see :func:`autograder.assignments.defer_hidden`)."""
        import os

        from ..assignments import HIDDEN_BY_GRADER

        return dict(os.environ, **{HIDDEN_BY_GRADER: "1"})

    def _kernel_kwargs(self) -> dict:
        return {"env": self._kernel_env()}

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

    def _channel_dir(self) -> str | None:
        """A directory the kernel can reach, for the channel's socket (None: a new
        temporary directory)."""
        return None

    def _open_channel(self) -> Channel | None:
        """Start :func:`autograder.kernel.remote.channel` in the kernel and connect it; None if
        it does not come up (requests then go through the kernel's execute machinery)."""
        import os
        import secrets
        import shutil
        import socket
        import tempfile
        import time

        from jupyter_core.utils import ensure_async, run_sync

        base = self._channel_dir()
        folder = tempfile.mkdtemp(prefix=".autograder-", dir=base)
        path = os.path.join(folder, "channel")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.chmod(folder, 0o711)  # the kernel may run as another user
            server.bind(path)
            os.chmod(path, 0o777)
            server.listen(4)
            token = secrets.token_hex(16)
            code = (
                "__import__('autograder.kernel.remote', fromlist=['channel']).channel("
                f"{path!r}, {token!r})"
            )
            self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                server.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    break
                conn.settimeout(5)
                try:
                    hello = json.loads(conn.makefile("rb").readline(200))
                except (OSError, ValueError):
                    hello = None
                if isinstance(hello, dict) and hello.get("hello") == token:
                    return Channel(conn, self.timeout or 600)
                conn.close()
            self.log.warning("the grading channel did not come up: asking the kernel per call")

            # the channel cell may still be waiting: nbclient skips its late reply
            async def interrupt():
                await ensure_async(self.km.interrupt_kernel())

            with contextlib.suppress(Exception):
                run_sync(interrupt)()
            return None
        finally:
            server.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _kernel_alive(self) -> bool:
        from jupyter_core.utils import ensure_async, run_sync

        async def alive():
            return await ensure_async(self.km.is_alive())

        try:
            return bool(run_sync(alive)())
        except Exception:
            return False

    @contextlib.contextmanager
    def _judging(self, index: int, label: str):
        """Around the trusted re-check of one test cell (a hook for time limits)."""
        yield

    def judge_test_cells(self) -> None:
        channel = self._open_channel()
        session = Session(self._run_in_kernel, defined_sources(self.nb), channel=channel)
        try:
            self._judge_all(session)
        finally:
            if channel is not None:
                channel.close()

    def _judge_all(self, session: Session) -> None:
        modules = check_modules(self.nb)
        for index, cell in enumerate(self.nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            calls = plan(cell.source, modules, session)
            if calls is None:
                self.log.warning(
                    "test cell %s is not made of autograder check calls: it is scored from "
                    "the kernel's own output",
                    meta.get("grade_id"),
                )
                continue
            in_kernel_passed = _in_kernel_passed(cell)
            label = str(meta.get("grade_id") or f"cell {index + 1}")
            with self._judging(index, label):
                verdict = judge(calls, str(meta.get("grade_id", "")))
                channel = session.channel
                if channel is not None and channel.broken and not self._kernel_alive():
                    raise DeadKernelError(f"the kernel died while {label} was re-checked")
            tamper = []
            # The kernel ran the visible checks only (hidden ones are decided here): a
            # visible check that passed there and fails here was changed there.
            if in_kernel_passed and not verdict.passed and not verdict.in_hidden:
                tamper.append(
                    "the checks inside the notebook passed but the grader's own re-check "
                    "failed: code in this submission changed how checks behave"
                )
                verdict.failure.diagnoses.insert(
                    0,
                    Finding(
                        "tampered",
                        "the checks in your notebook were changed at run time; only "
                        "the grader's independent re-check counts.",
                    ),
                )
            cell.outputs = verdict_outputs(verdict, tamper)
