"""Which differentiation mechanism an answer used, recorded while it runs.

A value check cannot tell a gradient computed with autograd from the same numbers
reached by a finite difference or by the closed-form formula. So while a student's
function runs, this module records what it did:

- ``reverse``: the autograd engine ran (``backward``, ``torch.autograd.grad``,
  ``torch.autograd.functional.*`` and the ``torch.func`` transforms grad, vjp, jacrev all
  run it, however they were imported);
- ``forward``: a forward-mode level was entered (dual numbers of
  ``torch.autograd.forward_ad``, ``torch.func.jvp``, ``jacfwd``, forward-mode
  ``autograd.functional.jacobian``);
- ``numerical``: a function the check handed to the answer was evaluated at inputs that
  are not among the values it was given (numerical differencing);
- the caller's tensors: whether the call changed their values, ``requires_grad`` or
  ``.grad``.
- where the returned value came from, for a rule that requires a mechanism: whether its
  tensors derive from what the engine produced or were computed from the inputs alone
  (a dummy backward beside the formula); see :data:`DERIVED`.

A question declares a :class:`Rule` (what it requires and what it forbids) and
:func:`enforce` turns the record into a failed check with its own diagnosis. The record
is kept where the function runs: in the notebook's kernel for a visible test, and there
too when the grader re-runs a hidden test (it asks the kernel to record, as for
:mod:`.forbid`'s watches).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import sysconfig
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .feedback import CheckFailed, Finding

REVERSE = "reverse"
FORWARD = "forward"
NUMERICAL = "numerical"
EVALUATED = "evaluated"  # the given function, at the given inputs
INPUT = "input"  # "input:<argument>:<what changed>"

KIND = "methods"  # the watch kind, as the grader names it to the kernel

_NAMES = {
    REVERSE: "reverse-mode autograd (backward, torch.autograd.grad, torch.func.grad/vjp/jacrev)",
    FORWARD: "forward-mode AD (dual numbers, torch.func.jvp, jacfwd)",
    NUMERICAL: "numerical differencing (evaluating the function at shifted inputs)",
}


@dataclass(frozen=True)
class Rule:
    """What a question asks for: at least one mechanism of `require` (if any), none of
    `forbid`. `asks` says it in the question's words ("autograd", "backward", "a formula")."""

    require: frozenset[str] = frozenset()
    forbid: frozenset[str] = frozenset()
    asks: str = ""
    seeded: bool = False  # a vector-Jacobian product: note what seeds each reverse pass
    # a gradient through a torch.autograd.Function the answer defines: a reverse pass must
    # run through one (its backward), not through torch's own derivatives of a formula
    through_function: bool = False
    # follow the returned values back to the engine's output (:data:`DERIVED`) although
    # nothing is required during the call: for a check that judges what it requires from
    # the record after the values (a record without it shows no :data:`UNDERIVED`)
    follow: bool = False


AUTOGRAD = Rule(frozenset({REVERSE, FORWARD}), frozenset({NUMERICAL}), "autograd")
REVERSE_MODE = Rule(frozenset({REVERSE}), frozenset({NUMERICAL}), "reverse-mode autograd")
BY_FORMULA = Rule(frozenset(), frozenset({REVERSE, FORWARD, NUMERICAL}), "a formula, by hand")
NO_AUTOGRAD = Rule(frozenset(), frozenset({REVERSE, FORWARD}), "no autograd")
ANY = Rule()


def options_for(rule: Rule | None, args: tuple = ()) -> frozenset[str]:
    """What must be recorded to judge `rule` on a call with `args`: the answer's own
    arithmetic is watched for shifted inputs only where numerical differencing is
    forbidden and no function is handed over (a difference of a given function shows in
    where that function is evaluated; the watch costs a test per torch op); what seeds
    each reverse pass only where the rule asks for a vector-Jacobian product (reading the
    graph costs about a millisecond per pass); where the returned values came from only
    where the rule requires a mechanism (:data:`DERIVED`)."""
    if rule is None:
        return frozenset()
    options = {SEEDS} if rule.seeded else set()
    if rule.through_function:
        options.add(FUNCTIONS)
    if rule.require or rule.follow:
        options.add(DERIVED)
    if NUMERICAL in rule.forbid and not any(
        isinstance(a, types.FunctionType | types.BuiltinFunctionType) for a in args
    ):
        options.add(SHIFTS)
    return frozenset(options)


# --- recording --------------------------------------------------------------------------

_ACTIVE: list[list[str]] = []  # the hit lists of the recordings now running
# id(hits) -> (argument index, values) of the tensors that recording's call was given
_GIVEN: dict[int, list[tuple[int, torch.Tensor]]] = {}

# What seeded a reverse pass, noted after each REVERSE hit: "seed:<i>" when the pass pushed
# back the values of argument i (as the gradient it started from, or as a tensor saved in
# the graph it ran through: (y * v).sum().backward()); "seed:ones" when it started from
# ones and met none of the arguments' values; "seed:other" otherwise.
SEED = "seed"
SEEDS = "seeds"  # the watch option that turns this on
# "function:<node>" for each node of a torch.autograd.Function a reverse pass ran through
FUNCTION = "function"
FUNCTIONS = "functions"  # the watch option that turns this on
_FUNCTION_NODES: set[int] = set()  # id(hits) of the recordings that note them
_MAX_GRAPH_NODES = 500

# question -> (function, warnings caught, hits) of its last call of the student's code, so
# that a failed comparison can name a cause only with evidence (see diagnose).
LAST_CALL: dict[str, tuple[Any, list, list[str]]] = {}
# question -> how many calls of the student's code this run of its check has made so far
CALLS: dict[str, int] = {}


def _note(hit: str) -> None:
    for hits in _ACTIVE:
        hits.append(hit)


