"""Check a matplotlib figure from its data.

Curves are identified by what they plot, not by their order, colour or style: each
expected curve is a function of x, and some line in the figure must plot it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .feedback import CheckFailed, Finding


def plotted_lines(fig) -> list[tuple[object, np.ndarray, np.ndarray]]:
    axes_list = fig.get_axes() if hasattr(fig, "get_axes") else [fig]
    out = []
    for ax in axes_list:
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), dtype=float)
            y = np.asarray(line.get_ydata(), dtype=float)
            if x.size and x.shape == y.shape:
                out.append((ax, x, y))
        for coll in getattr(ax, "collections", []):
            offsets = np.asarray(getattr(coll, "get_offsets", lambda: [])(), dtype=float)
            if offsets.ndim == 2 and offsets.shape[1] == 2 and len(offsets):
                out.append((ax, offsets[:, 0], offsets[:, 1]))
    return out


def check_curves(
    question: str,
    fig,
    curves: dict[str, Callable[[np.ndarray], np.ndarray]],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    shared_x: bool = True,
    labels: bool = True,
    grid: np.ndarray | None = None,
    one_axes: bool = False,
    figure: bool = False,
) -> None:
    """Raise CheckFailed unless every named curve is plotted (and labelled if asked).

    `grid`: the x values the question gave; every named curve must be plotted against
    them. `one_axes`: the named curves must share one set of axes. `figure`: the question
    asks for the Figure itself (an Axes, or the list plt.plot returns, is not it).
    """
    if fig is None or not (hasattr(fig, "get_axes") or hasattr(fig, "get_lines")):
        raise CheckFailed(
            question,
            "no figure returned",
            [
                f"expected a matplotlib Figure{'' if figure else ' (or Axes)'}, "
                f"got {type(fig).__name__}"
            ],
            [_FIGURE_FINDING] if figure else [],
        )
    if figure and not _is_figure(fig):
        raise CheckFailed(
            question,
            f"your function returned {_a(type(fig).__name__)}, not the figure",
            [f"expected a matplotlib Figure, got {type(fig).__name__}"],
            [_FIGURE_FINDING],
        )
    lines = plotted_lines(fig)
    if not lines:
        raise CheckFailed(question, "the figure has no curves", ["plot with ax.plot(x, y)"])
    found: dict[str, tuple] = {}
    for name, f in curves.items():
        for ax, x, y in lines:
            if np.allclose(y, f(x), rtol=rtol, atol=atol):
                found[name] = (ax, x)
                break
    missing = [n for n in curves if n not in found]
    if missing:
        shown = ", ".join(f"{len(x)} points" for _, x, _ in lines)
        raise CheckFailed(
            question,
            "a curve is missing from the figure",
            [
                "missing: " + ", ".join(missing),
                f"the figure has {len(lines)} curve(s) ({shown}); none matches the missing one "
                f"within rtol {rtol:g}, atol {atol:g}",
            ],
        )
    if shared_x and len(found) > 1:
        xs = [x for _, x in found.values()]
        if any(x.shape != xs[0].shape or not np.allclose(x, xs[0]) for x in xs[1:]):
            raise CheckFailed(
                question,
                "the curves are not on one shared x grid",
                ["plot every curve against the same x values"],
            )
    if grid is not None:
        given = np.asarray(grid, dtype=float).reshape(-1)
        for name, (_, x) in found.items():
            if x.shape != given.shape or not np.allclose(x, given, rtol=1e-6, atol=1e-9):
                raise CheckFailed(
                    question,
                    "a curve is not plotted against the given x",
                    [
                        f"{name}: {len(x)} points from {float(x.min()):.3g} to "
                        f"{float(x.max()):.3g}; the question gave {len(given)} points from "
                        f"{float(given.min()):.3g} to {float(given.max()):.3g}",
                        "plot on the x you are given, not on a grid of your own",
                    ],
                    [
                        Finding(
                            "own_grid",
                            "the curve is plotted on another grid than the x passed to your "
                            "function: plot against that x.",
                        )
                    ],
                )
    if one_axes and len({id(ax) for ax, _ in found.values()}) > 1:
        raise CheckFailed(
            question,
            "the curves are on separate axes",
            ["draw every curve on one set of axes (one ax.plot per curve on the same ax)"],
            [Finding("separate_axes", "the question asks for both curves on one set of axes.")],
        )
    if labels:
        axes = {id(ax): ax for ax, _ in found.values()}.values()
        for ax in axes:
            legend = ax.get_legend()
            n_legend = len(legend.get_texts()) if legend is not None else 0
            has_axis_labels = bool(ax.get_xlabel().strip()) and bool(ax.get_ylabel().strip())
            if not (has_axis_labels or n_legend >= len(found)):
                raise CheckFailed(
                    question,
                    "the plot is not labelled",
                    [
                        "label both axes (ax.set_xlabel / ax.set_ylabel) or add a legend "
                        "naming each curve (label=... and ax.legend())"
                    ],
                )


_FIGURE_FINDING = Finding(
    "not_a_figure",
    "this question asks for the figure: return the Figure you drew on (fig from "
    "fig, ax = plt.subplots(), or ax.figure), not the Axes or the lines plt.plot returns.",
)


def _is_figure(value) -> bool:
    return any(c.__name__ in ("Figure", "SubFigure") for c in type(value).__mro__)


def _a(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name
