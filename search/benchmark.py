"""Performance of the harness, measured as ratios side by side in one run (scripts/benchmark.py).

This machine is noisy, so each figure compares two variants of the same work run alternately
(A B B A ...) and takes the ratio of their medians. The table is in BENCHMARKS.md.

- `trial_logging_overhead_ratio`: trials that write their own TensorBoard summaries
  (histograms, images, text: trainable.summaries) over the same trials writing none, in one
  process, same configs, data and threads.
- `wandb_sweep_overhead_ratio`: a whole search through `run_search` with W&B offline (one
  logging actor and run per trial, the best-model artifact) over the same search with W&B
  disabled. TensorBoard logging is on in both.
- The search against plain loops, the feature cache, ASHA and Optuna: search.efficiency.
"""

from __future__ import annotations

import dataclasses
import io
import os
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch

from search.config.settings import SearchSettings, resolve
from search.efficiency import (
    feature_cache_speedup,
    full_budget,
    harness_overhead,
    image_feature_cache_speedup,
    optuna_peer,
)
from search.run import run_search
from trainable.config import TrialConfig
from trainable.datasets import build_data
from trainable.loop import run_trial
from trainable.pretrain import ensure_source_weights

# Trials spanning the default space: full fine-tuning, layer1-3 frozen, a linear probe.
TRIALS = (
    {"freeze_depth": 0, "backbone_lr": 3e-3, "head_lr": 3e-2},
    {"freeze_depth": 4, "backbone_lr": 3e-3, "head_lr": 3e-2},
    {"freeze_depth": 5, "backbone_lr": None, "head_lr": 3e-2},
)


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much work each measurement does."""

    trial_epochs: int  # epochs of each benchmark trial
    repeats: int  # passes of each variant (alternating)
    sweep_samples: int
    sweep_epochs: int
    sweep_repeats: int
    # The search vs the plain loop (and ASHA vs full budget vs Optuna alone)
    search_samples: int
    search_epochs: int
    search_repeats: int
    # The same search on 64 px digits with 100 shots a class (epochs about 6x longer), once
    longer_epochs: bool
    feature_depths: tuple[int, ...]  # freeze depths of ResNet-18 whose epochs are compared
    feature_epochs: int
    feature_repeats: int
    image_depths: tuple[int, ...]  # the same on an image folder of JPEGs (decoding included)
    image_epochs: int  # its uncached epochs take seconds
    image_repeats: int


FULL = Budget(
    trial_epochs=9, repeats=3, sweep_samples=8, sweep_epochs=9, sweep_repeats=2,
    search_samples=16, search_epochs=9, search_repeats=2, longer_epochs=True,  # the default
    feature_depths=(1, 2, 3, 4, 5), feature_epochs=9, feature_repeats=3, image_depths=(3, 4, 5),
    image_epochs=3, image_repeats=2,
)  # fmt: skip
QUICK = Budget(
    trial_epochs=2, repeats=1, sweep_samples=2, sweep_epochs=1, sweep_repeats=1,
    search_samples=3, search_epochs=2, search_repeats=1, longer_epochs=False,
    feature_depths=(4, 5), feature_epochs=2, feature_repeats=1, image_depths=(5,),
    image_epochs=2, image_repeats=1,
)  # fmt: skip


def _alternate(variants: dict[str, Any], repeats: int, measure: Any) -> dict[str, list[float]]:
    """Seconds of each variant over `repeats` passes, in the order A B, B A, A B, ..."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            times[name].append(measure(name, variants[name], repeat))
    return times