def _noting(hit: str, original: Callable) -> Callable:
    """`original`, noting `hit` in every running recording each time it is called."""

    @functools.wraps(original)
    def noted(*args: Any, **kwargs: Any) -> Any:
        _note(hit)
        return original(*args, **kwargs)

    return noted


def _seeding(engine: Callable) -> Callable:
    """The engine's entry point, noting REVERSE and what seeded the pass (:data:`SEED`)."""

    @functools.wraps(engine)
    def run(t_outputs: Any, *args: Any, **kwargs: Any) -> Any:
        for hits in _ACTIVE:
            hits.append(REVERSE)
            if id(hits) in _FUNCTION_NODES:
                with contextlib.suppress(Exception):
                    hits.extend(_function_nodes(t_outputs))
            given = _GIVEN.get(id(hits))
            if given:
                try:
                    seeds = args[0] if args else kwargs.get("grad_tensors", ())
                    hits.extend(_seed(t_outputs, seeds, given))
                except Exception:  # recording must never change what the answer computes
                    pass
        out = engine(t_outputs, *args, **kwargs)
        for tracker in _TRACKERS:
            tracker.engine_ran(out)
        return out

    return run


def _same(values: torch.Tensor, want: torch.Tensor) -> bool:
    """Equal values, in the precision of float32 at least (a cast is not a change)."""
    return values.shape == want.shape and bool(
        torch.allclose(values, want, rtol=1e-6, atol=1e-12, equal_nan=True)
    )


def _seed(t_outputs: Any, seeds: Any, given: list[tuple[int, torch.Tensor]]) -> list[str]:
    """The :data:`SEED` hits for one reverse pass from `t_outputs` seeded with `seeds`."""
    parts = [_plain(t) for t in seeds if isinstance(t, torch.Tensor)]
    parts = [p.flatten() for p in parts if p is not None]
    flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    ones = bool(flat.numel()) and bool((flat == 1).all())
    out = [f"{SEED}:{i}" for i, values in given if values.numel() and _same(flat, values)]
    if len(out) < len(given):
        # Seeded with ones where an argument is all ones (y.sum().backward() for v = 1):
        # the same pass, whichever way it was written.
        if ones:
            out += [f"{SEED}:{i}" for i, values in given if values.numel() and (values == 1).all()]
        # The argument may have entered the graph: (y * v).sum().backward().
        saved = _saved_values(t_outputs)
        out += [
            f"{SEED}:{i}"
            for i, values in given
            if values.numel() and any(_same(s, values) for s in saved)
        ]
        out = list(dict.fromkeys(out))
    if ones:
        out.append(f"{SEED}:ones")
    return out or [f"{SEED}:other"]


def _graph_nodes(t_outputs: Any) -> list[Any]:
    """The nodes of the graph behind `t_outputs` (at most :data:`_MAX_GRAPH_NODES`)."""
    roots = [t.grad_fn for t in t_outputs if isinstance(t, torch.Tensor) and t.grad_fn]
    seen: dict[int, Any] = {}
    while roots and len(seen) < _MAX_GRAPH_NODES:
        node = roots.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        roots.extend(fn for fn, _ in getattr(node, "next_functions", ()) if fn is not None)
    return list(seen.values())


def _function_nodes(t_outputs: Any) -> list[str]:
    """A :data:`FUNCTION` hit for each torch.autograd.Function node behind `t_outputs`."""
    from torch.autograd.function import BackwardCFunction

    return sorted(
        {
            f"{FUNCTION}:{type(node).__name__}"
            for node in _graph_nodes(t_outputs)
            if isinstance(node, BackwardCFunction)
        }
    )


def _saved_values(t_outputs: Any) -> list[torch.Tensor]:
    """The tensors saved in the graph behind `t_outputs` (flattened float64 values)."""
    out: list[torch.Tensor] = []
    for node in _graph_nodes(t_outputs):
        for name in dir(node):
            if name.startswith("_saved_"):
                try:
                    value = getattr(node, name)
                except Exception:
                    continue
                if isinstance(value, torch.Tensor):
                    p = _plain(value)
                    if p is not None:
                        out.append(p.flatten())
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    out.append(torch.tensor([float(value)], dtype=torch.float64))
    return out


def seeded(hits: list[str], index: int) -> bool | None:
    """Whether a reverse pass of the record pushed back argument `index`'s values; None
    when no pass's seed was recorded."""
    seeds = [h for h in hits if h.startswith(SEED + ":")]
    if not seeds:
        return None
    return f"{SEED}:{index}" in seeds


@contextlib.contextmanager
def _hooks() -> Iterator[None]:
    """Patch the engine's one entry point and forward AD's level entry for the duration."""
    import torch._functorch.predispatch as predispatch
    import torch.autograd as ta
    import torch.autograd.graph as tag

    engine = tag._engine_run_backward
    dual = predispatch._enter_dual_level
    hooked_engine = _seeding(engine)
    ta._engine_run_backward = hooked_engine
    tag._engine_run_backward = hooked_engine
    predispatch._enter_dual_level = _noting(FORWARD, dual)
    try:
        yield
    finally:
        ta._engine_run_backward = engine
        tag._engine_run_backward = engine
        predispatch._enter_dual_level = dual


def _plain(t: torch.Tensor) -> torch.Tensor | None:
    """The values of `t` as an ordinary float64 tensor (functorch wrappers and dual
    numbers unwrapped), or None when they cannot be read."""
    try:
        from torch._C import _functorch

        for _ in range(16):
            if not _functorch.is_functorch_wrapped_tensor(t):
                break
            t = _functorch.get_unwrapped(t)
        with torch.no_grad():
            if t.is_complex() or t.dtype == torch.bool:
                return None
            return torch.autograd.forward_ad.unpack_dual(t).primal.detach().to(torch.float64)
    except Exception:
        return None


