"""Weights & Biases: one run per trial through Ray's W&B Tune callback, and the best model.

Each trial's run is grouped by experiment, has job type = space, config = the trial's settings,
one history row per epoch, and a summary to compare trials by: `best_val_acc` (the trial reports
it every epoch, so the last value is the best), `epochs` and `stop_reason`. Runs of trials that a
stop cut off end cleanly, as `interrupted` (Ray's callback killed them). All runs live in one
logging actor (search.tracking.wandb_actor) instead of two processes per trial. At the end of a
search, `ModelLog` logs the best model as a model artifact, through the same actor. The mode
(offline without credentials) is resolved in search.config.wandb_mode.
"""

from __future__ import annotations

import os
import sys
from numbers import Number
from pathlib import Path
from typing import Any

import ray
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.exceptions import GetTimeoutError
from ray.tune.experiment import Trial
from ray.tune.utils import flatten_dict

from search.config.settings import SearchSettings
from search.experiment import budget
from search.experiment.outcomes import (
    epochs_run,
    plateaued,
    stop_reason,
    trial_label,
    trial_number,
)
from search.experiment.saved_state import force_on_current_node
from search.tracking.wandb_actor import WandbRuns, log_model, model_spec
from trainable import metrics
from trainable.checkpoint import CHECKPOINT_FILE

WANDB_PROJECT = "transfer-tune"  # override with the WANDB_PROJECT environment variable
# Seconds the end of a sweep (or Ctrl-C) waits for W&B runs to finish. A run cut off there
# keeps its local files, which `wandb sync` uploads later.
WANDB_FINISH_TIMEOUT_S = 10
# How long W&B tries to reach its server when a run starts online (W&B's default is 90 s):
# after that the run, and the next ones, are kept offline (search.tracking.wandb_actor).
WANDB_INIT_TIMEOUT_S = 20
BEST_MODEL_JOB = "best-model"  # job type of the run that logs the best model
RUNS_ACTOR = "transfer-tune-wandb-runs"  # the W&B actor's name in the search's Ray namespace


def wandb_project() -> str:
    """The W&B project: $WANDB_PROJECT, else transfer-tune."""
    return os.environ.get("WANDB_PROJECT", WANDB_PROJECT)


class TrialRunsCallback(WandbLoggerCallback):
    """Ray's W&B Tune callback (its project, group, API-key and result handling), with every
    trial's run in one actor, ending with `epochs` and `stop_reason` in its summary."""

    def __init__(self, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_epochs = max_epochs
        self._runs: Any = None  # the WandbRuns actor, started in setup
        self._open: dict[str, Trial] = {}  # trial id -> trial, for runs not yet ended

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)  # resolves the project and the API key
        self._runs = (
            ray.remote(WandbRuns)
            .options(
                # By name: the search logs the best model through it once the trials end
                # (ModelLog), also when Tune restored this callback from a saved experiment.
                name=RUNS_ACTOR,
                get_if_exists=True,
                num_cpus=0,
                max_restarts=0,  # a restarted actor would lose its runs; the search goes on
                **force_on_current_node(),  # it writes into the experiment folder here
            )
            .remote()
        )
        key = os.environ.get("WANDB_API_KEY")  # also set by Ray's callback from its key file
        if key:  # before any run starts (an actor runs one caller's calls in order)
            self._runs.use_api_key.remote(key)

    def log_trial_start(self, trial: Trial) -> None:
        if trial.trial_id in self._open:
            return  # a trial retried after a failure keeps its run
        config = {k: v for k, v in trial.config.items() if k not in self.excludes}
        init_kwargs = {
            "id": trial.trial_id,
            "name": "trial " + trial_label(trial_number(trial.config), trial.trial_id),
            "group": self.group or trial.experiment_dir_name,
            "project": self.project,
            "config": config,
            "allow_val_change": True,
            **self.kwargs,  # job_type, mode, dir
        }
        self._runs.start.remote(trial.trial_id, init_kwargs)
        self._open[trial.trial_id] = trial

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if trial.trial_id not in self._open:
            self.log_trial_start(trial)
        skip = [*self._exclude_results, *self.excludes, "config"]  # as Ray's: config once
        data, config = {}, {}
        for key, value in flatten_dict(result, delimiter="/").items():
            if any(key == item or key.startswith(f"{item}/") for item in skip):
                continue
            if key in self.AUTO_CONFIG_KEYS:  # trial_id, hostname, pid, ...
                config[key] = value
            elif isinstance(value, Number):
                data[key] = value
        # The epoch as W&B's step: a resumed trial's training_iteration can repeat one
        # (trainable.ray_entry takes a newer checkpoint than Tune's state names).
        step = int(result.get(metrics.EPOCH, result[TRAINING_ITERATION]))
        self._runs.log.remote(trial.trial_id, data, config, step)

    def _end_run(self, trial: Trial, reason: str) -> None:
        summary = {"epochs": epochs_run(trial), "stop_reason": reason}
        self._runs.end.remote(trial.trial_id, summary)
        del self._open[trial.trial_id]

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        if trial.trial_id in self._open:
            epochs = epochs_run(trial)
            reason = stop_reason(
                failed,
                True,
                epochs,
                self.max_epochs,
                plateaued(trial),
                budget.stopped(trial.trial_id),
            )
            self._end_run(trial, reason)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial in list(self._open.values()):  # cut off by Ctrl-C or SIGTERM
            self._end_run(trial, "interrupted")
        try:  # the actor runs calls in order: this returns once every run has finished
            errors = ray.get(self._runs.take_errors.remote(), timeout=self._upload_timeout)
        except GetTimeoutError:
            errors = [
                f"runs did not finish within {self._upload_timeout} s; their local files are "
                "kept for `wandb sync`"
            ]
        for error in errors:
            print(f"Warning: W&B: {error}", file=sys.stderr)
        failure = online_failure()
        if failure:
            print(
                f"Warning: W&B could not log online ({failure}); the runs are saved offline "
                f"in {self.kwargs.get('dir', '.')}/wandb: upload them with `wandb sync` once "
                "W&B works",
                file=sys.stderr,
            )
        # The actor stays: the search logs its best model through it (ModelLog), then ends it.


