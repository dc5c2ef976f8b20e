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
from matplotlib.ticker import MaxNLocator

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
    figure = Figure(figsize=(6.4, 3.3))
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
    axes.set_xlim(0.7, max_epochs + 0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: whole numbers
    axes.grid(alpha=0.3)
    axes.set_title(f"{metric} per epoch; dashed: ASHA's rungs", fontsize=10)
    _legend(axes, _present(trials))
    return _png(figure)


def _scatter(axes, trials: list[TrialPoints], param: str, log: bool, jitter: bool) -> int:
    """Best metric against `param` on `axes`; return how many trials lack the parameter."""
    missing = 0
    for index, t in enumerate(trials):
        x, y = t.config.get(param), t.best_val_acc
        if x is None or y is None:
            missing += x is None
            continue
        if jitter:  # several trials share each integer value
            x = x + ((index * 0.618) % 1 - 0.5) * 0.3
        colour = "black" if t.is_best else STOP_COLOURS.get(t.stop_reason, "#999999")
        marker, size = ("*", 140) if t.is_best else ("o", 30)
        axes.scatter([x], [y], color=colour, marker=marker, s=size, alpha=0.85, zorder=3)
    if log:
        axes.set_xscale("log")
    lacking = f"; {missing} trial(s) lack it" if missing else ""
    axes.set_xlabel(param + (f" (log axis{lacking})" if log else f"{lacking}"))
    axes.grid(alpha=0.3)
    return missing


def versus_parameters(
    trials: list[TrialPoints], params: list[str], metric: str, reference: float | None
) -> bytes:
    """Each trial's best `metric` against each searched parameter (learning rates on log
    axes); `reference` (the best linear probe) as a dotted line."""
    figure = Figure(figsize=(3.2 * len(params), 2.9))
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
    _legend(axes_row[-1], _present(trials))
    figure.suptitle(
        f"best {metric} of each trial" + ("; dotted: best linear probe" if reference else ""),
        fontsize=10,
    )
    return _png(figure)


def importance_bars(groups: list[tuple[str, list[str], dict[str, dict[str, float]]]]) -> bytes:
    """Per group of trials (label, params, {method: importances}), grouped horizontal bars:
    each parameter's importance by each method; groups side by side."""
    rows = max(len(params) for _, params, _ in groups)
    methods = max(len(by_method) for _, _, by_method in groups)
    figure = Figure(figsize=(3.3 * len(groups) + 0.8, 0.4 + 0.26 * rows * max(1, methods)))
    axes_row = figure.subplots(1, len(groups), squeeze=False)[0]
    colours = ["#0072B2", "#CC79A7", "#56B4E9"]
    for axes, (label, params, by_method) in zip(axes_row, groups, strict=True):
        height = 0.8 / max(1, len(by_method))
        for k, (method, values) in enumerate(by_method.items()):
            positions = [i + k * height for i in range(len(params))]
            importances = [values.get(p, 0.0) for p in params]
            name = method.split(" (")[0]
            axes.barh(positions, importances, height=height, color=colours[k % 3], label=name)
            for y, value in zip(positions, importances, strict=True):
                if math.isfinite(value):
                    axes.text(value + 0.01, y, f"{value:.2f}", va="center", fontsize=7)
        axes.set_yticks([i + height * (len(by_method) - 1) / 2 for i in range(len(params))])
        axes.set_yticklabels(params)
        axes.invert_yaxis()
        axes.set_xlim(0, 1.15)
        axes.set_title(label, fontsize=9)
        axes.set_xlabel("importance (sums to 1)", fontsize=8)
        axes.grid(axis="x", alpha=0.3)
    handles, labels = axes_row[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="upper center", ncols=len(labels),
                  bbox_to_anchor=(0.5, -0.06), frameon=False)  # fmt: skip
    return _png(figure)
