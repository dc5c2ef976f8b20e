"""The end of a search: `summary.json` in the experiment folder, and the console report."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

from ray.tune import ExperimentAnalysis

from search.config.settings import METRIC, MODE, SearchSettings
from search.experiment.layout import (
    BUDGET_FILE,
    CHECKPOINT_GLOB,
    PRESCREEN_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
)
from search.experiment.outcomes import (
    ENDED,
    error_reason,
    fmt,
    stop_reason,
    trial_label,
    trial_number,
)
from search.experiment.retention import best_checkpoint
from search.experiment.study import study_url
from search.results.trust import interval_text
from trainable import metrics
from trainable.checkpoint import saved_epoch


def searched_params(summary: dict) -> list[str]:
    """The searched hyperparameters of a summary's trials, in the space's order."""
    return list(summary["trials"][0]["config"]) if summary["trials"] else []


def _number(value: Any) -> float | int | None:
    """A JSON-safe number: NaN and infinities become None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def read_json(path: Path) -> Any:
    """A JSON file of the experiment, or None when it is missing or damaged."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def budget_runs(root: Path) -> list[dict[str, Any]]:
    """The runs of the experiment that had a --time-budget (time_budget.json), oldest first."""
    runs = read_json(root / BUDGET_FILE)
    return runs if isinstance(runs, list) else []


def best_per_pair(trials: list[dict[str, Any]]) -> dict[tuple[Any, Any], float]:
    """The best val_acc of the trials of each (backbone, freeze_depth) some trial tried."""
    found: dict[tuple[Any, Any], float] = {}
    for trial in trials:
        key = (trial["config"].get("backbone"), trial["config"].get("freeze_depth"))
        if trial["best_val_acc"] is not None:
            found[key] = max(found.get(key, 0.0), trial["best_val_acc"])
    return found


def prescreen_summary(root: Path, trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """prescreen.json with how far its ranking agreed with the trials': Kendall's tau between
    each probed (backbone, freeze_depth)'s probe score and the best val_acc of the trials with
    that pair, over the pairs some trial tried."""
    from trainable.probe import kendall_tau

    screen = read_json(root / PRESCREEN_FILE)
    if not isinstance(screen, dict):
        return None
    found = best_per_pair(trials)
    pairs = [
        (row["score"], found[(row["backbone"], row["freeze_depth"])])
        for row in screen.get("scores", [])
        if (row["backbone"], row["freeze_depth"]) in found
    ]
    tau = kendall_tau([p for p, _ in pairs], [f for _, f in pairs]) if len(pairs) > 1 else None
    return {
        **screen,
        "kendall_tau": None if tau is None else round(tau, 3),
        "pairs_compared": len(pairs),
    }


def _trial_entry(
    trial: Any,
    history: Any,
    searched: list[str],
    settings: SearchSettings,
    root: Path,
    out_of_time: set[str],
) -> dict[str, Any]:
    """One trial of summary.json: its config, how far it got and why it stopped."""
    has_rows = history is not None and not history.empty and METRIC in history
    epochs = int(history[metrics.EPOCH].max()) if has_rows else 0
    # Of epochs tied on the best val_acc, the last: the one whose checkpoint Ray keeps.
    best_row = history.loc[history[METRIC][::-1].idxmax()] if has_rows else None
    plateau = bool(has_rows and metrics.PLATEAU in history and history[metrics.PLATEAU].max() > 0)
    reason = stop_reason(
        trial.status == "ERROR", trial.status in ENDED, epochs, settings.max_epochs, plateau,
        trial.trial_id in out_of_time,
    )  # fmt: skip
    entry = {
        "trial_id": trial.trial_id,
        "number": trial_number(trial.config),
        "status": trial.status,
        "stop_reason": reason,
        "epochs": epochs,
        "val_acc": _number(float(history[METRIC].iloc[-1])) if has_rows else None,
        "best_val_acc": _number(float(best_row[METRIC])) if best_row is not None else None,
        "best_epoch": int(best_row[metrics.EPOCH]) if best_row is not None else None,
        "config": {key: trial.config.get(key) for key in searched},
        "path": Path(trial.path).relative_to(root).as_posix(),
        # trained on the frozen stages' output computed once (trainable.features)
        "cached_features": bool(
            has_rows
            and metrics.CACHED_FEATURES in history
            and history[metrics.CACHED_FEATURES].max() > 0
        ),
    }
    missed = best_row.get(metrics.VAL_CLASSES_MISSED) if best_row is not None else None
    if missed is not None and math.isfinite(missed):  # not logged before it was a metric
        entry["classes_missed"] = int(missed)  # at its best epoch
    if reason == "error":
        entry["error"] = error_reason(trial)
    return entry


def _best_checkpoint(path: str, root: Path) -> str | None:
    """The folder of the trial's best checkpoint, relative to the experiment; None when it has
    none (no epoch ended, or search.experiment.retention removed it)."""
    folders = [p.name for p in (root / path).glob(CHECKPOINT_GLOB) if p.is_dir()]
    best = best_checkpoint(metrics.result_rows(root / path), folders)
    return f"{path}/{best}" if best else None


def build_summary(settings: SearchSettings, searched: list[str], wandb_mode: str) -> dict:
    """Read the experiment back from disk and summarise it, best trial first."""
    root = settings.experiment_dir
    analysis = ExperimentAnalysis(str(root), default_metric=METRIC, default_mode=MODE)
    frames = analysis.trial_dataframes
    runs = budget_runs(root)
    out_of_time = {trial_id for run in runs for trial_id in run.get("stopped", [])}
    trials = [
        (_trial_entry(t, frames.get(t.trial_id), searched, settings, root, out_of_time), t)
        for t in analysis.trials
    ]
    for entry, _ in trials:
        entry["checkpoint"] = _best_checkpoint(entry["path"], root)
        if entry["checkpoint"]:  # of epochs tied on val_acc, Ray keeps the later one: name
            # its epoch, for every trial (a damaged file: the first best epoch)
            entry["best_epoch"] = saved_epoch(root / entry["checkpoint"]) or entry["best_epoch"]
    trials.sort(key=lambda pair: -(pair[0]["best_val_acc"] or -1.0))
    best = None
    if trials and trials[0][0]["best_val_acc"] is not None:
        entry = trials[0][0]
        folder = entry["checkpoint"]
        best = {
            "trial_id": entry["trial_id"],
            "number": entry["number"],
            "config": entry["config"],
            METRIC: entry["best_val_acc"],
            "epoch": entry["best_epoch"],
            "checkpoint": folder,
        }
    fixed = {k: v for k, v in trials[0][1].config.items() if k not in searched} if trials else {}
    return {
        "experiment": settings.name,
        "space": settings.space,
        "metric": METRIC,
        "mode": MODE,
        "best": best,
        "trials": [entry for entry, _ in trials],
        "fixed": fixed,
        "budget": {
            "num_samples": settings.num_samples,
            "max_epochs": settings.max_epochs,
            "trial_epochs_run": sum(entry["epochs"] for entry, _ in trials),
        },
        "time_budget": runs or None,
        "prescreen": prescreen_summary(root, [entry for entry, _ in trials]),
        "wandb": wandb_mode,
        # The Optuna study: trials COMPLETE, PRUNED (stopped by ASHA) or FAIL, with their curves.
        "study": {"file": STUDY_FILE, "name": settings.name}
        if (root / STUDY_FILE).exists()
        else None,
    }


def write_summary(settings: SearchSettings, summary: dict) -> Path:
    """Write summary.json into the experiment folder; return its path."""
    path = settings.experiment_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def format_report(summary: dict, settings: SearchSettings, shown: Path) -> str:
    """The console report: ranked trials, the best configuration and how to browse results.

    `shown` is the experiment folder as the user should type it (relative when possible).
    """
    searched = searched_params(summary)
    header = [
        "#", "trial", *searched, "epochs", "best val_acc", "95% interval", "vs best",
        "last val_acc", "stopped",
    ]  # fmt: skip
    rows = [
        [
            str(rank),
            trial_label(t.get("number"), t["trial_id"]),
            *(fmt(t["config"][k]) for k in searched),
            f"{t['epochs']}/{settings.max_epochs}",
            fmt(t["best_val_acc"]),
            interval_text(t.get("val_acc_interval")),
            "best" if rank == 1 else "tie" if t.get("tie_with_best") else "",
            fmt(t["val_acc"]),
            t["stop_reason"] + (f": {t['error'][:60]}" if "error" in t else ""),
        ]
        for rank, t in enumerate(summary["trials"], start=1)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [f"\nTrials of {summary['experiment']}, best {METRIC} first:"]
    for row in [header, *rows]:
        cells = [
            c.rjust(w) if i != 1 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  " + "  ".join([*cells, row[-1]]))
    budget = summary["budget"]
    run, full = budget["trial_epochs_run"], budget["num_samples"] * budget["max_epochs"]
    named = {"asha": "ASHA", "plateau": "--patience", "budget": "--time-budget"}
    stoppers = {t["stop_reason"] for t in summary["trials"]} & set(named)
    why = " and ".join(named[s] for s in sorted(stoppers))
    lines.append(
        f"  {run} of {full} trial-epochs run"
        + (f" ({why or 'errors and interrupts'} stopped the rest)" if run < full else "")
    )
    cached = sum(t.get("cached_features", False) for t in summary["trials"])
    if cached:
        lines.append(
            f"  {cached} of {len(summary['trials'])} trials trained on cached frozen features "
            "(see each trial's trial.log)"
        )
    screen = summary.get("prescreen")
    if screen and screen.get("kendall_tau") is not None:
        lines.append(
            f"  Pre-screen vs trials: Kendall's tau {screen['kendall_tau']:+.2f} over "
            f"{screen['pairs_compared']} (backbone, freeze_depth) pairs the trials tried"
        )
    best = summary["best"]
    if best is None:
        lines.append("\nNo trial reported a result; see the errors above.")
    else:
        config = "  ".join(f"{k}={fmt(v)}" for k, v in best["config"].items())
        interval = best.get("val_acc_interval")
        within = (
            f" (95% interval {interval_text(interval)} on {summary['val_images']} validation "
            "images)"
            if interval
            else ""
        )
        ties = sum(t.get("tie_with_best", False) for t in summary["trials"][1:])
        lines += [
            f"\nBest: trial {trial_label(best.get('number'), best['trial_id'])}, "
            f"{METRIC} {fmt(best[METRIC])}{within} "
            f"at epoch {best['epoch']}"
            + (f"; {ties} more trial{' ties' if ties == 1 else 's tie'} with it" if ties else ""),
            f"  {config}",
            f"  checkpoint: {shown / best['checkpoint']}" if best["checkpoint"] else "",
        ]
    for warning in summary.get("warnings", []):  # how far to trust the result: search.results.trust
        lines.append(
            textwrap.fill(
                f"Warning: {warning}", width=100, subsequent_indent="  ", break_on_hyphens=False
            )
        )
    lines.append(f"\nSummary: {shown / SUMMARY_FILE}")
    if summary.get("report"):
        lines.append(f"Report:  {shown / summary['report']}   (open in a browser; works offline)")
    if best is not None and best["checkpoint"]:
        lines.append(f"Export the best model:  python scripts/export.py {shown} --out model.pt")
    lines += [
        "Browse the trials:",
        f"  python scripts/board.py {shown}   (TensorBoard on this machine; prints its URL)",
    ]
    if summary.get("study"):
        lines.append(f"  optuna-dashboard {study_url(shown)}   (pip install optuna-dashboard)")
    if summary["wandb"] == "offline":
        lines.append(f"  wandb sync {shown}/wandb/offline-run-*   (uploads the offline W&B runs)")
    elif summary["wandb"] == "online":
        lines.append(f"  W&B: project runs grouped as {summary['experiment']!r}")
    if summary.get("wandb_model"):
        lines.append(f"  W&B model artifact: {summary['wandb_model']}:best (the best model)")
    return "\n".join(line for line in lines if line != "")