def _values(args: tuple) -> list[torch.Tensor]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            p = _plain(a)
            if p is not None:
                out.append(p.flatten())
        elif isinstance(a, int | float) and not isinstance(a, bool):
            out.append(torch.tensor([float(a)], dtype=torch.float64))
    return out


def _outside(given: list[torch.Tensor], point: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether `point` holds a value that is none of the given values (compared in the
    dtype the function was evaluated in, so a cast to float32 is not a shift)."""
    if not given or point.numel() == 0:
        return False
    pool = torch.cat([g.to(dtype).to(torch.float64) for g in given])
    pool = pool[torch.isfinite(pool)]
    pt = point.to(dtype).to(torch.float64)
    pt = pt[torch.isfinite(pt)]
    return bool((~torch.isin(pt, pool)).any())


def _instrumented(fn: Callable, given: list[torch.Tensor], hits: list[str]) -> Callable:
    @functools.wraps(fn)
    def evaluated(*args: Any, **kwargs: Any) -> Any:
        shifted = False
        try:
            for a in args:
                if isinstance(a, torch.Tensor) and a.is_complex():  # a complex step
                    p = a.detach().to(torch.complex128)
                    shifted |= bool((p.imag != 0).any()) or _outside(given, p.real, torch.float64)
                elif isinstance(a, torch.Tensor) and a.is_floating_point():
                    p = _plain(a)
                    if p is not None and _outside(given, p, a.dtype):
                        shifted = True
                elif isinstance(a, float):
                    shifted |= _outside(
                        given, torch.tensor([a], dtype=torch.float64), torch.float64
                    )
        except Exception:  # recording must never change what the answer computes
            shifted = False
        hits.append(NUMERICAL if shifted else EVALUATED)
        return fn(*args, **kwargs)

    return evaluated


# Shifts seen in the answer's own arithmetic: a copy of an input moved by a small step
# (x + h, x - h, x + h·eᵢ, x + i·h) is how a numerical difference starts.
SHIFTS = "shifts"  # the watch option that turns this on (its cost is one test per torch op)
_MAX_SHIFT = 1e-2  # relative to the input's scale: larger moves are not a difference step
_MIN_SHIFT = 1e-10  # smaller ones are guards against division by zero (x + 1e-12)
_MAX_TESTS = 20_000


_ADD = {"add", "__add__", "__radd__", "add_", "__iadd__"}
_ADD_SUB = {
    "add", "sub", "subtract", "__add__", "__radd__", "__sub__", "__rsub__",
    "add_", "sub_", "__iadd__", "__isub__",
}  # fmt: skip


class _ShiftWatch(TorchFunctionMode):
    """Notes NUMERICAL when an addition or subtraction moves values of an input by a
    small step: x + h, x − h, x + h·eᵢ, x[i] += h, x + i·h (a complex step)."""

    def __init__(self, given: list[torch.Tensor], hits: list[str]):
        super().__init__()
        values = torch.cat(given) if given else torch.zeros(0, dtype=torch.float64)
        self.pool = values[torch.isfinite(values)]
        self.scale = 1.0 + (float(self.pool.abs().max()) if self.pool.numel() else 0.0)
        self._sorted: dict[torch.dtype, torch.Tensor] = {}
        self.hits = hits
        self.tests = 0
        self.found = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        watched = []
        if name in _ADD_SUB and not self.found and self.tests < _MAX_TESTS:
            try:
                with _ModeOff():  # operands' values before: an in-place op changes them
                    # x + h, h + x, x - h: the input is either operand of an addition,
                    # the first of a subtraction (in `h - x` the result is not near x),
                    # and the other operand must look like a step: a number, or a
                    # constant tensor whose non-zero entries all have one size (h, h·eᵢ).
                    if len(args) < 2 or name == "__rsub__":  # other - self: self subtracted
                        pairs: tuple = ()
                    elif name in _ADD:
                        pairs = ((0, 1), (1, 0))
                    else:
                        pairs = ((0, 1),)
                    operands = [args[i] for i, j in pairs if self._step_like(args[j])]
                    watched = [
                        v
                        for a in operands
                        if isinstance(a, torch.Tensor)
                        for v in [self._input_values(a)]
                        if v is not None
                    ]
            except Exception:  # recording must never change what the answer computes
                watched = []
        out = func(*args, **(kwargs or {}))
        if name in _EXPORTS and not self.found:
            return self._exported(out)
        if watched and isinstance(out, torch.Tensor):
            try:
                with _ModeOff():
                    if any(self._moved(before, out) for before in watched):
                        self.found = True
                        self.hits.append(NUMERICAL)
            except Exception:
                pass
        return out

    def _exported(self, out: Any) -> Any:
        """Values leaving torch (x.numpy(), np.asarray(x), np.array(x), x.item(), float(x),
        x.tolist(), np.array(x.tolist())),
        watched the same way when they are the inputs' values: a difference written in
        numpy or with Python floats is still a difference."""
        try:
            with _ModeOff():
                if isinstance(out, np.ndarray) and out.dtype.kind in "fc":
                    if out.size and self._all_inputs(
                        torch.from_numpy(_NP["ascontiguousarray"](out.real, dtype=np.float64))
                        .reshape(-1)
                        .clone(),
                        _NUMPY_DTYPES.get(out.dtype, torch.float64),
                    ):
                        watched = out.view(_WatchedArray)
                        watched._watch = self
                        return watched
                elif isinstance(out, float) and self._all_inputs(
                    torch.tensor([out], dtype=torch.float64), torch.float64
                ):
                    return _WatchedFloat(out, self)
                elif isinstance(out, list):
                    return [self._exported(v) for v in out]
        except Exception:  # recording must never change what the answer computes
            pass
        return out

    def _shifted(self, before: float | np.ndarray, after: Any) -> None:
        """Note NUMERICAL if `after` moves the exported input values `before` by a step."""
        try:
            with _ModeOff():
                b, a = _NP["asarray"](before), _NP["asarray"](after)
                kind = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
                b = torch.as_tensor(b.astype(kind)).reshape(-1)
                a = torch.as_tensor(a.astype(kind)).reshape(-1)
                if a.shape == b.shape and self._moved(b, a):
                    self.found = True
                    self.hits.append(NUMERICAL)
        except Exception:
            pass

    def _step_like_number(self, value: Any) -> bool:
        """A plain number (Python or numpy scalar) small enough to be a difference step, or
        a numpy array that :meth:`_step_like` would take for one (h·eᵢ)."""
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        elif isinstance(value, np.ndarray) and value.dtype.kind in "fc":  # h·eᵢ
            return self._step_like(torch.from_numpy(_NP["array"](value, dtype=value.dtype)))
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float | complex):
            return False
        return 0 < abs(value) <= _MAX_SHIFT * self.scale

    def _step_like(self, value) -> bool:
        """A number, or a constant tensor whose non-zero entries share one size, no larger
        than a difference step: what x is moved by in x + h or x + h·eᵢ."""
        limit = _MAX_SHIFT * self.scale
        if isinstance(value, bool):
            return False
        if isinstance(value, int | float | complex):
            return 0 < abs(value) <= limit
        if not isinstance(value, torch.Tensor) or value.requires_grad:
            return False
        plain = _plain_any(value)
        if plain is None or plain.numel() == 0:
            return False
        sizes = plain.abs().reshape(-1)
        sizes = sizes[sizes != 0]
        if sizes.numel() == 0:
            return False
        top = float(sizes.max())
        return top <= limit and float(sizes.min()) >= top * (1 - 1e-9)

    def _input_values(self, operand: torch.Tensor) -> torch.Tensor | None:
        """The operand's values if they are all values of the inputs, else None."""
        if self.pool.numel() == 0 or operand.numel() == 0 or operand.numel() > 100_000:
            return None
        self.tests += 1
        before = _plain_any(operand)
        if before is None:
            return None
        if before.is_complex():
            if bool((before.imag != 0).any()):
                return None
            real = before.real
        else:
            real = before
        dtype = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(
            operand.dtype, operand.dtype
        )
        if not self._all_inputs(real.reshape(-1), dtype):
            return None
        return before.clone()

    def _all_inputs(self, values: torch.Tensor, dtype: torch.dtype) -> bool:
        """Whether every value is one of the inputs' (rounded to `dtype`)."""
        pool = self._sorted.get(dtype)
        if pool is None:
            rounded = self.pool if dtype == torch.float64 else self.pool.to(dtype).double()
            pool = self._sorted[dtype] = torch.unique(rounded)  # sorted
        values = values.contiguous()
        at = torch.searchsorted(pool, values).clamp(max=pool.numel() - 1)
        return bool((pool[at] == values).all())

    def _moved(self, before: torch.Tensor, out: torch.Tensor) -> bool:
        """Whether `out` moves the input values `before` by a small step."""
        after = _plain_any(out)
        if after is None:
            return False
        try:
            step = (after - before).abs()
        except RuntimeError:  # shapes that do not broadcast: not a shift
            return False
        step = step[torch.isfinite(step)]
        if step.numel() == 0:
            return False
        top = float(step.max())
        if after.is_complex():  # a complex step moves the values off the real axis only
            return 0 < top <= _MAX_SHIFT * self.scale
        return _MIN_SHIFT * self.scale < top <= _MAX_SHIFT * self.scale


_EXPORTS = {"numpy", "__array__", "item", "__float__", "tolist"}
_NUMPY_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}

