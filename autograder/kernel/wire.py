"""Plain-data encoding between the trusted grader and a student's kernel.

Only JSON with tagged tensors travels: nothing is ever unpickled, and what comes back
from a kernel is checked for shape, size and type before anyone looks at it. Values:
None, bool, int, float (incl. nan/inf), str, list, tuple, dict with str keys, tensors and
numpy arrays (dtype, shape, raw bytes), torch dtypes, matplotlib figures (as their data),
callables the grader names (torch/numpy functions, module-level functions of this
package), and references to objects living in the kernel.
"""

from __future__ import annotations

import base64
import importlib
import math
from typing import Any

import numpy as np
import torch

MIME = "application/vnd.autograder.result+json"

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}

MAX_ELEMENTS = 20_000_000
MAX_DEPTH = 20


class WireError(ValueError):
    """A value that cannot be sent, or a reply that is not well-formed."""


class Opaque:
    """Something the kernel returned that is not plain data (shown by its type name)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


class Ref:
    """An object that lives in the kernel, named by an expression there."""

    def __init__(self, expr: str):
        self.expr = expr


# --- encoding ----------------------------------------------------------------------------


def _float(x: float) -> Any:
    if math.isnan(x):
        return {"__float__": "nan"}
    if math.isinf(x):
        return {"__float__": "inf" if x > 0 else "-inf"}
    return x


def _callable_name(fn) -> str | None:
    for module, prefix in (
        (torch, "torch"),
        (torch.nn.functional, "torch.nn.functional"),
        (np, "numpy"),
        (math, "math"),
    ):
        name = getattr(fn, "__name__", None)
        if name and getattr(module, name, None) is fn:
            return f"{prefix}:{name}"
    module = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", "")
    if module.startswith("autograder") and qual and "<" not in qual:
        return f"{module}:{qual}"
    return None


def encode(value: Any, depth: int = 0) -> Any:
    """Python value -> JSON-able structure (used on both sides)."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Ref):
        return {"__ref__": value.expr}
    if isinstance(value, torch.dtype):
        return {"__dtype__": _DTYPE_NAMES.get(value, str(value))}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        if t.dtype not in _DTYPE_NAMES:
            raise WireError(f"tensor dtype {t.dtype} cannot be sent")
        return {
            "__tensor__": {
                "dtype": _DTYPE_NAMES[t.dtype],
                "shape": list(t.shape),
                "data": base64.b64encode(
                    t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
                ).decode(),
                "requires_grad": bool(value.requires_grad),
            }
        }
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype == object:
            return {"__opaque__": "numpy object array"}
        return {"__ndarray__": encode(torch.from_numpy(np.ascontiguousarray(arr)))["__tensor__"]}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {
            "__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
        }
    if _is_figure(value):
        return {"__figure__": figure_data(value)}
    if isinstance(value, torch.nn.Module):
        return {"__module__": module_spec(value, depth)}
    if callable(value):
        name = _callable_name(value)
        if name is None:
            raise WireError(f"cannot send the function {value!r} to the kernel")
        return {"__callable__": name}
    return {"__opaque__": type(value).__name__}


def _is_figure(value: Any) -> bool:
    cls = type(value)
    return cls.__module__.startswith("matplotlib") and cls.__name__ in (
        "Figure",
        "Axes",
        "AxesSubplot",
    )


def figure_data(fig) -> dict:
    """The plotted data of a figure (or axes): what a check needs, nothing live."""
    axes = fig.get_axes() if hasattr(fig, "get_axes") else [fig]
    out = []
    for ax in axes:
        legend = ax.get_legend()
        out.append(
            {
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "title": ax.get_title(),
                "legend": [t.get_text() for t in legend.get_texts()]
                if legend is not None
                else None,
                "lines": [
                    {
                        "x": np.asarray(line.get_xdata(), dtype=float).tolist(),
                        "y": np.asarray(line.get_ydata(), dtype=float).tolist(),
                        "label": str(line.get_label()),
                    }
                    for line in ax.get_lines()
                ],
                "points": [
                    np.asarray(c.get_offsets(), dtype=float).tolist()
                    for c in getattr(ax, "collections", [])
                    if hasattr(c, "get_offsets")
                ],
            }
        )
    return {"axes": out, "returned": type(fig).__name__}


_ACTIVATIONS = {"Tanh", "ReLU", "Sigmoid", "Identity", "Softplus", "GELU"}


def module_spec(module: torch.nn.Module, depth: int = 0) -> dict:
    """A small nn.Module (Linear, Sequential of those and activations) as plain data."""
    kind = type(module).__name__
    if type(module).__module__.split(".")[:2] != ["torch", "nn"]:
        raise WireError(f"cannot send a {kind} module")
    if kind == "Linear":
        return {
            "type": kind,
            "in": module.in_features,
            "out": module.out_features,
            "params": {k: encode(v, depth + 1) for k, v in module.named_parameters()},
        }
    if kind == "Sequential":
        return {"type": kind, "children": [module_spec(m, depth + 1) for m in module]}
    if kind in _ACTIVATIONS:
        return {"type": kind}
    raise WireError(f"cannot send a {kind} module")


