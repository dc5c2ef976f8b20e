"""How far a search's numbers can be trusted: a 95 % interval for each `val_acc` from the
number of validation images (Wilson's score interval), which trials are tied with the best,
and warnings a user can act on. Pure functions of summary.json's content and the validation
labels' counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from search.config.settings import METRIC

Z95 = 1.959964  # the standard normal's 97.5 % quantile: a two-sided 95 % interval


def wilson(accuracy: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion `accuracy` measured on `n` items."""
    if n <= 0:
        return 0.0, 1.0
    centre = accuracy + z * z / (2 * n)
    spread = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def detectable_difference(accuracy: float, n: int, z: float = Z95) -> float:
    """The smallest difference between two accuracies near `accuracy`, each measured on the
    same `n` images, that a two-sided 95 % test tells from noise (treating them as
    independent, which is conservative for one validation set)."""
    p = min(max(accuracy, 1 / (2 * n)), 1 - 1 / (2 * n)) if n > 0 else 0.5
    return z * math.sqrt(2 * p * (1 - p) / max(n, 1))


def interval_text(interval: Sequence[float] | None) -> str:
    """A 95 % interval as the console and the report write it, `0.67-0.78` ("-": none)."""
    return f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "-"


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(interval[0], 4), round(interval[1], 4)]


def add_intervals(summary: dict[str, Any], val_counts: Sequence[int]) -> None:
    """Give each trial of `summary` (and its best) `val_acc_interval`, the 95 % interval of its
    best `val_acc`, and `tie_with_best`: whether it overlaps the best trial's interval; record
    the validation set's size as `val_images`."""
    n = int(sum(val_counts))
    summary["val_images"] = n
    best = summary.get("best")
    best_interval = wilson(best[METRIC], n) if best and best.get(METRIC) is not None else None
    if best is not None and best_interval is not None:
        best["val_acc_interval"] = _rounded(best_interval)
    for trial in summary["trials"]:
        score = trial.get("best_val_acc")
        if score is None:
            trial["val_acc_interval"], trial["tie_with_best"] = None, False
            continue
        interval = wilson(score, n)
        trial["val_acc_interval"] = _rounded(interval)
        trial["tie_with_best"] = bool(best_interval and interval[1] >= best_interval[0])


def trust_warnings(summary: dict[str, Any], val_counts: Sequence[int]) -> list[str]:
    """The warnings of a finished search, one line each (empty when the numbers hold)."""
    warnings = []
    n = int(sum(val_counts))
    best = summary.get("best")
    if best is None or best.get(METRIC) is None or n == 0:
        return warnings
    score = best[METRIC]
    low, high = wilson(score, n)
    chance = max(val_counts) / n  # always answering the largest class
    if low <= chance:
        warnings.append(
            f"the best {METRIC} {score:.3f} ({low:.2f}-{high:.2f} on {n} validation images) is "
            f"within noise of chance ({chance:.3f}, always the largest class): no configuration "
            "clearly learns"
        )
    ranked = [t for t in summary["trials"] if t.get("best_val_acc") is not None]
    detectable = detectable_difference(score, n)
    if len(ranked) > 1 and score - ranked[1]["best_val_acc"] < detectable:
        ties = sum(t.get("tie_with_best", False) for t in ranked) - 1
        warnings.append(
            f"{n} validation images separate only differences above about {detectable:.2f} in "
            f"{METRIC}; the runner-up is {score - ranked[1]['best_val_acc']:.3f} behind and "
            f"{ties} {'trial ties' if ties == 1 else 'trials tie'} with the best: more validation "
            "images (--val-fraction, more data) would rank them"
        )
    top = ranked[0] if ranked else None
    last = top.get(METRIC) if top else None
    if top and last is not None and top["best_val_acc"] - last >= detectable:
        warnings.append(
            f"the best trial's {METRIC} fell from {top['best_val_acc']:.3f} (epoch "
            f"{top['best_epoch']}) to {last:.3f} (epoch {top['epochs']}): it collapsed after "
            "the best epoch, whose checkpoint is kept; lower learning rates may hold it"
        )
    missed = top.get("classes_missed") if top else None
    if missed:
        classes = sum(count > 0 for count in val_counts)
        warnings.append(
            f"at its best epoch the best model predicts {missed} of the {classes} classes for "
            f"no validation image (it scores 0 on {'it' if missed == 1 else 'them'}): see "
            "val/confusion_matrix in TensorBoard"
        )
    return warnings