def trial_logging_overhead(budget: Budget, cache_dir: str, work: Path) -> dict[str, Any]:
    """Trials writing their own TensorBoard summaries vs the same trials writing none."""
    configs = [
        TrialConfig(**trial, max_epochs=budget.trial_epochs, cache_dir=cache_dir)
        for trial in TRIALS
    ]
    base = configs[0]
    ensure_source_weights(base.backbone, base.data, base.image_size, cache_dir, log=lambda _: None)
    data = build_data(base)
    torch.set_num_threads(1)

    def measure(name: str, logs: bool, repeat: int) -> float:
        began = time.perf_counter()
        for index, cfg in enumerate(configs):
            log_dir = work / f"{name}-{repeat}-{index}" if logs else None
            for _ in run_trial(cfg, data=data, log_dir=log_dir):
                pass
        return time.perf_counter() - began

    measure("warm-up", False, 0)  # first-use costs (weights file, kernels) hit neither variant
    times = _alternate({"summaries": True, "none": False}, budget.repeats, measure)
    ratio = statistics.median(times["summaries"]) / statistics.median(times["none"])
    return {"trial_logging_overhead_ratio": round(ratio, 3), "trial_logging_seconds": times}


def wandb_sweep_overhead(budget: Budget, cache_dir: str, work: Path) -> dict[str, Any]:
    """A search with W&B offline vs the same search with W&B disabled."""
    base = resolve(  # the defaults that depend on the data set, as the CLI fills them in
        SearchSettings(
            num_samples=budget.sweep_samples,
            max_epochs=budget.sweep_epochs,
            max_concurrent=1,  # one at a time: the same trials in both variants
            cache_dir=cache_dir,
            storage_path=str(work),
        )
    )

    def measure(name: str, mode: str, repeat: int) -> float:
        settings = dataclasses.replace(base, name=f"{name}-{repeat}", wandb=mode)
        began = time.perf_counter()
        with redirect_stdout(io.StringIO()):  # the search's own console report
            run_search(settings)
        return time.perf_counter() - began

    times = _alternate(
        {"offline": "offline", "disabled": "disabled"}, budget.sweep_repeats, measure
    )
    ratio = statistics.median(times["offline"]) / statistics.median(times["disabled"])
    return {"wandb_sweep_overhead_ratio": round(ratio, 3), "wandb_sweep_seconds": times}


def search_settings(budget: Budget) -> SearchSettings:
    """The benchmark's search: the default one (resnet_small on digits, W&B offline), its
    trials one at a time with every CPU, as the plain loop it is compared with runs them."""
    return resolve(
        SearchSettings(
            num_samples=budget.search_samples,
            max_epochs=budget.search_epochs,
            cpus_per_trial=float(os.cpu_count() or 1),
            wandb="offline",
        )
    )


def run_benchmark(quick: bool, cache_dir: str, log: Any = print) -> dict[str, Any]:
    """Every measurement, as one JSON-ready dict; what the runs write goes to a scratch folder.
    `log` hears which measurement runs (stderr from scripts/benchmark.py)."""
    budget = QUICK if quick else FULL
    settings = search_settings(budget)
    ensure_source_weights("resnet18", "digits", settings.image_size, cache_dir, log=log)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        report: dict[str, Any] = {"quick": quick, "budget": dataclasses.asdict(budget)}
        log("Measuring trial summaries' cost ...")
        report.update(trial_logging_overhead(budget, cache_dir, work / "trials"))
        log("Measuring W&B's cost ...")
        report.update(wandb_sweep_overhead(budget, cache_dir, work / "sweeps"))
        log("Measuring the search against a plain loop of its trials ...")
        report.update(harness_overhead(settings, budget.search_repeats, cache_dir, work / "h"))
        if budget.longer_epochs:
            log("Measuring the search against a plain loop on 64 px digits ...")
            longer = resolve(dataclasses.replace(settings, image_size=64, shots=100))
            report.update(harness_overhead(longer, 1, cache_dir, work / "h64", "harness_64px"))
        log("Measuring the same search with a full budget, and Optuna alone ...")
        report.update(full_budget(settings, cache_dir, work / "full"))
        spent = report["asha"]["trial_epochs"]
        report.update(optuna_peer(settings, spent, cache_dir, work / "optuna"))
        log("Measuring the frozen-feature cache ...")
        report.update(
            feature_cache_speedup(
                list(budget.feature_depths),
                budget.feature_epochs,
                budget.feature_repeats,
                cache_dir,
                work / "features",
            )
        )
        report.update(
            image_feature_cache_speedup(
                list(budget.image_depths), budget.image_epochs, budget.image_repeats,
                work / "images",
            )
        )  # fmt: skip
    return report


