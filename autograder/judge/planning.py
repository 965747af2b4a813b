"""Reading a test cell: which checks it calls, and with what.

A test cell the grader re-runs is made of calls `alias.check_name(arg, ..., key=const)`
of the course's check modules, imported in locked cells (:func:`check_modules`).
:func:`parse` reads such a cell without touching the kernel; :func:`plan` then fetches
the arguments that name objects in the kernel (:func:`fetch`).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
from dataclasses import dataclass
from typing import Any

from nbformat import NotebookNode

from ..kernel import wire
from .transport import RemoteError, RemoteObject, Session


def python_only(source: str) -> str:
    """`source` with IPython's magics and shell escapes blanked (for `ast.parse`)."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


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
            tree = ast.parse(python_only(cell.source))
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


@dataclass
class PlannedCall:
    function: Any
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class Name:
    """An argument that names an object in the kernel (fetched when the checks run)."""

    name: str


def parse(source: str, modules: dict[str, Any]) -> list[PlannedCall] | None:
    """The check calls of a test cell, arguments naming kernel objects left as
    :class:`Name`; None if the cell holds anything else.

    Accepted statements: `alias.check_name(arg, ..., key=const)` where arguments are
    names of objects in the kernel or literals.
    """
    try:
        tree = ast.parse(python_only(source))
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
            value = _argument(a)
            if value is _NOT_ALLOWED:
                return None
            args.append(value)
        kwargs = {}
        for kw in call.keywords:
            value = _argument(kw.value)
            if kw.arg is None or value is _NOT_ALLOWED:
                return None
            kwargs[kw.arg] = value
        calls.append(PlannedCall(fn, args, kwargs))
    return calls


def plan(source: str, modules: dict[str, Any], session: Session) -> list[PlannedCall] | None:
    """:func:`parse`, with the arguments that name kernel objects fetched through
    `session` (:func:`fetch`)."""
    calls = parse(source, modules)
    return None if calls is None else resolve(calls, session)


def resolve(calls: list[PlannedCall], session: Session) -> list[PlannedCall]:
    """`calls` with every :class:`Name` argument fetched from the kernel."""

    def value(arg: Any) -> Any:
        return fetch(session, arg.name) if isinstance(arg, Name) else arg

    return [
        PlannedCall(
            pc.function,
            [value(a) for a in pc.args],
            {k: value(v) for k, v in pc.kwargs.items()},
        )
        for pc in calls
    ]


_NOT_ALLOWED = object()


def _argument(node: ast.AST) -> Any:
    if isinstance(node, ast.Name):
        return Name(node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _NOT_ALLOWED


def fetch(session: Session, name: str) -> Any:
    """A name in the kernel: its value if it is plain data (a tensor, a small module, …),
    else a stand-in that reaches it there (the student's functions). A kernel that gives
    no answer also leaves a stand-in, whose calls then fail the same way."""
    try:
        reply = session.request({"op": "getattr", "target": name})
    except (wire.WireError, RemoteError):
        return RemoteObject(session, name)
    if "raised" in reply or not isinstance(reply.get("ok"), dict | list | str | int | float):
        return RemoteObject(session, name)
    data = reply["ok"]
    if isinstance(data, dict) and "__ref__" in data:
        return RemoteObject(session, name)
    try:
        return wire.decode(data, refs=lambda e: RemoteObject(session, e))
    except Exception:  # not well-formed, or a value that cannot be rebuilt here
        return RemoteObject(session, name)


def defined_sources(nb: NotebookNode, upto: int | None = None) -> dict[str, str]:
    """name -> source of the code cell(s) that define it at top level (for static checks),
    from the cells before index `upto` (all cells if None)."""
    out: dict[str, str] = {}
    for cell in nb.cells[:upto]:
        if cell.cell_type != "code":
            continue
        for name in _top_level_names(cell.source):
            out[name] = out.get(name, "") + "\n" + cell.source
    return out


@functools.lru_cache(maxsize=4096)
def _top_level_names(source: str) -> tuple[str, ...]:
    """The names a cell's source defines at top level (functions, classes, assignments).
    Cached by source: every test cell of a notebook asks again about the cells before it,
    and a class's notebooks share most of their cells."""
    try:
        tree = ast.parse(python_only(source))
    except SyntaxError:
        return ()
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return tuple(names)