# numpy's conversions, as numpy defines them: np.asarray(x) and np.array(x) turn the watched
# array x.__array__() gives back into a plain ndarray, so while the shift watch runs they
# are replaced (:func:`_numpy_conversions`); the watch's own code calls these originals.
_NP_CONVERSIONS = (
    "asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray", "copy",
)  # fmt: skip
_NP: dict[str, Callable] = {name: getattr(np, name) for name in _NP_CONVERSIONS}


def _carries_inputs(obj: Any, budget: list[int]) -> bool:
    """Whether `obj` may hold the inputs' values as the watch follows them out of torch: a
    tensor, a watched array or number, or a list or tuple holding one (a plain ndarray or
    a plain number does not: numpy's own calls pass through untouched)."""
    if isinstance(obj, torch.Tensor | _WatchedArray | _WatchedFloat):
        return True
    if isinstance(obj, list | tuple):
        for item in obj:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            if _carries_inputs(item, budget):
                return True
    return False


def _converting(original: Callable, watch: _ShiftWatch) -> Callable:
    """numpy's `original` conversion, giving the inputs' values back as a watched array
    (as x.numpy() does) when the answer's code converts a tensor or values the watch
    follows."""

    @functools.wraps(original)
    def convert(obj: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(obj, *args, **kwargs)
        if watch.found or type(out) is not np.ndarray:
            return out
        try:
            # the answer's own conversions only: a library's (matplotlib plotting x) keep
            # numpy's plain arrays
            if _answer_code(sys._getframe(1).f_code.co_filename) and _carries_inputs(obj, [1000]):
                return watch._exported(out)
        except Exception:  # recording must never change what the answer computes
            pass
        return out

    return convert


@contextlib.contextmanager
def _numpy_conversions(watch: _ShiftWatch) -> Iterator[None]:
    """numpy's conversions (np.asarray, np.array, ...) replaced for the duration by ones
    that keep watching an input's values (:func:`_converting`), restored on the way out
    however the call ends. A name bound before the call (from numpy import asarray) keeps
    the original and is not followed."""
    for name, original in _NP.items():
        setattr(np, name, _converting(original, watch))
    try:
        yield
    finally:
        for name, original in _NP.items():
            setattr(np, name, original)


class _WatchedArray(np.ndarray):
    """An input's values exported to numpy: an addition or subtraction of a step is noted
    (then the result is a plain array again)."""

    _watch: _ShiftWatch | None = None

    def __array_finalize__(self, obj):
        self._watch = getattr(obj, "_watch", None)

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(out, np.float64) and self._watch is not None:  # x[i] + h
            return _WatchedFloat(float(out), self._watch)
        return out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        watch = self._watch
        plain = [_NP["asarray"](i) if isinstance(i, _WatchedArray) else i for i in inputs]
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(
                _NP["asarray"](o) if isinstance(o, _WatchedArray) else o for o in outs
            )
        before = None
        if watch is not None and not watch.found and method == "__call__" and len(plain) == 2:
            if ufunc is np.add:
                candidates = [i for i in (0, 1) if isinstance(inputs[i], _WatchedArray)]
            elif ufunc is np.subtract:
                candidates = [0] if isinstance(inputs[0], _WatchedArray) else []
            else:
                candidates = []
            for i in candidates:
                if watch._step_like_number(plain[1 - i]):
                    before = _NP["array"](plain[i], copy=True)
                    break
        result = getattr(ufunc, method)(*plain, **kwargs)
        if before is not None:
            watch._shifted(before, result)
        return result


class _WatchedFloat(float):
    """An input's value exported as a Python float: x + h and x - h are noted."""

    def __new__(cls, value: float, watch: _ShiftWatch):
        self = super().__new__(cls, value)
        self._watch = watch
        return self

    def _step(self, other: Any, result: Any) -> Any:
        watch = self._watch
        if not watch.found and watch._step_like_number(other):
            watch._shifted(float(self), result)
        return result

    def __add__(self, other):
        return self._step(other, float(self) + other)

    def __radd__(self, other):
        return self._step(other, other + float(self))

    def __sub__(self, other):
        return self._step(other, float(self) - other)


class _ModeOff:
    """Run the watch's own arithmetic outside every torch function mode."""

    def __enter__(self):
        self._guard = torch._C.DisableTorchFunction()
        self._guard.__enter__()

    def __exit__(self, *exc):
        return self._guard.__exit__(*exc)


def _plain_any(t: torch.Tensor) -> torch.Tensor | None:
    """Like :func:`_plain`, keeping complex values (a complex step is a shift too)."""
    if t.is_complex():
        try:
            return t.detach().to(torch.complex128)
        except Exception:
            return None
    return _plain(t)


def instrument(args: tuple, hits: list[str]) -> tuple:
    """`args` with each plain function replaced by one that records where it is evaluated.

    Modules, classes and the student's objects are left alone: only the functions a check
    hands over (module-level functions and torch's builtins) are watched.
    """
    if not any(isinstance(a, types.FunctionType | types.BuiltinFunctionType) for a in args):
        return args
    given = _values(args)
    return tuple(
        _instrumented(a, given, hits)
        if isinstance(a, types.FunctionType | types.BuiltinFunctionType)
        else a
        for a in args
    )


def _state(t: torch.Tensor) -> tuple:
    with torch.no_grad():
        grad = None if t.grad is None else t.grad.detach().clone()
        return (t.detach().clone(), t.requires_grad, grad)


def _snapshot(args: tuple) -> list[tuple[int, Any, Any]]:
    out: list[tuple[int, Any, Any]] = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            out.append((i, a, _state(a)))
        elif isinstance(a, torch.nn.Module):
            out.append((i, a, {k: (p, _state(p)) for k, p in a.named_parameters()}))
    return out


def _module_changes(i: int, module: torch.nn.Module, before: dict) -> list[str]:
    out = []
    for k, (p, (_, requires_grad, grad)) in before.items():
        if p.requires_grad != requires_grad:
            out.append(f"{INPUT}:{i}:module_requires_grad:{k}")
        if (p.grad is None) != (grad is None) or (
            p.grad is not None and grad is not None and not torch.equal(p.grad, grad)
        ):
            out.append(f"{INPUT}:{i}:module_grad:{k}")
    return out


def _changes(snapshot: list) -> list[str]:
    out = []
    for i, tensor, state in snapshot:
        if isinstance(tensor, torch.nn.Module):
            out += _module_changes(i, tensor, state)
            continue
        values, requires_grad, grad = state
        with torch.no_grad():
            now = tensor.detach()
            if now.shape != values.shape or not torch.equal(
                torch.nan_to_num(now), torch.nan_to_num(values)
            ):
                out.append(f"{INPUT}:{i}:values")
            if tensor.requires_grad != requires_grad:
                out.append(f"{INPUT}:{i}:requires_grad")
            after = tensor.grad
            if (after is None) != (grad is None) or (
                after is not None and grad is not None and not torch.equal(after, grad)
            ):
                out.append(f"{INPUT}:{i}:grad")
    return out


@contextlib.contextmanager
def recording(args: tuple, hits: list[str], options: frozenset[str] = frozenset()):
    """Record into `hits` what a call with `args` does; yields the args to call with.
    With the option :data:`SHIFTS`, the answer's own arithmetic is watched for shifted
    copies of its inputs too; with :data:`DERIVED`, whether the value it returned came
    from what the engine produced (:data:`UNDERIVED` when provably not)."""
    snapshot = _snapshot(args)
    _ACTIVE.append(hits)
    if FUNCTIONS in options:
        _FUNCTION_NODES.add(id(hits))
    if SEEDS in options:
        _GIVEN[id(hits)] = [
            (i, p.flatten())
            for i, a in enumerate(args)
            if isinstance(a, torch.Tensor)
            for p in [_plain(a)]
            if p is not None
        ]
    tracker = _Derivation(args) if DERIVED in options else None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_hooks())
            if tracker is not None:
                stack.enter_context(tracker.following())
            if SHIFTS in options:
                shift_watch = _ShiftWatch(_values(args), hits)
                stack.enter_context(_numpy_conversions(shift_watch))
                stack.enter_context(shift_watch)
            if tracker is not None:
                stack.enter_context(tracker.catcher)
            yield instrument(args, hits)
    finally:
        _ACTIVE.remove(hits)
        if tracker is not None:
            with contextlib.suppress(Exception):
                if tracker.verdict() is False:
                    hits.append(UNDERIVED)
        _GIVEN.pop(id(hits), None)
        _FUNCTION_NODES.discard(id(hits))
        with contextlib.suppress(Exception):
            hits.extend(_changes(snapshot))


