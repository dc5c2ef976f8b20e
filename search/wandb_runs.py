"""Weights & Biases: one run per trial through Ray's W&B Tune callback, and the best model.

Each trial's run is grouped by experiment, has job type = space, config = the trial's settings,
one history row per epoch, and a summary to compare trials by: `best_val_acc` (the trial reports
it every epoch, so the last value is the best), `epochs` and `stop_reason`. Ray's callback ends a
run only when its trial ends, and on Ctrl-C kills the runs still open; here those end cleanly,
as `interrupted`. At the end of a search, `log_best_model` logs the best checkpoint as a model
artifact. The mode (offline without credentials) is resolved in search.wandb_mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray.air.constants import TRAINING_ITERATION

# Ray's logging actor and its queue items: private, but the documented way to change what a run
# records is to subclass the actor (`_logger_actor_cls`); checked against Ray 2.60.
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node
from ray.tune.experiment import Trial

from search.settings import SearchSettings
from search.summary import stop_reason
from trainable import metrics
from trainable.checkpoint import CHECKPOINT_FILE

WANDB_PROJECT = "transfer-tune"  # override with the WANDB_PROJECT environment variable
# Seconds the end of a sweep (or Ctrl-C) waits for W&B runs to finish: the run of a trial cut
# off by Ctrl-C took the whole 30 s Ray gave it. A run stopped there keeps its local files,
# which `wandb sync` uploads later.
WANDB_FINISH_TIMEOUT_S = 10
BEST_MODEL_JOB = "best-model"  # job type of the run that logs the best model


def wandb_project() -> str:
    """The W&B project: $WANDB_PROJECT, else transfer-tune."""
    return os.environ.get("WANDB_PROJECT", WANDB_PROJECT)


class TrialRun(_WandbLoggingActor):
    """Ray's W&B logging actor (one per trial, off the driver), ending with a summary.

    An END item may carry a dict, added to the run's summary before it finishes.
    """

    def run(self) -> None:
        os.environ["WANDB_START_METHOD"] = "thread"  # as Ray's: already a separate process
        run = self._wandb.init(*self.args, **self.kwargs)
        while True:
            kind, content = self.queue.get()
            if kind == _QueueItem.END:
                run.summary.update(content or {})
                break
            if kind == _QueueItem.RESULT:
                log, config_update = self._handle_result(content)
                run.config.update(config_update, allow_val_change=True)
                run.log(log, step=log.get(TRAINING_ITERATION))  # = epoch, also after a resume
        run.finish()


class TrialRunsCallback(WandbLoggerCallback):
    """Ray's W&B Tune callback whose runs end with `epochs` and `stop_reason` in the summary."""

    _logger_actor_cls = TrialRun

    def __init__(self, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_epochs = max_epochs
        self._ended: set[str] = set()  # trial ids whose run was told to end

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        # Ray restarts a crashed logging actor (max_restarts=-1), and for that its core worker
        # prints an error line per trial ("constructor arguments in the object store"). A
        # restarted actor would start the trial's run over anyway: no restarts.
        env = {key: os.environ[key] for key in ("WANDB_API_KEY",) if key in os.environ}
        self._remote_logger_class = ray.remote(
            num_cpus=0,
            **_force_on_current_node(),
            runtime_env={"env_vars": env},
            max_restarts=0,
        )(self._logger_actor_cls)

    def _end_run(self, trial: Trial, reason: str) -> None:
        if trial not in self._trial_queues or trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        epochs = int((trial.last_result or {}).get(metrics.EPOCH, 0))
        self._trial_queues[trial].put((_QueueItem.END, {"epochs": epochs, "stop_reason": reason}))

    def log_trial_start(self, trial: Trial) -> None:
        self._ended.discard(trial.trial_id)  # a resumed trial's run logs again
        super().log_trial_start(trial)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        epochs = int((trial.last_result or {}).get(metrics.EPOCH, 0))
        self._end_run(trial, stop_reason(failed, True, epochs, self.max_epochs))
        self._cleanup_logging_actors()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        # After Ctrl-C, Ray would kill the runs still open once the timeout passed.
        for trial in list(self._trial_queues):
            self._end_run(trial, "interrupted")
        super().on_experiment_end(trials, **info)


def build_wandb_callback(settings: SearchSettings, wandb_mode: str) -> TrialRunsCallback:
    """One W&B run per trial, grouped by experiment, written into <experiment>/wandb/."""
    return TrialRunsCallback(
        max_epochs=settings.max_epochs,
        project=wandb_project(),
        group=settings.name,
        upload_timeout=WANDB_FINISH_TIMEOUT_S,
        # passed on to wandb.init:
        job_type=settings.space,
        mode=wandb_mode,
        dir=str(settings.experiment_dir),
    )


def log_best_model(settings: SearchSettings, summary: dict[str, Any], wandb_mode: str) -> str:
    """Log the best trial's checkpoint as a W&B model artifact, from a run in the experiment's
    group (job type `best-model`); return the artifact's name. The file is referenced, not
    copied (policy "immutable"): `wandb sync` uploads it from the experiment folder."""
    import wandb  # imported here: a second of start-up that a search without W&B never pays

    best = summary["best"]
    path = settings.experiment_dir / best["checkpoint"] / CHECKPOINT_FILE
    name = f"{settings.name}-best"
    run = wandb.init(
        project=wandb_project(),
        group=settings.name,
        job_type=BEST_MODEL_JOB,
        name=f"best model ({best['trial_id']})",
        mode=wandb_mode,
        dir=str(settings.experiment_dir),
        config={"trial_id": best["trial_id"], **best["config"]},
        reinit="create_new",
    )
    try:
        artifact = wandb.Artifact(
            name,
            type="model",
            description=f"Best checkpoint of experiment {settings.name} "
            f"(loads with torch.load(path, weights_only=True))",
            metadata={
                "experiment": settings.name,
                "space": settings.space,
                "trial_id": best["trial_id"],
                "config": best["config"],
                metrics.VAL_ACC: best[metrics.VAL_ACC],
                metrics.EPOCH: best["epoch"],
                "checkpoint": Path(best["checkpoint"], CHECKPOINT_FILE).as_posix(),
            },
        )
        artifact.add_file(str(path), name=CHECKPOINT_FILE, policy="immutable")
        run.log_artifact(artifact, aliases=["best"])
        run.summary.update(
            {"trial_id": best["trial_id"], metrics.BEST_VAL_ACC: best[metrics.VAL_ACC]}
        )
    finally:
        run.finish()
    return name
