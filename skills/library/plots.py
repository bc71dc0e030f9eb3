"""Plots as inline SVG strings (matplotlib, no pyplot state, no GUI backend).

Every function returns a self-contained `<svg>` element ready to paste into HTML: the report skill uses them, and the
dashboard can reuse them as they are. Text stays text (`svg.fonttype = none`) so it is searchable and matplotlib
XML-escapes it; `$` is escaped so that column names are never parsed as mathtext.
"""
from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

import matplotlib

matplotlib.use("Agg")  # never a GUI backend, even if a notebook or the dashboard imported pyplot first

from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.typing import RcKeyType

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)  # XML declaration and DOCTYPE: not allowed inline in HTML
_RC: dict[RcKeyType, Any] = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                              "axes.spines.right": False}
_ACCENT = "#2b6cb0"
_WARN = "#c05621"


def text(value: Any) -> str:
    """A label safe for matplotlib: `$` would start mathtext, which fails or hides text."""
    return str(value).replace("$", r"\$")


P = ParamSpec("P")


def new_axes(width: float = 6.0, height: float = 3.5) -> Axes:
    """Axes on a figure not registered with pyplot (thread-safe, nothing leaks across calls)."""
    return MplFigure(figsize=(width, height), layout="constrained").add_subplot()


def to_svg(fig: MplFigure) -> str:
    """The figure as an inline `<svg>` string (XML prologue stripped)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})  # reproducible output
    return _PROLOGUE.sub("", buf.getvalue(), count=1).strip()


def svg_plot(fn: Callable[P, Axes]) -> Callable[P, str]:
    """Decorator: `fn` draws on axes it creates and returns them; the caller gets the SVG string.
    The house style applies while drawing and saving, never globally."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        with matplotlib.rc_context(_RC):
            figure = fn(*args, **kwargs).get_figure(root=True)
            assert isinstance(figure, MplFigure)  # new_axes() makes a root figure
            return to_svg(figure)

    return wrapper


@svg_plot
def bar_chart(labels: Sequence[Any], values: Sequence[float], *, title: str = "", xlabel: str = "",
              reference: float | None = None, highlight: Sequence[bool] | None = None, zoom: bool = False) -> Axes:
    """Horizontal bars, largest at the top. `reference` draws a vertical line (e.g. lift = 1). `zoom` starts the
    axis near the smallest value instead of 0, for scores that differ in the third decimal."""
    n = len(labels)
    longest = max((len(str(lb)) for lb in labels), default=0)
    ax = new_axes(max(6.0, 3.4 + 0.07 * longest), max(1.8, 0.32 * n + 0.9))  # long labels keep room for the bars
    colors = [_WARN if (highlight and highlight[i]) else _ACCENT for i in range(n)]
    ax.barh(range(n), list(values), color=colors)
    ax.set_yticks(range(n), [text(lb) for lb in labels])
    ax.invert_yaxis()
    if reference is not None:
        ax.axvline(reference, color="#4a5568", linestyle="--", linewidth=1, zorder=3)
    if zoom and n:
        shown = [*values, *([reference] if reference is not None else [])]
        low, high = min(shown), max(shown)
        pad = (high - low) * 0.15 or abs(high) * 0.01 or 0.01
        ax.set_xlim(low - pad, high + pad)
    _titles(ax, title, xlabel, "")
    return ax


def _titles(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(text(title), loc="left")
    ax.set_xlabel(text(xlabel))
    ax.set_ylabel(text(ylabel))


@svg_plot
def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str = "", xlabel: str = "",
               ylabel: str = "", diagonal: bool = False, square: bool = False) -> Axes:
    """One line per `(label, xs, ys)`; `diagonal` adds the y = x chance line (ROC)."""
    ax = new_axes(4.2 if square else 6.0, 3.6)
    for label, xs, ys in series:
        ax.plot(list(xs), list(ys), label=text(label), linewidth=1.6)
    if diagonal:
        ax.plot([0, 1], [0, 1], color="#a0aec0", linestyle="--", linewidth=1)
    if square:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    if any(label for label, _, _ in series):
        ax.legend(loc="best", frameon=False)
    _titles(ax, title, xlabel, ylabel)
    return ax


def roc_curve(fpr: Sequence[float], tpr: Sequence[float], auc: float | None = None) -> str:
    """ROC curve with the chance diagonal."""
    label = f"AUC = {auc:.3f}" if auc is not None else ""
    return line_chart([(label, fpr, tpr)], title="ROC curve", xlabel="False positive rate",
                      ylabel="True positive rate", diagonal=True, square=True)


def pr_curve(recall: Sequence[float], precision: Sequence[float], average_precision: float | None = None) -> str:
    """Precision-recall curve."""
    label = f"AP = {average_precision:.3f}" if average_precision is not None else ""
    return line_chart([(label, recall, precision)], title="Precision-recall curve", xlabel="Recall",
                      ylabel="Precision", square=True)


@svg_plot
def predicted_vs_actual(actual: Sequence[float], predicted: Sequence[float]) -> Axes:
    """Scatter of predictions against true values with the y = x line (regression)."""
    ax = new_axes(4.2, 4.0)
    ax.scatter(list(actual), list(predicted), s=6, alpha=0.45, color=_ACCENT, linewidths=0)
    lo = min(min(actual, default=0.0), min(predicted, default=0.0))
    hi = max(max(actual, default=1.0), max(predicted, default=1.0))
    ax.plot([lo, hi], [lo, hi], color="#a0aec0", linestyle="--", linewidth=1)
    _titles(ax, "Predicted vs actual", "Actual", "Predicted")
    return ax


def trial_rounds(history: Sequence[float], rounds: int) -> list[float]:
    """Boosting round of each reported metric: reports may come every N rounds, so spread them over `rounds`."""
    n = len(history)
    if n == 0:
        return []
    total = max(rounds, n)
    return [total * (i + 1) / n for i in range(n)]


@svg_plot
def learning_curves(trials: Sequence[dict[str, Any]], *, metric: str = "metric") -> Axes:
    """Validation metric vs boosting rounds, one line per tune trial; trials stopped early (ASHA) end in an x."""
    ax = new_axes(6.0, 3.8)
    stopped = 0
    for trial in trials:
        history = [float(v) for v in trial.get("history") or []]
        xs = trial_rounds(history, int(trial.get("rounds") or len(history)))
        if not xs:
            continue
        early = bool(trial.get("stopped_early"))
        stopped += early
        line = ax.plot(xs, history, linewidth=1.2, alpha=0.55 if early else 0.95)[0]
        ax.plot([xs[-1]], [history[-1]], marker="x" if early else "o", color=line.get_color(), markersize=5)
    kept = len(trials) - stopped
    _titles(ax, f"Tuning trials: {kept} ran to the end, {stopped} stopped early (x)", "Boosting rounds", metric)
    return ax