# --- where the returned value came from ---------------------------------------------------
#
# A rule that requires a mechanism is met once the engine ran; an answer that runs a dummy
# backward and returns the closed-form formula meets it too. So while such a call runs, the
# tensors it makes are followed (:class:`_Derivation`): *derived* are what the engine
# produced and everything computed from it; *plain* are the arguments (and the parameters of
# a model given) and what torch operations make from plain tensors alone. A returned value
# is judged not from autograd (:data:`UNDERIVED`) only when every tensor it holds is
# provably plain. Leniency wherever the derivation is not followed:
#
# - a tensor no followed operation made (torch.func transforms and vmap hand back tensors
#   made in C, torch.from_numpy, nn.Parameter, a gradient the engine wrote into .grad,
#   tensors from outside the call) counts as derived;
# - once a derived tensor's values leave torch (.item(), .tolist(), .numpy(), np.asarray,
#   float()), nothing is judged: values rebuilt from numbers are not followed;
# - a plain tensor changed in place by an operation the watch did not see, once the engine
#   has run (an accumulation into an existing .grad, a fused optimizer step), counts as
#   derived;
# - a result holding anything but tensors and integers (a float, an array, a figure) and a
#   function whose return cannot be caught (a builtin, a running profiler) are not judged.
DERIVED = "derived"  # the watch option that turns this on
UNDERIVED = "result:underived"  # the hit: the returned tensors are all plain
_PLAIN, _DERIVED_, _FOREIGN = 0, 1, 2
_TRACKERS: list[_Derivation] = []
_MAX_FOLLOWED = 200_000  # operations; past that, nothing is judged
# values leaving torch: after a derived tensor's, the call is not judged
_LEAVING = {
    "numpy", "__array__", "item", "tolist", "__float__", "__int__", "__index__",
    "__complex__", "__reduce_ex__", "__getstate__",
}  # fmt: skip
# operations whose outputs are the engine's: torch.autograd.grad, forward-mode dual numbers
_ENGINE_OPS = {"grad", "backward", "_make_dual", "_unpack_dual", "make_dual", "unpack_dual"}
_IN_PLACE_DUNDERS = {
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
    "__imod__", "__ipow__", "__imatmul__", "__iand__", "__ior__", "__ixor__",
    "__ilshift__", "__irshift__",
}  # fmt: skip


