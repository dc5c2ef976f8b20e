"""How fast the harness searches, measured against plain loops (scripts/benchmark.py).

- `harness_overhead`: the search as a user runs it (`scripts/search.py`, one process with
  Ray, Optuna, ASHA, TensorBoard, W&B offline, a checkpoint every epoch) vs a plain PyTorch
  loop (`replay`) running the same trials for the same epochs, on the same data and threads,
  one after another in one process. Both are timed as whole processes, start-up included.
  The same search gives `asha_epoch_fraction`, and its best `val_acc` is compared with a
  full-budget search (no early stopping) and with Optuna on its own (`optuna_alone`: TPE
  and its HyperbandPruner, the same training code, the trial-epochs the ASHA search used).
- `feature_cache_speedup`: epoch time of trials recomputing their frozen stages over the
  same trials training on cached features (trainable.features), per freeze depth.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from search.config.settings import SearchSettings, resolve
from search.run.optuna_bridge import build_sampler
from search.run.tuner import build_param_space, build_space
from trainable import metrics
from trainable.config import TrialConfig
from trainable.datasets import build_data
from trainable.defaults import DIGITS_IMAGE_SIZE
from trainable.features import FEATURES_DIR, cached_features
from trainable.loop import DivergedError, build_trial_model, run_trial
from trainable.pretrain import ensure_source_weights

ROOT = Path(__file__).resolve().parent.parent
SEARCH_SCRIPT = ROOT / "scripts" / "search.py"


def fresh_cache(cache_dir: str, scratch: Path, image_size: int = DIGITS_IMAGE_SIZE) -> str:
    """A new cache folder holding the ResNet-18 pretrained on digits' source task (from
    `cache_dir`, pretrained there once) and nothing else: each measured run builds its own
    frozen features, as a first search does."""
    scratch.mkdir(parents=True)
    weights = ensure_source_weights("resnet18", "digits", image_size, cache_dir, log=_stderr)
    shutil.copy2(weights, scratch / weights.name)
    return str(scratch)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _timed(command: list[str]) -> tuple[float, str]:
    """Run a command to the end; (wall seconds, stdout). A failure raises with its stderr."""
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stdout


def search_command(settings: SearchSettings, name: str, storage: Path, cache: str) -> list[str]:
    """The scripts/search.py command line of `settings`: one trial at a time."""
    return [
        sys.executable, str(SEARCH_SCRIPT),
        "--space", settings.space,
        "--data", settings.data,
        "--image-size", str(settings.image_size),
        "--shots", str(settings.shots),
        "--num-samples", str(settings.num_samples),
        "--max-epochs", str(settings.max_epochs),
        "--grace-period", str(settings.grace_period),
        "--max-concurrent", "1",  # the trials of the plain loop, in the same order
        "--cpus-per-trial", f"{settings.cpus_per_trial:g}",
        "--seed", str(settings.seed),
        "--wandb", settings.wandb,
        "--name", name,
        "--storage-path", str(storage),
        "--cache-dir", cache,
    ]  # fmt: skip


def trials_run(experiment: Path) -> list[tuple[dict[str, Any], int, bool]]:
    """(params.json, epochs run, whether it failed) of each trial of a finished search, in the
    order they started (each writes its params.json as it starts)."""
    summary = json.loads((experiment / "summary.json").read_text())
    trials = []
    for trial in summary["trials"]:
        params = experiment / trial["path"] / "params.json"
        failed = trial["stop_reason"] == "error"
        trials.append((params.stat().st_mtime_ns, json.loads(params.read_text()), trial, failed))
    trials.sort(key=lambda t: t[0])
    return [(params, trial["epochs"], failed) for _, params, trial, failed in trials]


def replay(experiment: Path | str, cache_dir: str) -> None:
    """The plain loop: each trial of `experiment` again for the epochs it ran, in one process,
    with no Ray, logging or checkpoints; a trial that failed (diverged) runs until it fails
    again, as in the search. Its features go to `cache_dir` (built anew). Prints the seconds
    its epochs took, as JSON."""
    trials = trials_run(Path(experiment))
    first = TrialConfig.from_dict({**trials[0][0], "cache_dir": cache_dir})
    torch.set_num_threads(first.num_threads)
    data = build_data(first)  # one data set for all, as the search's trial processes reuse it
    epoch_seconds = 0.0
    for params, epochs, failed in trials:
        cfg = TrialConfig.from_dict({**params, "cache_dir": cache_dir})
        try:
            for done, (result, _) in enumerate(run_trial(cfg, data=data), start=1):
                epoch_seconds += result[metrics.EPOCH_SECONDS]
                if done == epochs and not failed:
                    break
        except DivergedError:
            pass
    print(json.dumps({"epoch_seconds": epoch_seconds}))


def replay_command(experiment: Path, cache_dir: str) -> list[str]:
    code = "import sys; from benchmarks.efficiency import replay; replay(*sys.argv[1:3])"
    return [sys.executable, "-c", code, str(experiment), cache_dir]


def search_breakdown(experiment: Path, wall: float) -> dict[str, float]:
    """Where a one-at-a-time search's wall time went: its trials' epochs, the rest of its
    trials' time (building the model and features, checkpoints, reporting), and everything
    outside trials (start-up, Ray, the summary, the W&B artifact, shutdown)."""
    epochs = trial_time = 0.0
    for results in experiment.glob(f"*/{metrics.RESULT_FILE}"):
        rows = metrics.result_rows(results.parent)
        if not rows:  # failed before its first epoch ended
            continue
        epochs += sum(row[metrics.EPOCH_SECONDS] for row in rows)
        trial_time += rows[-1]["time_total_s"]
    return {
        "epochs": round(epochs, 1),
        "rest_of_trials": round(trial_time - epochs, 1),
        "outside_trials": round(wall - trial_time, 1),
    }


def harness_overhead(
    settings: SearchSettings, repeats: int, cache_dir: str, work: Path, key: str = "harness"
) -> dict[str, Any]:
    """The search vs the plain loop of its trials, alternated (search, loop; loop, search;
    ...: a loop replays the latest search); and what the search's ASHA spent."""
    times: dict[str, list[float]] = {"search": [], "plain_loop": []}
    loop_epochs: list[float] = []

    def search(repeat: int) -> None:
        cache = fresh_cache(cache_dir, work / f"cache-search-{repeat}", settings.image_size)
        times["search"].append(_timed(search_command(settings, f"search-{repeat}", work, cache))[0])

    def loop(repeat: int, experiment: Path) -> None:
        cache = fresh_cache(cache_dir, work / f"cache-loop-{repeat}", settings.image_size)
        seconds, out = _timed(replay_command(experiment, cache))
        times["plain_loop"].append(seconds)
        loop_epochs.append(json.loads(out.strip().splitlines()[-1])["epoch_seconds"])

    for repeat in range(repeats):
        if repeat % 2 == 0:
            search(repeat)
            loop(repeat, work / f"search-{repeat}")
        else:
            loop(repeat, work / f"search-{repeat - 1}")
            search(repeat)
    summary = json.loads((work / "search-0" / "summary.json").read_text())
    budget = summary["budget"]
    ratio = statistics.median(times["search"]) / statistics.median(times["plain_loop"])
    report: dict[str, Any] = {
        f"{key}_overhead_ratio": round(ratio, 3),
        f"{key}_seconds": times,
        # The first search, and the loop that replayed it
        f"{key}_breakdown": {
            "search": search_breakdown(work / "search-0", times["search"][0]),
            "plain_loop_epochs": round(loop_epochs[0], 1),
        },
    }
    if key != "harness":
        return report
    return {
        **report,
        "asha_epoch_fraction": round(
            budget["trial_epochs_run"] / (budget["num_samples"] * budget["max_epochs"]), 3
        ),
        "asha": {
            "best_val_acc": summary["best"][metrics.VAL_ACC],
            "trial_epochs": budget["trial_epochs_run"],
            "seconds": round(statistics.median(times["search"]), 1),
            "cached_trials": sum(t["cached_features"] for t in summary["trials"]),
        },
    }


