"""Where results stream: TensorBoard and Weights & Biases, each through a Tune logger callback.

Adding a logger: append its Tune callback in `build_callbacks`.
"""

from __future__ import annotations

from ray.tune import Callback

from search.settings import SearchSettings
from search.tensorboard import TrialBoardCallback
from search.wandb_runs import build_wandb_callback


def build_callbacks(
    settings: SearchSettings, searched: list[str], wandb_mode: str
) -> list[Callback]:
    """TensorBoard sessions and scalars per trial; one W&B run per trial, grouped by experiment."""
    callbacks: list[Callback] = [TrialBoardCallback(searched, settings.max_epochs)]
    if wandb_mode != "disabled":
        callbacks.append(build_wandb_callback(settings, wandb_mode))
    return callbacks