def build_module(spec: Any, depth: int = 0) -> torch.nn.Module:
    if depth > MAX_DEPTH or not isinstance(spec, dict):
        raise WireError("malformed module")
    kind = spec.get("type")
    if kind == "Linear":
        params = {k: decode(v, depth + 1) for k, v in dict(spec.get("params", {})).items()}
        weight = params.get("weight")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise WireError("malformed Linear module")
        m = torch.nn.Linear(
            int(spec["in"]), int(spec["out"]), bias="bias" in params, dtype=weight.dtype
        )
        with torch.no_grad():
            for k, v in params.items():
                getattr(m, k).copy_(v.detach())
        return m
    if kind == "Sequential":
        return torch.nn.Sequential(
            *[build_module(c, depth + 1) for c in spec.get("children", [])[:50]]
        )
    if kind in _ACTIVATIONS:
        return getattr(torch.nn, kind)()
    raise WireError(f"unknown module type {kind!r}")


# --- decoding ----------------------------------------------------------------------------


def _tensor(spec: Any) -> torch.Tensor:
    if not isinstance(spec, dict):
        raise WireError("malformed tensor")
    dtype = _DTYPES.get(spec.get("dtype"))
    shape = spec.get("shape")
    if (
        dtype is None
        or not isinstance(shape, list)
        or not all(isinstance(s, int) and s >= 0 for s in shape)
    ):
        raise WireError("malformed tensor header")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise WireError(f"tensor of {n} elements is too large")
    raw = base64.b64decode(spec.get("data", ""), validate=True)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) != n * itemsize:
        raise WireError("tensor data does not match its shape")
    if n == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()
    if spec.get("requires_grad") and t.is_floating_point():
        t.requires_grad_(True)
    return t


def resolve_callable(name: str):
    module_name, _, attr = name.partition(":")
    module = {"torch": torch, "numpy": np, "math": math}.get(module_name)
    if module is None:
        if not module_name.startswith("autograder"):
            raise WireError(f"refusing to import {module_name}")
        module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def decode(data: Any, depth: int = 0, *, refs=None) -> Any:
    """JSON structure -> Python value. `refs(expr)` builds a local stand-in for a Ref."""
    if depth > MAX_DEPTH:
        raise WireError("reply nested too deeply")
    if data is None or isinstance(data, bool | str | int | float):
        return data
    if isinstance(data, list):
        return [decode(v, depth + 1, refs=refs) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise WireError("malformed value")
    ((tag, body),) = data.items()
    if tag == "__float__":
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[body]
    if tag == "__tensor__":
        return _tensor(body)
    if tag == "__ndarray__":
        return _tensor(body).numpy()
    if tag == "__tuple__":
        return tuple(decode(v, depth + 1, refs=refs) for v in body)
    if tag == "__dict__":
        return {decode(k, depth + 1, refs=refs): decode(v, depth + 1, refs=refs) for k, v in body}
    if tag == "__dtype__":
        if body not in _DTYPES:
            raise WireError(f"unknown dtype {body}")
        return _DTYPES[body]
    if tag == "__figure__":
        return rebuild_figure(body)
    if tag == "__module__":
        return build_module(body, depth + 1)
    if tag == "__callable__":
        return resolve_callable(body)
    if tag == "__ref__":
        if refs is None:
            raise WireError("unexpected reference")
        return refs(body)
    if tag == "__opaque__":
        return Opaque(str(body))
    raise WireError(f"unknown tag {tag}")


def rebuild_figure(data: dict):
    """A matplotlib Figure holding the same data (Agg, never shown); its first Axes where
    the kernel's object was an Axes, so that a check sees the same kind of object."""
    from matplotlib.figure import Figure

    fig = Figure()
    for spec in data.get("axes", [])[:20]:
        ax = fig.add_subplot()
        for line in spec.get("lines", [])[:100]:
            ax.plot(line["x"], line["y"], label=line.get("label", ""))
        for pts in spec.get("points", [])[:100]:
            arr = np.asarray(pts, dtype=float)
            if arr.ndim == 2 and arr.shape[1] == 2 and len(arr):
                ax.scatter(arr[:, 0], arr[:, 1])
        ax.set_xlabel(str(spec.get("xlabel", "")))
        ax.set_ylabel(str(spec.get("ylabel", "")))
        ax.set_title(str(spec.get("title", "")))
        if spec.get("legend") is not None:
            handles = ax.get_lines()
            ax.legend(handles[: len(spec["legend"])], [str(t) for t in spec["legend"]])
    if data.get("returned") != "Figure" and fig.axes:  # an Axes was handed back: one again
        return fig.axes[0]
    return fig