def full_budget(settings: SearchSettings, cache_dir: str, work: Path) -> dict[str, Any]:
    """The same search with no early stopping: ASHA's one rung at max_epochs."""
    full = resolve(SearchSettings(**{**settings.to_dict(), "grace_period": settings.max_epochs}))
    cache = fresh_cache(cache_dir, work / "cache-full", settings.image_size)
    seconds, _ = _timed(search_command(full, "full-budget", work, cache))
    summary = json.loads((work / "full-budget" / "summary.json").read_text())
    return {
        "full_budget": {
            "best_val_acc": summary["best"][metrics.VAL_ACC],
            "trial_epochs": summary["budget"]["trial_epochs_run"],
            "seconds": round(seconds, 1),
        }
    }


def optuna_alone(settings_json: str, trial_epochs: int, cache_dir: str) -> dict[str, Any]:
    """Optuna without Ray: TPE (the harness's sampler set-up) and its HyperbandPruner, the
    harness's training code, until `trial_epochs` epochs are spent. Prints and returns its
    best val_acc and what it ran."""
    settings = resolve(SearchSettings(**json.loads(settings_json)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=build_sampler("tpe", settings.seed, settings.num_samples),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=settings.grace_period,
            max_resource=settings.max_epochs,
            reduction_factor=settings.reduction_factor,
        ),
    )
    space = build_space(settings)
    fixed = {**build_param_space(settings), "cache_dir": cache_dir}
    torch.set_num_threads(fixed["num_threads"])
    data = build_data(TrialConfig.from_dict(fixed))
    spent, best = 0, 0.0
    while spent < trial_epochs:
        trial = study.ask()
        cfg = TrialConfig.from_dict({**fixed, **space(trial)})
        state, value = optuna.trial.TrialState.COMPLETE, None
        try:
            for result, _ in run_trial(cfg, data=data):
                spent += 1
                value = result[metrics.VAL_ACC]
                best = max(best, value)
                trial.report(value, result[metrics.EPOCH])
                if trial.should_prune() or spent >= trial_epochs:
                    state = optuna.trial.TrialState.PRUNED
                    break
        except Exception:  # a diverged trial: failed, as the harness records it
            state = optuna.trial.TrialState.FAIL
        study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state)
    report = {"best_val_acc": best, "trial_epochs": spent, "trials": len(study.trials)}
    print(json.dumps(report))
    return report


