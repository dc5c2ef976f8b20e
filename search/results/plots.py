"""The report's figures (matplotlib), each returned as PNG bytes to embed in report.html.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no GUI backend, no global state,
so a report can be drawn inside a search or a test.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter

# How a trial ended -> its colour in every figure (colour-blind safe: Okabe-Ito)
STOP_COLOURS = {
    "completed": "#009E73",
    "asha": "#E69F00",
    "error": "#D55E00",
    "interrupted": "#999999",
    "plateau": "#56B4E9",
}
DPI = 100


@dataclass(frozen=True)
class TrialPoints:
    """What the figures need of one trial."""

    trial_id: str
    stop_reason: str
    config: dict[str, float | int | None]
    best_val_acc: float | None
    curve: list[tuple[int, float]]  # (epoch, val_acc)
    is_best: bool


def _accuracy_span(axes, span: float = 0.1) -> None:
    """At least `span` of accuracy on the y axis: trials that all scored alike would otherwise
    fill the axis with ticks a thousandth apart."""
    low, high = axes.get_ylim()
    if high - low < span:
        centre = (low + high) / 2
        low = min(max(0.0, centre - span / 2), 1.0 - span)
        axes.set_ylim(low, low + span)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _legend(axes, reasons: list[str], best: bool = True) -> None:
    handles = [Line2D([], [], color=STOP_COLOURS[r], lw=2, label=r) for r in reasons]
    if best:
        handles.append(Line2D([], [], color="black", lw=2.5, marker="*", ms=9, label="best"))
    axes.legend(handles=handles, fontsize=8, loc="lower right", frameon=False)


def _present(trials: list[TrialPoints]) -> list[str]:
    return [r for r in STOP_COLOURS if any(t.stop_reason == r for t in trials)]


def learning_curves(
    trials: list[TrialPoints], rungs: list[int], max_epochs: int, metric: str
) -> bytes:
    """`metric` per epoch of every trial, coloured by how it ended; ASHA's rungs as lines."""
    figure = Figure(figsize=(6.4, 2.9))
    axes = figure.subplots()
    for rung in rungs:
        axes.axvline(rung, color="#bbbbbb", ls="--", lw=1, zorder=0)
        axes.annotate(
            f"rung {rung}", (rung, 0.0), xycoords=("data", "axes fraction"),
            xytext=(2, 3), textcoords="offset points", fontsize=7, color="#777777",
        )  # fmt: skip
    for t in sorted(trials, key=lambda t: t.is_best):  # the best is drawn last, on top
        if not t.curve:
            continue
        epochs, values = zip(*t.curve, strict=True)
        colour = STOP_COLOURS.get(t.stop_reason, "#999999")
        if t.is_best:
            axes.plot(epochs, values, color="black", lw=2.5, marker="*", ms=8, zorder=3)
        else:
            axes.plot(epochs, values, color=colour, lw=1.3, marker="o", ms=3, alpha=0.85)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    _accuracy_span(axes)
    axes.set_xlim(0.7, max_epochs + 0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: whole numbers
    axes.grid(alpha=0.3)
    axes.set_title(f"{metric} per epoch; dashed: ASHA's rungs", fontsize=10)
    _legend(axes, _present(trials))
    return _png(figure)


def _log_ticks(axes, values: list[float]) -> None:
    """At most four labelled ticks on a log axis, whatever its span: matplotlib labels the
    minor ticks of an axis spanning less than a decade, and their labels overlap."""
    axes.xaxis.set_minor_formatter(NullFormatter())
    if not values:
        return
    low, high = min(values), max(values)
    decades = math.log10(high / low) if low > 0 else 0.0
    if decades >= 2:  # whole powers of ten, thinned to at most four
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        step = max(1, math.ceil((last - first + 1) / 4))
        ticks = [10.0**k for k in range(first, last + 1, step)]
        axes.set_xticks(ticks, [f"1e{k}" for k in range(first, last + 1, step)])
    else:  # a narrow span: its ends (and middle), as the console writes them
        ticks = sorted({low, math.sqrt(low * high), high}) if decades > 0.3 else sorted({low, high})
        axes.set_xticks(ticks, [f"{v:.2g}" for v in ticks])
    axes.tick_params(axis="x", labelsize=8)


def _scatter(axes, trials: list[TrialPoints], param: str, log: bool, jitter: bool) -> int:
    """Best metric against `param` on `axes`; return how many trials lack the parameter."""
    missing = 0
    # A choice among names (the backbone): one column per name, in sorted order.
    names = sorted({t.config[param] for t in trials if isinstance(t.config.get(param), str)})
    for index, t in enumerate(trials):
        x, y = t.config.get(param), t.best_val_acc
        if x is None or y is None:
            missing += x is None
            continue
        if isinstance(x, str):
            x = names.index(x)
        if jitter:  # several trials share each integer value
            x = x + ((index * 0.618) % 1 - 0.5) * 0.3
        colour = "black" if t.is_best else STOP_COLOURS.get(t.stop_reason, "#999999")
        marker, size = ("*", 140) if t.is_best else ("o", 30)
        axes.scatter([x], [y], color=colour, marker=marker, s=size, alpha=0.85, zorder=3)
    if names:
        axes.set_xticks(range(len(names)), names, fontsize=7, rotation=15)
    if log:
        axes.set_xscale("log")
        _log_ticks(axes, [t.config[param] for t in trials if t.config.get(param) is not None])
    lacking = f"; {missing} trial(s) lack it" if missing else ""
    axes.set_xlabel(param + (f" (log axis{lacking})" if log else f"{lacking}"))
    axes.grid(alpha=0.3)
    return missing


def versus_parameters(
    trials: list[TrialPoints], params: list[str], metric: str, reference: float | None
) -> bytes:
    """Each trial's best `metric` against each searched parameter (learning rates on log
    axes); `reference` (the best linear probe) as a dotted line."""
    figure = Figure(figsize=(3.2 * len(params), 2.6))
    axes_row = figure.subplots(1, len(params), sharey=True, squeeze=False)[0]
    for axes, param in zip(axes_row, params, strict=True):
        is_rate = param.endswith("_lr")
        _scatter(axes, trials, param, log=is_rate, jitter=not is_rate)
        if param == "freeze_depth":
            values = [t.config[param] for t in trials if t.config.get(param) is not None]
            if values:
                axes.set_xticks(range(int(min(values)), int(max(values)) + 1))
        if reference is not None:
            axes.axhline(reference, color="#555555", ls=":", lw=1)
    axes_row[0].set_ylabel(f"best {metric}")
    _accuracy_span(axes_row[0])  # shared by the row
    _legend(axes_row[-1], _present(trials))
    figure.suptitle(
        f"best {metric} of each trial" + ("; dotted: best linear probe" if reference else ""),
        fontsize=10,
    )
    return _png(figure)


def importance_bars(groups: list[tuple[str, dict[str, float]]]) -> bytes:
    """Per group of trials (label, {param: importance}), horizontal bars, most important on
    top; groups side by side."""
    rows = max(len(values) for _, values in groups)
    figure = Figure(figsize=(3.3 * len(groups) + 0.8, 0.6 + 0.32 * rows))
    axes_row = figure.subplots(1, len(groups), squeeze=False)[0]
    for axes, (label, values) in zip(axes_row, groups, strict=True):
        ranked = sorted(values.items(), key=lambda item: -item[1])
        names, importances = [p for p, _ in ranked], [v for _, v in ranked]
        axes.barh(range(len(names)), importances, height=0.6, color="#0072B2")
        for y, value in enumerate(importances):
            if math.isfinite(value):
                axes.text(value + 0.01, y, f"{value:.2f}", va="center", fontsize=8)
        axes.set_yticks(range(len(names)))
        axes.set_yticklabels(names)
        axes.invert_yaxis()
        axes.set_xlim(0, 1.15)
        axes.set_title(label, fontsize=9)
        axes.set_xlabel("importance (sums to 1)", fontsize=8)
        axes.grid(axis="x", alpha=0.3)
    return _png(figure)
