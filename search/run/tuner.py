"""Small builders returning the Ray Tune objects of one search."""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from search.config.settings import METRIC, MODE, SearchSettings, space_of, trial_settings
from search.experiment.budget import BudgetStop, BudgetWatch
from search.experiment.layout import TRIAL_FOLDER_PREFIX
from search.experiment.study import build_storage
from search.run.optuna_bridge import (
    BudgetAwareOptunaSearch,
    ConditionalSpace,
    build_sampler,
)
from search.run.rungs import ClearlyBehindASHA
from spaces.registry import backbone_space
from trainable import metrics
from trainable.catalog import BACKBONES
from trainable.config import TrialConfig
from trainable.ray_entry import train_transfer


def build_param_space(settings: SearchSettings) -> dict[str, Any]:
    """Every TrialConfig field but the searched ones, which the searcher adds per trial.

    Each trial's params.json is a full recipe; `backbone_lr` is null in a linear probe's.
    """
    constants = {k: v for k, v in space_of(settings).items() if not isinstance(v, Domain)}
    return {
        **TrialConfig().to_dict(),  # defaults first, so nothing a trial uses goes unrecorded
        **constants,
        **trial_settings(settings),
    }


def build_space(settings: SearchSettings, backbones: list[str] | None = None) -> ConditionalSpace:
    """The searched part of the space, sampling backbone_lr only when a backbone stage trains;
    with several `backbones` (else settings.candidates), the backbone first, then its own
    parameters."""
    chosen = backbones or settings.candidates
    # A searched backbone stays a choice when the pre-screen kept one: its parameters keep
    # their study names (the warm start's), and the trials their backbone.
    if not settings.searches_backbone:
        depth = BACKBONES[chosen[0]].max_freeze_depth
        return ConditionalSpace.from_space(space_of(settings, chosen), depth)
    return ConditionalSpace.across({
        b: ConditionalSpace.from_space(
            backbone_space(b, BACKBONES[b].max_freeze_depth, settings.space, settings.weights),
            BACKBONES[b].max_freeze_depth,
        )
        for b in chosen
    })  # fmt: skip


def build_searcher(
    settings: SearchSettings,
    backbones: list[str] | None = None,
    warm_start: list[dict[str, Any]] | None = None,
) -> BudgetAwareOptunaSearch:
    """Optuna (TPE or random, seeded) told by epoch, stored in the experiment's optuna.db.
    `backbones`: the candidates the pre-screen kept; `warm_start`: the study parameters of the
    first trials (search.run.prescreen)."""
    return BudgetAwareOptunaSearch(
        build_space(settings, backbones),
        max_t=settings.max_epochs,  # the same value as the trials' epochs and ASHA's max_t
        time_attr=metrics.EPOCH,
        sampler=build_sampler(settings.sampler, settings.seed, settings.num_samples),
        storage=build_storage(settings.experiment_dir),
        study_name=settings.name,
        study_attrs={"space": settings.space, "max_t": settings.max_epochs, "seed": settings.seed},
        warm_start=warm_start,
    )


def build_scheduler(settings: SearchSettings, val_images: int) -> ClearlyBehindASHA:
    """ASHA on epochs: rungs at grace_period * reduction_factor**k up to max_epochs, each
    stopping only trials clearly behind on `val_images` validation images (search.run.rungs)."""
    return ClearlyBehindASHA(
        time_attr=metrics.EPOCH,
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
        val_images=val_images,
    )


def trial_dirname(trial: tune.experiment.Trial) -> str:
    """Short trial folder names, e.g. `train_transfer_8e2ec4d5` (Ray's default lists the config)."""
    return f"{TRIAL_FOLDER_PREFIX}{trial.trial_id}"


def build_trainable(settings: SearchSettings, states: dict[str, dict | None] | None = None) -> Any:
    """The trial function with its resources: the same for a new and a restored experiment.

    `states` (each candidate backbone's starting weights, loaded once by the driver) go to
    every trial through Ray's object store: on a cluster, nodes need no weights cache of their
    own.
    """
    trainable: Any = train_transfer
    states = {b: s for b, s in (states or {}).items() if s is not None}
    if len(settings.candidates) > 1 and states:
        trainable = tune.with_parameters(train_transfer, backbone_states=states)
    elif states:
        trainable = tune.with_parameters(train_transfer, backbone_state=next(iter(states.values())))
    return tune.with_resources(
        trainable, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    )


def restore_tuner(
    settings: SearchSettings, states: dict[str, dict | None] | None = None
) -> tune.Tuner:
    """The Tuner of the saved experiment: unfinished and errored trials resume from checkpoints.

    Its searcher, scheduler and callbacks come back from the experiment's saved state.
    """
    return tune.Tuner.restore(
        settings.experiment_location,
        trainable=build_trainable(settings, states),
        resume_unfinished=True,
        resume_errored=True,
    )


def build_tuner(
    settings: SearchSettings,
    callbacks: list[tune.Callback],
    searcher: Searcher | None = None,
    states: dict[str, dict | None] | None = None,
    val_images: int = 0,
) -> tune.Tuner:
    """The Tuner of a new experiment at `storage_path/name`.

    `searcher` replaces the harness's own (scripts/compare_searchers.py runs Ray's stock one).
    `val_images`: the validation set's size, which sets how far behind a rung's cutoff a trial
    must be for the rung to stop it (0: plain ASHA).
    """
    return tune.Tuner(
        build_trainable(settings, states),
        param_space=build_param_space(settings),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=searcher or build_searcher(settings),
            scheduler=build_scheduler(settings, val_images),
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.concurrency,
            reuse_actors=True,  # skip a process start (~2 s of torch import) per trial
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.storage_location,
            callbacks=[*callbacks, BudgetWatch()],
            stop=BudgetStop(),  # --time-budget (search.run.budget)
            # Ray removes none: search.experiment.retention does, once the stored state no
            # longer names them (Ray's num_to_keep would remove the checkpoint a killed
            # driver's state resumes from).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
            # A trial whose process dies restarts from its last checkpoint, a bounded number of
            # times; a diverged one's retry fails at once (trainable.ray_entry) and ends as error.
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # Each trial's own TensorBoard summaries (histograms, images, text) are written in
            # its working folder; Ray copies them into the trial's folder at every report.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=0,  # search.tracking.progress prints a concise account instead of Ray's tables
        ),
    )
