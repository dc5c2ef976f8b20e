"""Performance of the harness, measured as ratios side by side in one run (scripts/benchmark.py).

This machine is noisy, so each figure compares two variants of the same work run alternately
(A B B A ...) and takes the ratio of their medians. The table is in BENCHMARKS.md.

- `trial_logging_overhead_ratio`: trials that write their own TensorBoard summaries
  (histograms, images, text: trainable.summaries) over the same trials writing none, in one
  process, same configs, data and threads.
- `wandb_sweep_overhead_ratio`: a whole search through `run_search` with W&B offline (one
  logging actor and run per trial, the best-model artifact) over the same search with W&B
  disabled. TensorBoard logging is on in both.
"""

from __future__ import annotations

import dataclasses
import io
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch

from search.run import run_search
from search.settings import SearchSettings, resolve
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


FULL = Budget(trial_epochs=9, repeats=3, sweep_samples=8, sweep_epochs=9, sweep_repeats=2)
QUICK = Budget(trial_epochs=2, repeats=1, sweep_samples=2, sweep_epochs=1, sweep_repeats=1)


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


def run_benchmark(quick: bool, cache_dir: str) -> dict[str, Any]:
    """Every measurement, as one JSON-ready dict; what the runs write goes to a scratch folder."""
    budget = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        report: dict[str, Any] = {"quick": quick, "budget": dataclasses.asdict(budget)}
        report.update(trial_logging_overhead(budget, cache_dir, work / "trials"))
        report.update(wandb_sweep_overhead(budget, cache_dir, work / "sweeps"))
    return report


def format_markdown(report: dict[str, Any]) -> str:
    """The BENCHMARKS.md table of a report."""
    pairs = (
        ("trial_logging", report["trial_logging_seconds"], "summaries", "none"),
        ("wandb_sweep", report["wandb_sweep_seconds"], "offline", "disabled"),
    )
    lines = ["| figure | ratio | median seconds (with vs without) |", "| --- | --- | --- |"]
    for name, times, with_, without in pairs:
        seconds = (
            f"{statistics.median(times[with_]):.1f} vs {statistics.median(times[without]):.1f}"
        )
        lines.append(
            f"| `{name}_overhead_ratio` | {report[f'{name}_overhead_ratio']:.3f} | {seconds} |"
        )
    return "\n".join(lines)