def _tensors_in(obj: Any, out: list, budget: list[int], depth: int = 0) -> list:
    """The tensors in `obj` and its tuples, lists and dicts (at most a budget of them)."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif depth < 4 and isinstance(obj, list | tuple | dict):
        for item in obj.values() if isinstance(obj, dict) else obj:
            budget[0] -= 1
            if budget[0] < 0:
                break
            _tensors_in(item, out, budget, depth + 1)
    return out


def _flat(args: Any, kwargs: dict | None) -> list:
    """The tensors among an operation's arguments, one level into lists and tuples
    (torch.stack, torch.cat, _foreach ops) and into keyword arguments."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, list | tuple):
            out += [b for b in a[:10_000] if isinstance(b, torch.Tensor)]
    if kwargs:
        out += _flat(tuple(kwargs.values()), None)
    return out


def _attribute(getter: Any) -> str:
    """The name of the tensor attribute whose getter this is (`.data`, `.grad`, ...)."""
    return getattr(getattr(getter, "__self__", None), "__name__", "")


_KEPT_ATTRIBUTES = {"grad", "_base", ""}  # "": an attribute not named


def _storage(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return 0


class _Derivation(TorchFunctionMode):
    """Follows, op by op, which tensors of a call derive from what the engine produced (see
    the comment above :data:`DERIVED`)."""

    def __init__(self, args: tuple):
        super().__init__()
        # id -> (weak reference, version when marked); the reference tells a reused id
        self.plain: dict[int, tuple[Any, int]] = {}
        self.derived: dict[int, Any] = {}
        self.storages: set[int] = set()  # storages written from derived values
        self.engine = False  # the engine has run (its writes into .grad are not seen)
        self.left = False  # a derived tensor's values left torch
        self.off = False  # following gave up (an error, too many operations)
        self.followed = 0
        self.catcher = _ResultCatcher()
        for a in args:
            if isinstance(a, torch.Tensor):
                self._mark_plain(a)
            elif isinstance(a, torch.nn.Module):
                for t in [*a.parameters(), *a.buffers()]:
                    self._mark_plain(t)

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        _TRACKERS.append(self)
        try:
            with self:
                yield
        finally:
            _TRACKERS.remove(self)

    def _mark_plain(self, t: torch.Tensor) -> None:
        try:
            self.plain[id(t)] = (weakref.ref(t), t._version)
        except Exception:  # not weakly referable: left unknown (counts as derived)
            pass

    def _mark_derived(self, t: torch.Tensor) -> None:
        try:
            self.derived[id(t)] = weakref.ref(t)
        except Exception:
            pass
        self.plain.pop(id(t), None)

    def status(self, t: torch.Tensor) -> int:
        key = id(t)
        ref = self.derived.get(key)
        if ref is not None and ref() is t:
            return _DERIVED_
        entry = self.plain.get(key)
        if entry is None or entry[0]() is not t:
            return _FOREIGN
        if self.engine and t._version != entry[1]:  # changed where the watch did not see
            return _DERIVED_
        if self.storages and _storage(t) in self.storages:
            return _DERIVED_
        return _PLAIN

    def engine_ran(self, out: Any) -> None:
        """The engine ran: what it returned (autograd.grad's gradients) is derived."""
        self.engine = True
        try:
            with _ModeOff():
                for t in _tensors_in(out, [], [1000]):
                    self._mark_derived(t)
        except Exception:
            self.off = True

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.off:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        guard = torch._C.DisableTorchFunction()  # the watch's own reads: no mode sees them
        try:
            with guard:
                derived_in = self._before(name, args, kwargs)
        except Exception:
            self.off = True
            derived_in = None
        out = func(*args, **kwargs)
        if derived_in is not None and not self.off:
            try:
                with torch._C.DisableTorchFunction():
                    self._after(func, name, args, kwargs, out, derived_in)
            except Exception:
                self.off = True
        return out

    def _before(self, name: str, args, kwargs) -> bool | None:
        """Whether the operation reads a derived (or unknown) tensor; None: not followed."""
        self.followed += 1
        if self.followed > _MAX_FOLLOWED:
            self.off = True
            return None
        if name in _ENGINE_OPS:  # autograd.grad, backward, forward mode's dual numbers
            self.engine = True
            return True
        derived_in = False
        for t in _flat(args, kwargs):
            if self.status(t) != _PLAIN:
                derived_in = True
                break
        if name in _LEAVING:
            self.left |= derived_in
            return None
        return derived_in

    def _after(self, func, name: str, args, kwargs, out, derived_in: bool) -> None:
        if isinstance(out, torch.Tensor):
            outs: Any = (out,)
        elif isinstance(out, tuple | list):
            outs = _flat(out, None)
        else:
            outs = ()
        if name == "__get__" and _attribute(func) in _KEPT_ATTRIBUTES:
            # .grad and ._base are tensors of their own, not made from this one: kept as
            # they are (a .grad the engine wrote is unknown, so counts as derived)
            if derived_in:
                for t in outs:
                    self._mark_derived(t)
            return
        for t in outs:
            if derived_in:
                self._mark_derived(t)
            elif self.status(t) == _FOREIGN:
                self._mark_plain(t)
        if name[-1:] == "_" and name[:2] != "__" or name in _IN_PLACE_DUNDERS:
            targets = _flat(args[:1], None)
        else:
            targets = []
        if kwargs and kwargs.get("out") is not None:
            targets += _flat((kwargs["out"],), None)
        for t in targets:
            if derived_in:
                self._mark_derived(t)
                base = t._base
                if base is not None:
                    self._mark_derived(base)
                ptr = _storage(t)
                if ptr:
                    self.storages.add(ptr)
            elif self.status(t) == _PLAIN:
                self._mark_plain(t)  # changed by a followed plain operation: its version now

    def verdict(self) -> bool | None:
        """Whether the returned value derives from the engine's output: False when every
        tensor it holds is plain, None when that cannot be told."""
        result = self.catcher.value
        if self.off or self.left or not self.engine or result is _NOTHING:
            return None
        leaves: list = []
        if not _leaves_of(result, leaves, [1000]):
            return None
        tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
        if not tensors:
            return None
        with _ModeOff():
            return any(self.status(t) != _PLAIN for t in tensors)


def _leaves_of(obj: Any, out: list, budget: list[int], depth: int = 0) -> bool:
    """Collect the tensors of a result (tuples, lists, dicts of them, with integers, bools,
    strings and None beside); False when it holds anything else (not judged)."""
    budget[0] -= 1
    if budget[0] < 0 or depth > 4:
        return False
    if isinstance(obj, torch.Tensor):
        out.append(obj)
        return True
    if obj is None or isinstance(obj, bool | int | str):
        return True
    if isinstance(obj, list | tuple):
        return all(_leaves_of(v, out, budget, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return all(_leaves_of(v, out, budget, depth + 1) for v in obj.values())
    return False


_NOTHING = object()
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARIES = tuple(
    {
        os.path.abspath(p) + os.sep
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        for p in [sysconfig.get_paths().get(k)]
        if p
    }
)


def _answer_code(filename: str) -> bool:
    """Whether code in `filename` is the answer's: not the autograder's, the standard
    library's or an installed package's."""
    if filename.startswith("<frozen") or filename == "<string>":  # namedtuple, dataclass
        return False
    path = os.path.abspath(filename) if os.sep in filename else filename
    return not path.startswith(_PACKAGE + os.sep) and not path.startswith(_LIBRARIES)


class _ResultCatcher:
    """Catches what the answer's function returns: the return of the first frame of answer
    code that starts while it is entered (a profile function, removed once it returned)."""

    def __init__(self) -> None:
        self.value: Any = _NOTHING
        self.frame: Any = None
        self.active = False

    def _profile(self, frame, event, arg) -> None:
        if self.frame is None:
            if event == "call" and _answer_code(frame.f_code.co_filename):
                self.frame = frame
        elif event == "return" and frame is self.frame:
            self.value = arg  # None as well when it raised: then nothing is judged
            self.frame = False
            sys.setprofile(None)
            self.active = False

    def __enter__(self):
        if sys.getprofile() is None:  # a profiler running keeps its own
            self.active = True
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        if self.active:
            sys.setprofile(None)
            self.active = False
        self.frame = None
        return False


# --- judging the record -----------------------------------------------------------------


@dataclass
class Record:
    """What one or more calls did, read from their hits."""

    used: set[str]
    shifted: int  # evaluations of the given function at shifted inputs
    evaluations: int
    inputs: list[tuple[int, str]]

    @classmethod
    def of(cls, hits: list[str]) -> Record:
        used = {h for h in hits if h in (REVERSE, FORWARD)}
        shifted = sum(h == NUMERICAL for h in hits)
        if shifted:
            used.add(NUMERICAL)
        inputs = []
        for h in hits:
            if h.startswith(INPUT + ":"):
                _, index, what = h.split(":", 2)
                if index.isdigit():
                    inputs.append((int(index), what))
        return cls(used, shifted, shifted + sum(h == EVALUATED for h in hits), inputs)


def engine_runs(hits: list[str]) -> int:
    """How many times the autograd engine ran (backward, autograd.grad, ...)."""
    return sum(h == REVERSE for h in hits)


def enforce(question: str, rule: Rule, hits: list[str], name: str) -> None:
    """Fail the check if the call broke the question's rule."""
    record = Record.of(hits)
    forbidden = sorted(record.used & rule.forbid)
    if forbidden:
        what = NUMERICAL if NUMERICAL in forbidden else forbidden[0]
        if what == NUMERICAL:
            detail = (
                f"`{name}` evaluated a function at shifted inputs (x ± h): that is a numerical "
                "difference"
            )
            finding = Finding(
                "numerical_difference",
                f"this question asks for {rule.asks}: a finite difference (f(x + h) − f(x)) / h "
                "approximates the derivative; it does not compute it the way asked, even when "
                "its values are close.",
            )
        else:
            detail = f"`{name}` used {_NAMES[what]}"
            finding = Finding(
                "used_autograd",
                f"this question asks for {rule.asks}: {_NAMES[what]} is not allowed here, "
                "even when its values are right."
                + (" Work the derivative out and write it down." if not rule.require else ""),
            )
        raise CheckFailed(
            question,
            f"this question asks for {rule.asks}; your function used another method",
            [detail],
            [finding],
        )
    if rule.require and not (record.used & rule.require):
        wanted = " or ".join(_NAMES[m] for m in sorted(rule.require))
        raise CheckFailed(
            question,
            f"this question asks for {rule.asks}; your function computed no gradient with it",
            [f"while `{name}` ran, no {wanted} was used"],
            [
                Finding(
                    "method_missing",
                    f"this question asks for {rule.asks}: a formula, a finite difference or "
                    "values from elsewhere do not count, even when they are right.",
                )
            ],
        )
    if UNDERIVED in hits and record.used & rule.require:
        raise CheckFailed(
            question,
            f"this question asks for {rule.asks}; your function ran it but returned values it "
            "computed another way",
            [
                f"`{name}` ran {' and '.join(_NAMES[m] for m in sorted(record.used & rule.require))}, "
                "but none of the tensors it returned was computed from the gradients it produced"
            ],
            [
                Finding(
                    "result_not_from_autograd",
                    f"this question asks for {rule.asks}: your function ran backward (or another "
                    "autograd call) but returned values it computed another way (a formula, or "
                    "tensors built only from the inputs). Return the gradient autograd computed: "
                    "x.grad after backward, or what torch.autograd.grad returns.",
                )
            ],
        )
    if rule.through_function and REVERSE in record.used:
        if not any(h.startswith(FUNCTION + ":") for h in hits):
            raise CheckFailed(
                question,
                f"this question asks for {rule.asks}; no reverse pass of your function ran "
                "through a torch.autograd.Function",
                [
                    f"while `{name}` ran, autograd differentiated torch's own operations only: "
                    "no node of a Function you defined was in the graph"
                ],
                [
                    Finding(
                        "function_unused",
                        f"this question asks for {rule.asks}: the gradient must come from your "
                        "Function's backward (y = YourFunction.apply(x), then backward), not "
                        "from autograd differentiating a formula written with torch operations, "
                        "even when its values are right.",
                    )
                ],
            )


_WHAT = {
    "values": "changed its values in place",
    "requires_grad": "switched its requires_grad",
    "grad": "left a gradient in its .grad",
    "module_requires_grad": "switched requires_grad of the model's parameter",
    "module_grad": "left a gradient in .grad of the model's parameter",
}


def _say(what: str) -> str:
    kind, _, param = what.partition(":")
    return _WHAT.get(kind, kind) + (f" `{param}`" if param else "")


def check_inputs(question: str, hits: list[str], name: str, labels: list[str] | None = None):
    """Fail the check if the call changed a tensor it was given."""
    changes = Record.of(hits).inputs
    if not changes:
        return
    index, what = changes[0]
    label = labels[index] if labels and index < len(labels) else f"argument {index + 1}"
    raise CheckFailed(
        question,
        f"`{name}` changed the caller's tensor ({label})",
        [f"{label}: `{name}` {_say(what)}"]
        + [
            f"{labels[i] if labels and i < len(labels) else f'argument {i + 1}'}: {_say(w)}"
            for i, w in changes[1:3]
        ],
        [
            Finding(
                "changed_model",
                "a function must not change the model it is given: compute the gradients "
                "without writing them into its parameters (torch.autograd.grad, or "
                "torch.func.functional_call with copies of the parameters), and leave "
                "requires_grad as it was.",
            )
            if what.startswith("module")
            else Finding(
                "changed_input",
                "a function must not change the tensors it is given: work on a copy "
                "(x.detach().clone().requires_grad_(True)) so the caller's x keeps its "
                "values, its requires_grad and an empty .grad.",
            )
        ],
    )