def format_markdown(report: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables of a report."""
    tables = [_overhead_table, _breakdown_table, _feature_table, _search_table]
    return "\n\n".join(table(report) for table in tables)


def _breakdown_table(report: dict[str, Any]) -> str:
    """Where each measured search's time went, next to its plain loop's epochs."""
    lines = [
        "| search | its epochs s | plain loop's epochs s | rest of its trials s "
        "| outside trials s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in ("harness", "harness_64px"):
        if f"{key}_breakdown" not in report:
            continue
        parts = report[f"{key}_breakdown"]
        search = parts["search"]
        lines.append(
            f"| `{key}` | {search['epochs']:.1f} | {parts['plain_loop_epochs']:.1f} "
            f"| {search['rest_of_trials']:.1f} | {search['outside_trials']:.1f} |"
        )
    return "\n".join(lines)


def _feature_table(report: dict[str, Any]) -> str:
    lines = [
        "| workload | `freeze_depth` | epoch s uncached | epoch s cached | speedup | build s "
        "| lookup s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for prefix, workload in (
        ("feature_cache", "`feature_cache_speedup`: digits, 32 px"),
        ("image_feature_cache", "`image_feature_cache_speedup`: JPEG folder, 128 px"),
    ):
        for depth, ratio in report[f"{prefix}_speedup"].items():
            seconds = report[f"{prefix}_epoch_seconds"][depth]
            lines.append(
                f"| {workload} | {depth} | {seconds['uncached']:.4f} | {seconds['cached']:.4f} "
                f"| {ratio:.1f}x | {report[f'{prefix}_build_seconds'][depth]:.2f} "
                f"| {report[f'{prefix}_lookup_seconds'][depth]:.3f} |"
            )
    return "\n".join(lines)


def _search_table(report: dict[str, Any]) -> str:
    rows = (
        ("harness: Optuna TPE + ASHA", report["asha"]),
        ("harness, full budget (no early stopping)", report["full_budget"]),
        ("Optuna alone: TPE + HyperbandPruner", report["optuna_alone"]),
    )
    lines = ["| search | best `val_acc` | trial-epochs | seconds |", "| --- | --- | --- | --- |"]
    for name, row in rows:
        lines.append(
            f"| {name} | {row['best_val_acc']:.3f} | {row['trial_epochs']} | {row['seconds']:.1f} |"
        )
    lines.append(f"\n`asha_epoch_fraction`: {report['asha_epoch_fraction']:.3f}")
    return "\n".join(lines)


def _overhead_table(report: dict[str, Any]) -> str:
    pairs = (
        ("trial_logging", report["trial_logging_seconds"], "summaries", "none"),
        ("wandb_sweep", report["wandb_sweep_seconds"], "offline", "disabled"),
        ("harness", report["harness_seconds"], "search", "plain_loop"),
        ("harness_64px", report.get("harness_64px_seconds"), "search", "plain_loop"),
    )
    lines = ["| figure | ratio | median seconds (with vs without) |", "| --- | --- | --- |"]
    for name, times, with_, without in pairs:
        if times is None:  # not measured by --quick
            continue
        seconds = (
            f"{statistics.median(times[with_]):.1f} vs {statistics.median(times[without]):.1f}"
        )
        lines.append(
            f"| `{name}_overhead_ratio` | {report[f'{name}_overhead_ratio']:.3f} | {seconds} |"
        )
    return "\n".join(lines)
