"""Small builders returning the Ray Tune objects of one search."""

from __future__ import annotations

from typing import Any

from optuna.samplers import TPESampler
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search.settings import METRIC, MODE, SearchSettings
from spaces import get_space
from trainable import metrics
from trainable.config import TrialConfig
from trainable.ray_entry import train_transfer


def build_param_space(settings: SearchSettings) -> dict[str, Any]:
    """Every TrialConfig field, searched or fixed: each trial's params.json is a full recipe."""
    return {
        **TrialConfig().to_dict(),  # defaults first, so nothing a trial uses goes unrecorded
        **get_space(settings.space),
        "data": settings.data,
        "weights": settings.weights,
        "max_epochs": settings.max_epochs,  # the trial's epochs and ASHA's max_t: one value
        "seed": settings.seed,
        "num_threads": max(1, int(settings.cpus_per_trial)),
        "cache_dir": settings.cache_dir,
    }


def build_searcher(settings: SearchSettings) -> OptunaSearch:
    """Optuna's TPE, seeded; the space comes from the Tuner's param_space."""
    return OptunaSearch(sampler=TPESampler(seed=settings.seed))


def build_scheduler(settings: SearchSettings) -> ASHAScheduler:
    """ASHA on epochs: rungs at grace_period * reduction_factor**k up to max_epochs."""
    return ASHAScheduler(
        time_attr=metrics.EPOCH,
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )


def trial_dirname(trial: tune.experiment.Trial) -> str:
    """Short trial folder names, e.g. `train_transfer_8e2ec4d5` (Ray's default lists the config)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def build_tuner(settings: SearchSettings, callbacks: list[tune.Callback]) -> tune.Tuner:
    """The Tuner of a new experiment at `storage_path/name`."""
    trainable = tune.with_resources(train_transfer, {"cpu": settings.cpus_per_trial})
    return tune.Tuner(
        trainable,
        param_space=build_param_space(settings),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=build_searcher(settings),
            scheduler=build_scheduler(settings),
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.concurrency,
            reuse_actors=True,  # skip a process start (~2 s of torch import) per trial
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=str(settings.experiment_dir.parent),
            callbacks=callbacks,
            # The best checkpoint by val_acc; Ray also keeps the latest one, to resume from.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,  # search.progress prints a concise account instead of Ray's tables
        ),
    )
