"""Does ASHA's first rung measure anything? Rank correlation between each trial's `val_acc` at
an early epoch and its final best `val_acc`, on a few-shot image folder, over several seeds.

Each seed runs one full search through `run_search` in which ASHA stops nothing (its first rung
at `max_epochs`), so every trial's whole curve is known. A rung at epoch e would keep the trials
ranked best by their `val_acc` at e: the Spearman correlation between that ranking and the
final one (the best `val_acc` each trial reaches) says how much the rung's decision is worth.
The few-shot folder is the embedded target task (digits 5-9, 20 training images per class, 50
validation images per class) written out as PNGs in `train/`, `val/` and `test/`, searched
from the digits source backbone given as a weights file, as a user would with their own images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ray
from ray.tune.schedulers import TrialScheduler

from search.config.settings import METRIC, SearchSettings, resolve, steps_per_epoch
from search.results.export import write_split_images
from search.run.rungs import ClearlyBehindASHA
from search.run.search import run_search
from search.run.session import start_ray
from trainable import metrics
from trainable.config import TrialConfig
from trainable.datasets import build_data
from trainable.pretrain import ensure_source_weights


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            result[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged); NaN when either
    side is constant."""
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def digits_folder(root: Path, cache_dir: str) -> tuple[Path, Path]:
    """The embedded target task as an image folder under `root`, and the digits source
    backbone's weights file (pretrained once into `cache_dir`)."""
    cfg = TrialConfig(cache_dir=cache_dir)
    folder = root / "digits59"
    if not (folder / "train").is_dir():
        data = build_data(cfg)
        for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
            write_split_images(split, data.classes, data.preprocessing, folder / name)
    weights = ensure_source_weights(cfg.backbone, cfg.data, cfg.image_size, cache_dir, print)
    return folder, weights


def trial_curves(experiment_dir: Path, max_epochs: int) -> list[dict[int, float]]:
    """Each trial's val_acc per epoch, for the trials that ran every epoch."""
    curves = []
    for folder in sorted(experiment_dir.glob("train_transfer_*")):
        rows = metrics.result_rows(folder)
        curve = {int(r[metrics.EPOCH]): float(r[METRIC]) for r in rows if METRIC in r}
        if len(curve) == max_epochs:
            curves.append(curve)
    return curves


def rung_stats(curves: list[dict[int, float]], max_epochs: int, keep: float) -> dict[int, dict]:
    """For each epoch e before the last, as a rung: the Spearman correlation over trials
    between val_acc at e and the final best val_acc, and whether the trial that ends best
    is among the best `keep` share at e (what a rung there keeps)."""
    final = [max(curve.values()) for curve in curves]
    winner = max(range(len(curves)), key=lambda i: final[i])
    kept = max(1, math.ceil(len(curves) * keep))
    stats = {}
    for e in range(1, max_epochs):
        at = [curve[e] for curve in curves]
        rank = 1 + sum(value > at[winner] for value in at)  # ties: the winner's best rank
        stats[e] = {"spearman": spearman(at, final), "winner_rank": rank, "kept": rank <= kept}
    return stats


def rung_decisions(
    curves: list[dict[int, float]], rung: int, val_images: int, reduction_factor: int = 3
) -> dict[str, Any]:
    """A first rung at epoch `rung`, the trials arriving in order: which it stops, by the
    harness's scheduler (`val_images` > 0: only trials clearly behind) or Ray's plain ASHA
    (0). Counts the stops, and those of trials that end among the best 3 (wrong stops)."""
    scheduler = ClearlyBehindASHA(
        time_attr=metrics.EPOCH, max_t=max(max(c) for c in curves), grace_period=rung,
        reduction_factor=reduction_factor, val_images=val_images,
    )  # fmt: skip
    scheduler.set_search_properties(METRIC, "max")
    bracket = scheduler._brackets[0]
    final = [max(curve.values()) for curve in curves]
    top = set(sorted(range(len(curves)), key=lambda i: -final[i])[:3])
    stopped = [
        i
        for i, curve in enumerate(curves)
        if bracket.on_result(SimpleNamespace(trial_id=str(i)), rung, curve[rung])
        == TrialScheduler.STOP
    ]
    return {
        "stopped": len(stopped),
        "top3_stopped": len(top & set(stopped)),
        "winner_stopped": max(range(len(curves)), key=lambda i: final[i]) in stopped,
    }


