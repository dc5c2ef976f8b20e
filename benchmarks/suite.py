"""Performance of the harness, measured as ratios side by side in one run (scripts/benchmark.py).

This machine is noisy, so each figure compares two variants of the same work run alternately
(A B B A ...) and takes the ratio of their medians. The table is in BENCHMARKS.md.

- `trial_logging_overhead_ratio`: trials that write their own TensorBoard summaries
  (histograms, images, text: trainable.summaries) over the same trials writing none, in one
  process, same configs, data and threads.
- `wandb_sweep_overhead_ratio`: a whole search through `run_search` with W&B offline (one
  logging actor and run per trial, the best-model artifact) over the same search with W&B
  disabled. TensorBoard logging is on in both.
- The search against plain loops, the feature cache, ASHA and Optuna: benchmarks.efficiency.
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

from benchmarks import costs
from benchmarks.efficiency import (
    feature_cache_speedup,
    full_budget,
    harness_overhead,
    optuna_peer,
)
from search.config.settings import SearchSettings, resolve
from search.run.search import run_search
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
    # A folder of 500x375 JPEGs (4 classes) at 224 px: the input pipeline, the augmented cache
    photos_per_class: int
    pipeline_passes: int  # timed passes over its training images per measurement
    pipeline_repeats: int
    augmented_depths: tuple[int, ...]
    augmented_epochs: int


FULL = Budget(
    trial_epochs=9, repeats=3, sweep_samples=8, sweep_epochs=9, sweep_repeats=2,
    search_samples=16, search_epochs=9, search_repeats=2, longer_epochs=True,  # the default
    feature_depths=(1, 2, 3, 4, 5), feature_epochs=9, feature_repeats=3, photos_per_class=40,
    pipeline_passes=3, pipeline_repeats=2, augmented_depths=(3, 4, 5), augmented_epochs=3,
)  # fmt: skip
QUICK = Budget(
    trial_epochs=1, repeats=1, sweep_samples=2, sweep_epochs=1, sweep_repeats=1,
    search_samples=2, search_epochs=2, search_repeats=1, longer_epochs=False,
    feature_depths=(5,), feature_epochs=2, feature_repeats=1, photos_per_class=4,
    pipeline_passes=1, pipeline_repeats=1, augmented_depths=(5,), augmented_epochs=2,
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
        # The search as a user runs it leaves this experiment folder (its first repeat)
        report["experiment_mb"] = costs.folder_mb(work / "h" / "search-0")
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
        log("Measuring checkpoints, the input pipeline and the augmented-view cache ...")
        (work / "checkpoints").mkdir()
        report.update(costs.checkpoint_bytes(cache_dir, work / "checkpoints"))
        photos = costs.make_jpeg_folder(work / "photos", 4, budget.photos_per_class)
        report.update(
            costs.input_pipeline_rates(
                photos, str(work / "cache-pipeline"), budget.pipeline_passes,
                budget.pipeline_repeats,
            )
        )  # fmt: skip
        report.update(
            costs.augmented_cache_speedup(
                photos, list(budget.augmented_depths), budget.augmented_epochs,
                str(work / "cache-augmented"),
            )
        )  # fmt: skip
        report["help_seconds"] = costs.help_seconds()
    return report


def format_markdown(report: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables of a report."""
    tables = [
        _targets_table, _overhead_table, _breakdown_table, _checkpoint_table, _pipeline_table,
        _feature_table, _search_table,
    ]  # fmt: skip
    return "\n\n".join(table(report) for table in tables)


# (figure, how it is read from a report, the target, whether a value meets it)
TARGETS = (
    ("checkpoint at freeze_depth 5 / whole model", lambda r: r["checkpoint_bytes"]["5"]
     / r["checkpoint_bytes_whole"]["0"], "<= 0.01", lambda v: v <= 0.01),
    ("`experiment_mb`", lambda r: r["experiment_mb"], "<= 375", lambda v: v <= 375),
    ("`workers_2cpu` / `workers_1cpu`", lambda r: r["input_pipeline_img_s"]["workers_2cpu"]
     / r["input_pipeline_img_s"]["workers_1cpu"], ">= 1.6", lambda v: v >= 1.6),
    ("`workers_1cpu` / `inproc_1cpu`", lambda r: r["input_pipeline_img_s"]["workers_1cpu"]
     / r["input_pipeline_img_s"]["inproc_1cpu"], ">= 0.9", lambda v: v >= 0.9),
    ("`augmented_cache_speedup` at 4", lambda r: r["augmented_cache_speedup"].get("4"),
     ">= 3", lambda v: v >= 3),
    ("`augmented_cache_speedup` at 5", lambda r: r["augmented_cache_speedup"].get("5"),
     ">= 20", lambda v: v >= 20),
    ("`help_seconds`", lambda r: r["help_seconds"], "<= 1", lambda v: v <= 1),
    ("`harness_overhead_ratio`", lambda r: r["harness_overhead_ratio"], "<= 1.5",
     lambda v: v <= 1.5),
    ("`harness_64px_overhead_ratio`", lambda r: r.get("harness_64px_overhead_ratio"),
     "<= 1.15", lambda v: v <= 1.15),
)  # fmt: skip


def _targets_table(report: dict[str, Any]) -> str:
    """Each figure of issue 18's benchmark against its target."""
    lines = ["| figure | measured | target | met |", "| --- | --- | --- | --- |"]
    for name, read, target, met in TARGETS:
        try:
            value = read(report)
        except (KeyError, TypeError, ZeroDivisionError):
            value = None
        if value is None:  # not measured by --quick
            continue
        shown = f"{value:.4f}" if value < 0.1 else f"{value:,.2f}"
        lines.append(f"| {name} | {shown} | {target} | {'yes' if met(value) else 'no'} |")
    return "\n".join(lines)


def _checkpoint_table(report: dict[str, Any]) -> str:
    """Bytes of one checkpoint per freeze depth, lean and whole."""
    lines = [
        "| `freeze_depth` | lean checkpoint MB | whole-model checkpoint MB | lean / whole |",
        "| --- | --- | --- | --- |",
    ]
    for depth, lean in report["checkpoint_bytes"].items():
        whole = report["checkpoint_bytes_whole"][depth]
        lines.append(f"| {depth} | {lean / 1e6:.3f} | {whole / 1e6:.1f} | {lean / whole:.4f} |")
    lines.append(f"\n`experiment_mb`: {report['experiment_mb']:.1f}")
    return "\n".join(lines)


def _pipeline_table(report: dict[str, Any]) -> str:
    """Images per second of the input pipeline, and the augmented-view cache per depth."""
    rates = report["input_pipeline_img_s"]
    lines = ["| `input_pipeline_img_s` | img/s |", "| --- | --- |"]
    lines += [f"| `{name}` | {rate:.0f} |" for name, rate in rates.items()]
    lines += [
        "",
        "| `freeze_depth` | epoch s uncached | epoch s cached | `augmented_cache_speedup` "
        "| views built s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for depth, ratio in report["augmented_cache_speedup"].items():
        seconds = report["augmented_cache_epoch_seconds"][depth]
        lines.append(
            f"| {depth} | {seconds['uncached']:.3f} | {seconds['cached']:.4f} | {ratio:,.1f}x "
            f"| {report['augmented_cache_build_seconds'][depth]:.1f} |"
        )
    lines.append(f"\n`help_seconds`: {report['help_seconds']:.3f}")
    return "\n".join(lines)


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
    for prefix, workload in (("feature_cache", "`feature_cache_speedup`: digits, 32 px"),):
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
