"""Check that an answer does not use a forbidden function (e.g. cos for d/dx sin).

Three layers, each catching what the others miss:
1. at run time, while the student's function runs: a TorchFunctionMode sees every torch
   call by its name (torch.cos, Tensor.cos, getattr(torch, "co" + "s")), and the numpy and
   math functions are swapped for recording wrappers. Autograd's own backward of sin runs
   in C++ and never reaches Python, so it does not count;
2. names the function's code refers to that are bound to a forbidden object
   (`c = np.cos` made before the check ran);
3. the source text: any use of the name, including `from torch import cos as c`.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import math
import os
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

_LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def _called_by_student(depth: int = 2) -> bool:
    """Whether the nearest caller outside torch/this package is the student's code.

    Libraries call these functions too (matplotlib computes text angles with math.cos):
    only a call whose first caller outside torch is not library code counts.
    """
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_OWN_DIR) or os.sep + "torch" + os.sep in name:
            frame = frame.f_back
            continue
        return not name.startswith(_LIBRARY_DIRS)
    return False


class _Recorder(TorchFunctionMode):
    def __init__(self, names: frozenset[str], hits: list[str]):
        super().__init__()
        self.names = names
        self.hits = hits

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if (name in self.names or name.rstrip("_") in self.names) and _called_by_student():
            self.hits.append(f"torch {name}")
        return func(*args, **(kwargs or {}))


# Recorders active now, as (kind, names, hits). A student's function that runs in another
# process (trusted grading) is asked to record the same there and report its hits.
WATCHES: list[tuple[str, frozenset[str], list[str]]] = []


@contextlib.contextmanager
def watch(kind: str, names: frozenset[str], hits: list[str]) -> Iterator[None]:
    """While active, a call of a function in the student's kernel asks the kernel to
    record `kind` (with `names`) and hands the hits back into `hits`."""
    entry = (kind, names, hits)
    WATCHES.append(entry)
    try:
        yield
    finally:
        WATCHES.remove(entry)


@contextlib.contextmanager
def recording(names: set[str] | frozenset[str]) -> Iterator[list[str]]:
    """Record calls of the named functions in torch, numpy and math while active."""
    names = frozenset(names)
    hits: list[str] = []
    saved = []
    for module in (np, math):
        for name in names:
            original = getattr(module, name, None)
            if original is None:
                continue

            def wrapper(*a, __o=original, __n=f"{module.__name__}.{name}", **k):
                if _called_by_student():
                    hits.append(__n)
                return __o(*a, **k)

            saved.append((module, name, original))
            setattr(module, name, wrapper)
    try:
        with _Recorder(names, hits), watch("names", names, hits):
            yield hits
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _forbidden_objects(names: frozenset[str]) -> dict[int, str]:
    objs: dict[int, str] = {}
    for module, label in (
        (torch, "torch"),
        (torch.Tensor, "Tensor"),
        (np, "numpy"),
        (math, "math"),
    ):
        for name in names:
            for n in (name, name + "_"):
                obj = getattr(module, n, None)
                if obj is not None:
                    objs[id(obj)] = f"{label}.{n}"
    return objs


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def bound_references(fn: Callable, names: set[str]) -> list[str]:
    """Names the function's code uses that are bound to a forbidden function object."""
    if hasattr(fn, "bound_references"):  # a function in the student's kernel
        return fn.bound_references(set(names))
    forbidden = _forbidden_objects(frozenset(names))
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    found = []
    scope = dict(getattr(fn, "__globals__", {}))
    for cellname, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        with contextlib.suppress(ValueError):
            scope[cellname] = cell.cell_contents
    for name in sorted(_code_names(code)):
        obj = scope.get(name)
        if obj is not None and id(obj) in forbidden:
            found.append(f"`{name}` is {forbidden[id(obj)]}")
    return found


def source_mentions(source: str, names: set[str]) -> list[str]:
    """Uses of the names in code (not comments or strings): calls, attributes, imports."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr.rstrip("_") in names:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] in names:
            found.append(f"line {node.lineno}: import {node.name}")
    return found


def function_source(fn: Callable) -> str:
    source = getattr(fn, "source", None)
    if isinstance(source, str):  # a function in the student's kernel: its notebook cells
        return source
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


@contextlib.contextmanager
def autograd_calls() -> Iterator[list[str]]:
    """Record every run of the autograd engine while active.

    `backward`, `torch.autograd.grad`, `torch.autograd.functional.*` and the `torch.func`
    transforms all run the engine through `torch.autograd._engine_run_backward`, however
    they were imported, so one wrapper sees them all.
    """
    import torch.autograd as ta
    import torch.autograd.graph as tag

    hits: list[str] = []
    original = ta._engine_run_backward

    def wrapper(*a, **k):
        hits.append("autograd engine")
        return original(*a, **k)

    ta._engine_run_backward = wrapper
    tag._engine_run_backward = wrapper
    try:
        with watch("autograd", frozenset(), hits):
            yield hits
    finally:
        ta._engine_run_backward = original
        tag._engine_run_backward = original
