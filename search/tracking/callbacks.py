"""Where results stream: TensorBoard and Weights & Biases, each through a Tune logger callback.

Adding a logger: append its Tune callback in `build_callbacks`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray import tune
from ray.tune import Callback
from ray.tune.logger import JsonLoggerCallback

from search.config.settings import SearchSettings
from search.experiment.storage import RemoteExperiment
from search.tracking.tensorboard import TrialBoardCallback
from search.tracking.wandb_runs import build_wandb_callback
from trainable.config import error_line
from trainable.metrics import RESULT_FILE


def build_callbacks(
    settings: SearchSettings, searched: list[str], wandb_mode: str
) -> list[Callback]:
    """result.json, TensorBoard sessions and scalars per trial; one W&B run per trial, grouped by
    experiment."""
    callbacks: list[Callback] = [KeptResultLog(), TrialBoardCallback(searched, settings.max_epochs)]
    if wandb_mode != "disabled":
        callbacks.append(build_wandb_callback(settings, wandb_mode))
    return callbacks


class KeptResultLog(JsonLoggerCallback):
    """Tune's result.json writer, which also keeps the rows of a resumed trial whose saved
    state names no checkpoint.

    Tune writes result.json on the driver and copies it into the experiment with its saved
    state; on resume it copies the experiment's rows back only for a trial with a checkpoint.
    A driver killed between a trial's first report and the next state snapshot leaves a
    result.json that logged the epoch and a state that names no checkpoint: the trial resumes
    from that epoch's checkpoint (trainable.ray_entry.starting_checkpoint), and the rows
    written before would be replaced by the ones after. A JsonLoggerCallback, so that Tune adds
    no second one.
    """

    def log_trial_start(self, trial: Any) -> None:
        trial.init_local_path()
        local = Path(trial.local_path, RESULT_FILE)
        if not local.exists():  # else this driver started it before: its own copy goes on
            with contextlib.suppress(FileNotFoundError):  # a new trial has none
                pyarrow.fs.copy_files(
                    f"{trial.path}/{RESULT_FILE}", str(local),
                    source_filesystem=trial.storage.storage_filesystem,
                )  # fmt: skip
        super().log_trial_start(trial)


class StudyUpload(tune.Callback):
    """Uploads the study when a trial starts and ends: a driver lost mid-search leaves the URI
    with a study that holds every trial Ray's saved state names, so it can be resumed."""

    def __init__(self, experiment: RemoteExperiment) -> None:
        self.experiment = experiment

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The study holds the new trial before Ray's state can name it."""
        self._upload()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Upload optuna.db; a failure costs a warning (the end of the search uploads again)."""
        self._upload()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """An errored trial is told to the study too."""
        self._upload()

    def _upload(self) -> None:
        try:
            self.experiment.upload_study()
        except Exception as error:  # pyarrow's and sqlite's errors vary; the search goes on
            print(f"Warning: optuna.db was not uploaded: {error_line(error)}", file=sys.stderr)
