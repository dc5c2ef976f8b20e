"""Where results stream: TensorBoard and Weights & Biases, each through a Tune logger callback.

Adding a logger: append its Tune callback in `build_callbacks`.
"""

from __future__ import annotations

import sys
from typing import Any

from ray import tune
from ray.tune import Callback

from search.config.settings import SearchSettings
from search.experiment.storage import RemoteExperiment
from search.tracking.tensorboard import TrialBoardCallback
from search.tracking.wandb_runs import build_wandb_callback
from trainable.config import error_line


def build_callbacks(
    settings: SearchSettings, searched: list[str], wandb_mode: str
) -> list[Callback]:
    """TensorBoard sessions and scalars per trial; one W&B run per trial, grouped by experiment."""
    callbacks: list[Callback] = [TrialBoardCallback(searched, settings.max_epochs)]
    if wandb_mode != "disabled":
        callbacks.append(build_wandb_callback(settings, wandb_mode))
    return callbacks


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
