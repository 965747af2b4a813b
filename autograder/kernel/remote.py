"""Kernel side of trusted grading: evaluate what the grader asks, hand back plain data.

The grader sends `serve(request)` into the student's kernel: call a named object with
given arguments (or read an attribute, or inspect a function) and display the reply
under a private MIME type. Nothing here decides anything: the grader compares the values
with references it computed itself, in a process that never ran student code. Code in
this kernel can patch this module, but that only changes the values handed back, which
are then judged like any answer.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
import warnings
from typing import Any

from . import wire

# Objects returned by the student's code that are not plain data stay here; the grader
# holds a reference `__autograder_objects__[i]` to them.
_OBJECTS: list[Any] = []

# Calls recorded while a watched function runs (counted by checks such as "one backward
# per sample" at batch sizes in the thousands).
MAX_HITS = 100_000


def user_namespace() -> dict:
    """The namespace of the notebook the kernel runs (its IPython shell's user_ns)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def _resolve(expr: str) -> Any:
    if expr.startswith("__autograder_objects__["):
        return _OBJECTS[int(expr[len("__autograder_objects__[") : -1])]
    head, *attrs = expr.split(".")
    ns = user_namespace()
    if head not in ns:
        raise NameError(f"name '{head}' is not defined")
    obj = ns[head]
    for attr in attrs:
        obj = getattr(obj, attr)
    return obj


def _encode_result(value: Any) -> Any:
    try:
        return wire.encode(value)
    except wire.WireError:
        pass
    if isinstance(value, tuple | list):
        items = [_encode_result(v) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    _OBJECTS.append(value)
    return {"__ref__": f"__autograder_objects__[{len(_OBJECTS) - 1}]"}


def _module_args(args: list) -> list[tuple[int, Any, dict[str, int]]]:
    """The nn.Module arguments of a call, with the identity of each parameter before it."""
    import torch

    return [
        (i, a, {k: id(p) for k, p in a.named_parameters()})
        for i, a in enumerate(args)
        if isinstance(a, torch.nn.Module)
    ]


def _module_changes(modules) -> list[dict]:
    """What the call did to module arguments: parameters replaced, and every value after,
    so the grader can see the same changes on its own copy."""
    out = []
    for index, module, before in modules:
        now = dict(module.named_parameters())
        out.append(
            {
                "index": index,
                "replaced": sorted(
                    k for k, pid in before.items() if k not in now or id(now[k]) != pid
                ),
                "state": {k: wire.encode(p.detach()) for k, p in now.items() if k in before},
            }
        )
    return out


def _where(exc: BaseException) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        name = frame.filename
        if "autograder" not in name and ("ipykernel" in name or name.startswith("<")):
            return f" (in `{frame.name}`, line {frame.lineno}: {frame.line})"
    return ""


def _mro(exc: BaseException) -> list[str]:
    return [c.__name__ for c in type(exc).__mro__]


@contextlib.contextmanager
def _watching(watch: list, target: Any, args: list) -> Any:
    """Record what the grader asked for while the call runs; yields (hits, args to call
    with): a `methods` watch hands the call instrumented copies of the functions given."""
    from ..checking import forbid, methods, params

    hits: list[list[str]] = []
    with contextlib.ExitStack() as stack:
        for kind, names in watch:
            if kind == "autograd":
                hits.append(stack.enter_context(forbid.autograd_calls()))
            elif kind == "apis":
                hits.append(stack.enter_context(params.autograd_apis(target)))
            elif kind == methods.KIND:
                found: list[str] = []
                hits.append(found)
                args = list(
                    stack.enter_context(methods.recording(tuple(args), found, frozenset(names)))
                )
            else:
                hits.append(stack.enter_context(forbid.recording(set(names))))
        yield hits, args


def _reply(message: dict) -> None:
    from IPython.display import display

    display({wire.MIME: message}, raw=True)


def handle(req: Any) -> dict:
    """Carry out one request from the grader; return the reply (plain data)."""
    try:
        if not isinstance(req, dict):
            raise TypeError("a request is a JSON object")
        target = _resolve(req["target"])
        op = req.get("op", "call")
        if op == "each":  # several calls of one target, in order, until one raises
            replies = []
            for one in req.get("calls", []):
                replies.append(handle({**req, "op": "call", **one}))
                if "raised" in replies[-1]:
                    break
            return {"each": replies}
        if op == "getattr":
            return {"ok": _encode_result(target)}
        if op == "inspect":
            from ..checking import forbid

            names = set(req.get("names", []))
            return {"ok": {"bound": forbid.bound_references(target, names)}}
        args = wire.decode(req.get("args", []), refs=_resolve)
        kwargs = wire.decode(req.get("kwargs", {"__dict__": []}), refs=_resolve)
    except Exception as exc:  # a malformed request or a name the student never defined
        return {"raised": {"mro": _mro(exc), "message": str(exc)[:2000], "where": ""}}
    sink = io.StringIO()
    reply: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(sink):
        warnings.simplefilter("always")
        modules = _module_args(args)
        with _watching(req.get("watch", []), target, args) as (hits, called_with):
            try:
                result = target(*called_with, **kwargs)
                reply["ok"] = _encode_result(result)
                reply["modules"] = _module_changes(modules)
            except BaseException as exc:  # the student's error, reported as data
                reply["raised"] = {
                    "mro": _mro(exc),
                    "message": str(exc)[:2000],
                    "where": _where(exc),
                }
        reply["hits"] = [list(h)[:MAX_HITS] for h in hits]
    reply["warnings"] = [str(w.message)[:500] for w in caught][:20]
    return reply


def serve(request_json: str) -> None:
    """Carry out one request from the grader and display the reply."""
    try:
        req = json.loads(request_json)
    except ValueError as exc:
        _reply({"raised": {"mro": _mro(exc), "message": str(exc)[:2000], "where": ""}})
        return
    _reply(handle(req))


def channel(path: str, token: str) -> None:
    """Serve the grader's requests over the Unix socket at `path` until it says "bye".

    The same requests and replies as :func:`serve`, one JSON line each, without a round
    trip through the kernel's execute machinery per request (which costs ~10 ms). Each
    reply echoes its request's ``id``. An interrupt (the grader's CPU limit) can only
    arrive while the student's function runs: it is that call's result, not the end of
    the channel. What the student's code prints meanwhile goes nowhere.
    """
    import signal
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(json.dumps({"hello": token}).encode() + b"\n")
    rfile = sock.makefile("rb")
    quiet = contextlib.redirect_stdout(io.StringIO())
    interrupt = {signal.SIGINT}
    figures = _open_figures()
    try:
        with quiet:
            while True:
                signal.pthread_sigmask(signal.SIG_BLOCK, interrupt)
                line = rfile.readline()
                if not line:
                    return
                try:
                    req = json.loads(line)
                except ValueError:
                    req = None
                if isinstance(req, dict) and req.get("op") == "bye":
                    return
                signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupt)
                try:
                    reply = handle(req)
                except KeyboardInterrupt as exc:  # landed outside the student's call
                    reply = {"raised": {"mro": _mro(exc), "message": "", "where": ""}}
                signal.pthread_sigmask(signal.SIG_BLOCK, interrupt)
                if signal.SIGINT in signal.sigpending():
                    signal.sigtimedwait(interrupt, 0)  # late: it was meant for this call
                reply["id"] = req.get("id") if isinstance(req, dict) else None
                data = json.dumps(reply).encode() + b"\n"
                sock.sendall(data)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupt)
        rfile.close()
        sock.close()
        _close_figures_since(figures)


def _open_figures() -> set[int] | None:
    """pyplot's open figure numbers (None if pyplot is not in use)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    return None if pyplot is None else set(pyplot.get_fignums())


def _close_figures_since(before: set[int] | None) -> None:
    """Close the figures the grader's calls made (a plotting answer, checked from its
    data): left open, the inline backend would render each one as this execution ends,
    for output nobody reads (a tenth of a second a figure)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    with contextlib.suppress(Exception):
        for number in set(pyplot.get_fignums()) - (before or set()):
            pyplot.close(number)
