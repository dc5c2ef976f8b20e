"""Where results stream: TensorBoard (Tune's TBX logger) and Weights & Biases (its Tune callback).

Adding a logger: append its Tune callback in `build_callbacks`.
"""

from __future__ import annotations

import os

from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune import Callback
from ray.tune.logger import TBXLoggerCallback

from search.settings import SearchSettings

WANDB_PROJECT = "transfer-tune"  # override with the WANDB_PROJECT environment variable
# Seconds the end of a sweep (or Ctrl-C) waits for W&B runs to finish: the run of a trial cut
# off by Ctrl-C took the whole 30 s Ray gave it. A run stopped there keeps its local files,
# which `wandb sync` uploads later.
WANDB_FINISH_TIMEOUT_S = 10


def build_callbacks(settings: SearchSettings, wandb_mode: str) -> list[Callback]:
    """TensorBoard event files per trial, and one W&B run per trial grouped by experiment."""
    callbacks: list[Callback] = [TBXLoggerCallback()]
    if wandb_mode != "disabled":
        callbacks.append(
            WandbLoggerCallback(
                project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
                group=settings.name,
                upload_timeout=WANDB_FINISH_TIMEOUT_S,
                # passed on to wandb.init:
                job_type=settings.space,
                mode=wandb_mode,
                dir=str(settings.experiment_dir),  # runs land in <experiment>/wandb/
            )
        )
    return callbacks
