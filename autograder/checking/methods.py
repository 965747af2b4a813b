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

A question declares a :class:`Rule` (what it requires and what it forbids) and
:func:`enforce` turns the record into a failed check with its own diagnosis. The record
is kept where the function runs: in the notebook's kernel for a visible test, and there
too when the grader re-runs a hidden test (it asks the kernel to record, as for
:mod:`.forbid`'s watches).
"""

from __future__ import annotations

import contextlib
import functools
import types
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
    graph costs about a millisecond per pass)."""
    if rule is None:
        return frozenset()
    options = {SEEDS} if rule.seeded else set()
    if rule.through_function:
        options.add(FUNCTIONS)
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
        return engine(t_outputs, *args, **kwargs)

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
    (as x.numpy() does) when it converts a tensor or values the watch follows."""

    @functools.wraps(original)
    def convert(obj: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(obj, *args, **kwargs)
        if watch.found or type(out) is not np.ndarray:
            return out
        try:
            if _carries_inputs(obj, [1000]):
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
    copies of its inputs too."""
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
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_hooks())
            if SHIFTS in options:
                shift_watch = _ShiftWatch(_values(args), hits)
                stack.enter_context(_numpy_conversions(shift_watch))
                stack.enter_context(shift_watch)
            yield instrument(args, hits)
    finally:
        _ACTIVE.remove(hits)
        _GIVEN.pop(id(hits), None)
        _FUNCTION_NODES.discard(id(hits))
        with contextlib.suppress(Exception):
            hits.extend(_changes(snapshot))


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
