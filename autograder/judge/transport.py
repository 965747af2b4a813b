"""How the grader reaches the student's kernel: requests out, plain data back.

The student's functions are reached through :class:`RemoteObject` stand-ins that ask the
kernel to evaluate them (:mod:`autograder.kernel.remote`) and hand back plain data
(:mod:`autograder.kernel.wire`). The requests travel over a :class:`Channel`: one kernel
execution starts :func:`autograder.kernel.remote.channel`, which connects to a
:class:`Listener` here and answers JSON lines on that Unix socket (about 0.5 ms a request,
against ~15 ms for a kernel execution per request, and a hidden test may make hundreds).
If the channel does not come up, each request is a kernel execution of
:func:`autograder.kernel.remote.serve` (:class:`Session`).

An intact kernel helper answers every request, even one whose call raised. When it gives
no result at all the submission disabled it: that is :class:`HelperBlocked`, and the
:class:`Session` keeps what was blocked (:attr:`Session.blocked`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..checking import forbid
from ..kernel import wire

# How the grader starts the kernel's side of a channel, and asks for one request.
KERNEL_MODULE = "autograder.kernel.remote"


class RemoteError(Exception):
    """An exception raised by the student's code in the kernel, carried back as data."""

    def __init__(self, type_name: str, message: str, where: str = ""):
        super().__init__(f"{message}")
        self.type_name = type_name
        self.where = where


class RemoteNotImplemented(NotImplementedError):
    pass


class HelperBlocked(RemoteError):
    """The kernel's grading helper gave no result where an intact one always answers:
    code in the kernel disabled it (the kernel itself still runs)."""

    def __init__(self, message: str, what: str):
        super().__init__("KernelError", message)
        self.what = what


def no_result(detail: str) -> str:
    return f"the kernel gave no result ({detail})"


class Channel:
    """A direct line to :func:`autograder.kernel.remote.channel` running in the kernel.

    JSON lines over a Unix socket. A reply must echo its request's id (nothing the kernel
    wrote ahead of time can pass for one) and is capped in size. A broken line, or a
    kernel gone silent past `timeout`, is a :class:`RemoteError` for this and every later
    request; `broken` says why. A line broken otherwise than by silence or a reply too
    large is :class:`HelperBlocked`: the helper at the far end would not break it.
    """

    MAX_REPLY = 64 * 2**20

    def __init__(self, sock, timeout: float | None):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.rfile = sock.makefile("rb")
        self.next_id = 0
        self.broken: str | None = None
        self.blocked = False

    def request(self, req: dict) -> dict:
        if not self.broken:
            self.next_id += 1
            ident = self.next_id
            try:
                return self._exchange(req, ident)
            except TimeoutError:
                self.broken = "timed out: the kernel did not answer in time"
            except OSError as exc:
                self.broken = str(exc) or type(exc).__name__
                self.blocked = not str(exc).startswith("reply too large")
            except ValueError as exc:  # not JSON, or not a reply
                self.broken = str(exc) or type(exc).__name__
                self.blocked = True
        message = no_result(self.broken)
        if self.blocked:
            raise HelperBlocked(message, f"its channel to the grader broke ({self.broken})")
        raise RemoteError("KernelError", message)

    def _exchange(self, req: dict, ident: int) -> dict:
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

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if not self.broken:
                self.sock.sendall(b'{"op": "bye"}\n')
        with contextlib.suppress(OSError):
            self.rfile.close()
            self.sock.close()


class Listener:
    """A Unix socket for one channel to connect to, in a fresh folder under `base` (a
    directory the kernel can reach; None: the system's temporary directory).

    :attr:`kernel_code` is what the kernel runs to connect; :meth:`take` checks that a
    connection is that code's (its first line carries this listener's own token)."""

    def __init__(self, base: str | None = None):
        self.folder = tempfile.mkdtemp(prefix=".autograder-", dir=base)
        self.path = os.path.join(self.folder, "channel")
        self.token = secrets.token_hex(16)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.chmod(self.folder, 0o711)  # the kernel may run as another user
            self.server.bind(self.path)
            os.chmod(self.path, 0o777)
            self.server.listen(4)
        except BaseException:
            self.close()
            raise

    @property
    def kernel_code(self) -> str:
        return (
            f"__import__({KERNEL_MODULE!r}, fromlist=['channel']).channel("
            f"{self.path!r}, {self.token!r})"
        )

    def take(self, conn: socket.socket, timeout: float | None) -> Channel | None:
        """`conn` as a channel if it says this listener's token first; else None (closed)."""
        conn.setblocking(True)
        conn.settimeout(5)
        try:
            hello = json.loads(conn.makefile("rb").readline(200))
        except (OSError, ValueError):
            hello = None
        if isinstance(hello, dict) and hello.get("hello") == self.token:
            return Channel(conn, timeout)
        conn.close()
        return None

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Session:
    """How the trusted side reaches the kernel: over a :class:`Channel` when one is open,
    else `run(code) -> list of outputs` (one kernel execution per request).

    `blocked` collects what was found disabled in the kernel (see :class:`HelperBlocked`)."""

    run: Any
    sources: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    channel: Channel | None = None
    blocked: list[str] = field(default_factory=list)

    def request(self, req: dict) -> dict:
        self.calls += 1
        try:
            if self.channel is not None:
                return self.channel.request(req)
            return self._request_by_execution(req)
        except HelperBlocked as exc:
            if exc.what not in self.blocked:
                self.blocked.append(exc.what)
            raise

    def _request_by_execution(self, req: dict) -> dict:
        code = (
            f"__import__({KERNEL_MODULE!r}, fromlist=['serve']).serve("
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
            if errors:
                error = errors[-1]
                detail = str(error.get("ename", ""))
                evalue = str(error.get("evalue", ""))
                what = f"its requests raised {detail}: {evalue}" if evalue else detail
            else:
                detail = "no reply"
                what = "its requests ran without replying"
            raise HelperBlocked(no_result(detail), what[:300])
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
            "watch": watch_request(watches),
        }
        return self._finish(args, watches, self._session.request(req))

    # The name :func:`autograder.checking.checks.call_each` looks for on the stand-in's type.
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
            "watch": watch_request(watches),
        }
        reply = self._session.request(req)
        replies = reply.get("each") if "raised" not in reply else [reply]
        if (
            not isinstance(replies, list)
            or not all(isinstance(r, dict) for r in replies)
            or len(replies) > len(arg_lists)
            or (len(replies) < len(arg_lists) and not (replies and "raised" in replies[-1]))
        ):
            raise RemoteError("KernelError", no_result("malformed reply"))
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
        apply_module_changes(args, reply.get("modules"))
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


def watch_request(watches: list) -> list:
    """What the kernel is to record while the call runs (see :mod:`autograder.checking.forbid`)."""
    return [[kind, sorted(names)] for kind, names, _ in watches]


def apply_module_changes(args: tuple, changes: Any) -> None:
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
