"""Searchers side by side at the same trial-epoch budget: the ASHA-Optuna bridge, Ray's stock
OptunaSearch (same TPE set-up, same space) and random search, over several seeds.

Each run is a full search through `run_search` on the same task and settings; only the searcher
differs. ASHA lets runs spend different numbers of trial-epochs, so each run is read back in the
order its results arrived and scored by the best `val_acc` within the first B trial-epochs,
B being the smallest total any run spent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import ray
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.config.preflight import quick_problems, thorough_problems
from search.config.settings import METRIC, MODE, SearchSettings, resolve
from search.config.usage import UsageError
from search.config.validate import settings_problems
from search.run.optuna_bridge import build_sampler
from search.run.search import run_search
from search.run.session import start_ray
from search.run.tuner import build_space
from trainable import metrics

METHODS = ("bridge", "stock", "random")


def method_settings(method: str, base: SearchSettings, seed: int) -> SearchSettings:
    """The settings of one run: its own experiment name, seed and sampler."""
    return resolve(
        dataclasses.replace(
            base,
            name=f"{method}-seed{seed}",
            seed=seed,
            sampler="random" if method == "random" else "tpe",
        )
    )


def method_searcher(method: str, settings: SearchSettings) -> Searcher | None:
    """Ray's stock OptunaSearch for 'stock'; None (the harness's bridge) otherwise."""
    if method != "stock":
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # it creates its study right away
    return OptunaSearch(  # Ray's own bridge, given exactly the harness's space and sampler
        space=build_space(settings),
        metric=METRIC,
        mode=MODE,
        sampler=build_sampler("tpe", settings.seed, settings.num_samples),
    )


def budget_curve(experiment_dir: Path, summary: dict) -> list[float]:
    """Best metric so far after each trial-epoch, in the order the results arrived."""
    rows = []
    for trial in summary["trials"]:
        for row in metrics.result_rows(experiment_dir / trial["path"]):
            if METRIC in row and metrics.EPOCH in row:
                # `timestamp` has 1 s resolution: break ties by the trial's own clock.
                rows.append((row["timestamp"], row["time_total_s"], row[METRIC]))
    rows.sort()
    curve, best = [], float("-inf")
    for _, _, value in rows:
        best = max(best, value)
        curve.append(best)
    return curve


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def compare(
    base: SearchSettings, seeds: list[int], say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every method for every seed under `base.storage_path`; return the comparison."""
    say = say or (lambda line: print(line, flush=True))
    planned = [method_settings(method, base, seed) for seed in seeds for method in METHODS]
    checks = (settings_problems, quick_problems, thorough_problems)
    problems = sorted({p for settings in planned for check in checks for p in check(settings)})
    if problems:  # e.g. an earlier comparison in the same folder: never overwritten
        raise UsageError("; ".join(problems))
    runs: list[dict[str, Any]] = []
    total = len(seeds) * len(METHODS)
    start_ray()  # one Ray for every run: ~10 s of start and stop saved per run
    try:
        _run_all(base, seeds, runs, total, say)
    finally:
        ray.shutdown()
    return _report(base, seeds, runs)


def _run_all(
    base: SearchSettings,
    seeds: list[int],
    runs: list[dict[str, Any]],
    total: int,
    say: Callable[[str], None],
) -> None:
    """Run every (seed, method) in turn, appending each run's curve to `runs`."""
    for seed in seeds:
        for method in METHODS:
            settings = method_settings(method, base, seed)
            log = settings.experiment_dir.with_suffix(".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            began = time.monotonic()
            with log.open("w") as out, contextlib.redirect_stdout(out):
                summary = run_search(settings, method_searcher(method, settings))
            curve = budget_curve(settings.experiment_dir, summary)
            runs.append(
                {"method": method, "seed": seed, "curve": curve, "trials": len(summary["trials"])}
            )
            say(
                f"[{len(runs)}/{total}] {method:<6} seed {seed}: {len(curve)} trial-epochs, "
                f"best {METRIC} {max(curve, default=float('nan')):.3f} "
                f"({time.monotonic() - began:.0f} s; log {log})"
            )


def _report(base: SearchSettings, seeds: list[int], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Cut every run at the smallest budget any run spent; summarise per method."""
    budget = min(len(run["curve"]) for run in runs)
    for run in runs:
        curve = run.pop("curve")
        run["trial_epochs"] = len(curve)
        run["best_at_budget"] = curve[budget - 1] if budget else None
        run["best_overall"] = curve[-1] if curve else None
    scores = {m: [r["best_at_budget"] for r in runs if r["method"] == m] for m in METHODS}
    report: dict[str, Any] = {
        "task": {
            "space": base.space,
            "data": base.data,
            "weights": base.weights,
            "num_samples": base.num_samples,
            "max_epochs": base.max_epochs,
            "grace_period": base.grace_period,
            "reduction_factor": base.reduction_factor,
            "concurrency": base.concurrency,
        },
        "seeds": seeds,
        "budget_trial_epochs": budget,
        "runs": runs,
    }
    if budget:
        report["methods"] = {m: summarise(v) for m, v in scores.items()}
        for other in ("stock", "random"):
            diffs = [b - o for b, o in zip(scores["bridge"], scores[other], strict=True)]
            report[f"bridge_minus_{other}"] = {
                **summarise(diffs),
                "wins": sum(d > 0 for d in diffs),
                "ties": sum(d == 0 for d in diffs),
                "losses": sum(d < 0 for d in diffs),
            }
    return report


def format_markdown(report: dict[str, Any]) -> str:
    """The comparison as Markdown tables, as BENCHMARKS.md shows it."""
    if "methods" not in report:
        return "No run reported a result."
    seeds = report["seeds"]
    lines = [
        f"Best `{METRIC}` within the first {report['budget_trial_epochs']} trial-epochs "
        f"(the smallest total of any run), {len(seeds)} seeds:",
        "",
        "| searcher | mean | std | min | max | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in seeds) + " |",
    ]
    for method, stats in report["methods"].items():
        per_seed = {r["seed"]: r["best_at_budget"] for r in report["runs"] if r["method"] == method}
        cells = [f"{stats[k]:.3f}" for k in ("mean", "std", "min", "max")]
        cells += [f"{per_seed[s]:.3f}" for s in seeds]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Whole runs (each spends what ASHA let it):",
        "",
        f"| searcher | best `{METRIC}` mean | std | trial-epochs mean | min | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method in report["methods"]:
        own = [r for r in report["runs"] if r["method"] == method]
        best = summarise([r["best_overall"] for r in own])
        spent = summarise([r["trial_epochs"] for r in own])
        lines.append(
            f"| {method} | {best['mean']:.3f} | {best['std']:.3f} | {spent['mean']:.1f} "
            f"| {spent['min']:.0f} | {spent['max']:.0f} |"
        )
    lines.append("")
    for other in ("stock", "random"):
        d = report[f"bridge_minus_{other}"]
        lines.append(
            f"- bridge - {other}: {d['mean']:+.3f} +- {d['std']:.3f} per seed "
            f"({d['wins']} wins, {d['ties']} ties, {d['losses']} losses)"
        )
    return "\n".join(lines)