def optuna_peer(
    settings: SearchSettings, trial_epochs: int, cache_dir: str, work: Path
) -> dict[str, Any]:
    """`optuna_alone` in its own process, timed whole like the search."""
    code = (
        "import sys; from benchmarks.efficiency import optuna_alone; "
        "optuna_alone(sys.argv[1], int(sys.argv[2]), sys.argv[3])"
    )
    cache = fresh_cache(cache_dir, work / "cache-optuna", settings.image_size)
    settings_json = json.dumps(settings.to_dict())
    seconds, out = _timed([sys.executable, "-c", code, settings_json, str(trial_epochs), cache])
    report = json.loads(out.strip().splitlines()[-1])
    return {"optuna_alone": {**report, "seconds": round(seconds, 1)}}


def _epoch_seconds(cfg: TrialConfig, data: Any) -> list[float]:
    return [result[metrics.EPOCH_SECONDS] for result, _ in run_trial(cfg, data=data)]


def feature_cache_speedup(
    depths: list[int], epochs: int, repeats: int, cache_dir: str, work: Path
) -> dict[str, Any]:
    """Per freeze depth: median epoch seconds recomputing the frozen stages over training on
    cached features (ResNet-18, digits, source weights, one thread), alternated."""
    cache = fresh_cache(cache_dir, work / "cache-features")
    data = build_data(TrialConfig(cache_dir=cache))
    return _speedups({}, data, depths, epochs, repeats, cache, "feature_cache")


def _speedups(
    recipe: dict[str, Any],
    data: Any,
    depths: list[int],
    epochs: int,
    repeats: int,
    cache: str,
    prefix: str,
) -> dict[str, Any]:
    """Cached vs uncached epoch seconds of `recipe`'s trials per depth, alternated."""
    torch.set_num_threads(1)
    speedup, seconds, build, lookup = {}, {}, {}, {}
    for depth in depths:
        last = depth == 5  # a linear probe: no backbone learning rate
        cfg = TrialConfig(
            freeze_depth=depth, backbone_lr=None if last else 3e-3, head_lr=3e-2,
            max_epochs=epochs, cache_dir=cache, **recipe,
        )  # fmt: skip
        entry = cached_features(cfg, build_trial_model(cfg, len(data.classes)), data)
        build[str(depth)] = round(getattr(entry, "built_seconds", 0.0), 3)
        # What each later trial pays to find the entry: hash the prefix, probe, map the file
        model = build_trial_model(cfg, len(data.classes))
        began = time.perf_counter()
        cached_features(cfg, model, data)
        lookup[str(depth)] = round(time.perf_counter() - began, 3)
        variants: dict[str, Callable[[], list[float]]] = {
            "cached": lambda cfg=cfg: _epoch_seconds(cfg, data),
            "uncached": lambda cfg=cfg: _epoch_seconds(
                TrialConfig(**{**cfg.to_dict(), "feature_cache": False}), data
            ),
        }
        times: dict[str, list[float]] = {"cached": [], "uncached": []}
        for repeat in range(repeats):
            for name in ("cached", "uncached") if repeat % 2 == 0 else ("uncached", "cached"):
                times[name] += variants[name]()
        cached, uncached = statistics.median(times["cached"]), statistics.median(times["uncached"])
        speedup[str(depth)] = round(uncached / cached, 1)
        seconds[str(depth)] = {"cached": round(cached, 4), "uncached": round(uncached, 4)}
    shutil.rmtree(Path(cache) / FEATURES_DIR, ignore_errors=True)
    return {
        f"{prefix}_speedup": speedup,
        f"{prefix}_epoch_seconds": seconds,
        f"{prefix}_build_seconds": build,
        f"{prefix}_lookup_seconds": lookup,
    }