def measure(
    work: Path,
    cache_dir: str,
    seeds: Sequence[int],
    weights: str = "source",
    num_samples: int = 16,
    max_epochs: int = 9,
    reduction_factor: int = 3,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Full-length searches on the digits image folder, one per seed, from the digits source
    backbone (`weights` "source") or from scratch ("none"); the statistics of each epoch as
    a first rung."""
    folder, source = digits_folder(work, cache_dir)
    base = SearchSettings(
        data=f"imagefolder:{folder}", weights=str(source) if weights == "source" else weights,
        image_size=32, augment=False, num_samples=num_samples, max_epochs=max_epochs,
        grace_period=max_epochs, storage_path=str(work / "runs"), wandb="disabled",
        cache_dir=cache_dir,
    )  # fmt: skip
    runs = []
    start_ray()
    try:
        for seed in seeds:
            name = f"{weights}-seed{seed}"
            settings = resolve(dataclasses.replace(base, seed=seed, name=name))
            if not (settings.experiment_dir / "summary.json").is_file():  # else measured: reuse
                began = time.monotonic()
                log = settings.experiment_dir.with_suffix(".log")
                log.parent.mkdir(parents=True, exist_ok=True)
                with log.open("w") as out, contextlib.redirect_stdout(out):
                    run_search(settings)
                say(f"{name}: searched in {time.monotonic() - began:.0f} s")
            curves = trial_curves(settings.experiment_dir, max_epochs)
            stats = rung_stats(curves, max_epochs, 1 / reduction_factor)
            val_images = 250
            decisions = {
                f"{kind} rung {rung}": rung_decisions(curves, rung, n, reduction_factor)
                for rung in (1, 3)
                for kind, n in (("plain", 0), ("clearly behind", val_images))
            }
            runs.append(
                {"seed": seed, "trials": len(curves), "rungs": stats, "decisions": decisions}
            )
            say(
                f"{name}: "
                + ", ".join(
                    f"e{e} {s['spearman']:+.2f}/#{s['winner_rank']}" for e, s in stats.items()
                )
            )
    finally:
        ray.shutdown()
    per_epoch = steps_per_epoch(20 * 5, TrialConfig().batch_size)
    return {
        "data": "digits 5-9 as an image folder: 100 train / 250 val images",
        "weights": weights,
        "steps_per_epoch": per_epoch,
        "num_samples": num_samples,
        "max_epochs": max_epochs,
        "runs": runs,
        "mean_spearman": {
            e: statistics.fmean(
                r["rungs"][e]["spearman"] for r in runs if not math.isnan(r["rungs"][e]["spearman"])
            )
            for e in range(1, max_epochs)
        },
        "winner_kept": {e: sum(r["rungs"][e]["kept"] for r in runs) for e in range(1, max_epochs)},
    }


def format_markdown(reports: list[dict[str, Any]]) -> str:
    """The tables BENCHMARKS.md shows: the correlation of each epoch as a first rung, and
    what a first rung at epoch 1 and 3 stops, plain and clearly-behind."""
    epochs = sorted(reports[0]["mean_spearman"])
    lines = [
        "| weights | seeds | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
        "|---|---|" + "---|" * len(epochs),
    ]
    for report in reports:
        seeds = len(report["runs"])
        cells = [
            f"{report['mean_spearman'][e]:+.2f} ({report['winner_kept'][e]}/{seeds})"
            for e in epochs
        ]
        lines.append(f"| {report['weights']} | {seeds} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| weights | first rung | ASHA | stopped (of 16) | of the final best 3 | the final best |",
        "|---|---|---|---|---|---|",
    ]
    for report in reports:
        for key in report["runs"][0]["decisions"]:
            kind, rung = key.rsplit(" rung ", 1)
            rows = [run["decisions"][key] for run in report["runs"]]
            lines.append(
                f"| {report['weights']} | epoch {rung} | {kind} | "
                + " / ".join(str(r["stopped"]) for r in rows)
                + " | "
                + " / ".join(str(r["top3_stopped"]) for r in rows)
                + " | "
                + f"{sum(r['winner_stopped'] for r in rows)} of {len(rows)} seeds |"
            )
    return "\n".join(lines)