def build_wandb_callback(settings: SearchSettings, wandb_mode: str) -> TrialRunsCallback:
    """One W&B run per trial, grouped by experiment, written into <experiment>/wandb/."""
    online = {"settings": {"init_timeout": WANDB_INIT_TIMEOUT_S}} if wandb_mode == "online" else {}
    return TrialRunsCallback(
        max_epochs=settings.max_epochs,
        project=wandb_project(),
        group=settings.name,
        # Online, the last run may still be trying to reach W&B when the trials end.
        upload_timeout=WANDB_FINISH_TIMEOUT_S + (WANDB_INIT_TIMEOUT_S if online else 0),
        # passed on to wandb.init:
        job_type=settings.space,
        mode=wandb_mode,
        dir=str(settings.experiment_dir),
        **online,
    )


def best_model_spec(
    settings: SearchSettings, summary: dict[str, Any], wandb_mode: str, path: Path
) -> dict[str, Any]:
    """The best trial's model file `path` (the exported format: search.results.export) as a W&B
    model artifact `<experiment>-best`, from a run in the experiment's group (job type
    `best-model`): search.tracking.wandb_actor.model_spec."""
    best = summary["best"]
    init = {
        "project": wandb_project(),
        "group": settings.name,
        "job_type": BEST_MODEL_JOB,
        "name": f"best model ({best['trial_id']})",
        "mode": wandb_mode,
        "dir": str(settings.experiment_dir),
        "config": {"trial_id": best["trial_id"], **best["config"]},
    }
    artifact = {
        "name": f"{settings.name}-best",
        "type": "model",
        "description": f"Best model of experiment {settings.name}: the whole model, for "
        "scripts/predict.py (loads with torch.load(path, weights_only=True))",
        "metadata": {
            "experiment": settings.name,
            "space": settings.space,
            "trial_id": best["trial_id"],
            "config": best["config"],
            metrics.VAL_ACC: best[metrics.VAL_ACC],
            metrics.EPOCH: best["epoch"],
            "checkpoint": Path(best["checkpoint"], CHECKPOINT_FILE).as_posix(),
        },
    }
    run_summary = {"trial_id": best["trial_id"], metrics.BEST_VAL_ACC: best[metrics.VAL_ACC]}
    return model_spec(init, artifact, str(path), run_summary)


class ModelLog:
    """The best model being logged to W&B: by the search's W&B actor while it is alive (its
    process has W&B started: about a second less than a run started in the driver), else in
    this process. `result` waits for it: the artifact's name, or None and a warning."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._future: Any = None
        actor = runs_actor()
        if actor is not None:
            self._future = actor.log_model.remote(spec)

    def result(self) -> str | None:
        """The artifact's name once logged; None (with a warning) when W&B failed."""
        name = self.spec["artifact"]["name"]
        try:
            if self._future is None:
                import wandb  # a second of start-up that a search without W&B never pays

                log_model(wandb, self.spec)
                return name
            # Online, the file is uploaded: allow for 1 MB/s and a minute on top.
            megabytes = os.path.getsize(self.spec["path"]) / 1e6
            logged = ray.get(self._future, timeout=60 + megabytes)
            errors = ray.get(runs_actor().take_errors.remote(), timeout=WANDB_FINISH_TIMEOUT_S)
            if logged:
                return name
            reason = "; ".join(errors) or "no reason given"
        except Exception as error:  # W&B's own errors vary by version; the search result stands
            reason = str(error)
        print(f"Warning: the best model was not logged to W&B: {reason}", file=sys.stderr)
        return None


def runs_actor() -> Any:
    """The search's W&B actor (search.tracking.wandb_actor), or None when it is not running."""
    if not ray.is_initialized():
        return None
    try:
        return ray.get_actor(RUNS_ACTOR)
    except ValueError:
        return None


def online_failure() -> str | None:
    """Why the search's W&B actor could not log online (its runs are offline since); None
    when it logged online, or does not run."""
    actor = runs_actor()
    if actor is None:
        return None
    try:
        return ray.get(actor.online_failure.remote(), timeout=WANDB_FINISH_TIMEOUT_S)
    except GetTimeoutError:  # still trying to reach W&B: its runs cannot be claimed online
        return f"W&B did not answer within {WANDB_FINISH_TIMEOUT_S} s"
    except Exception:  # the actor died: its errors were told already
        return None


def stop_runs_actor() -> None:
    """End the search's W&B actor, if it runs (its runs are finished by then)."""
    actor = runs_actor()
    if actor is not None:
        ray.kill(actor)
