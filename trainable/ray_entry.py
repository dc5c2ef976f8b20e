"""The Ray Tune function trainable: the only module of `trainable` that imports Ray."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from trainable.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from trainable.config import TrialConfig
from trainable.loop import run_trial


def train_transfer(config: dict[str, Any]) -> None:
    """One transfer-learning trial: resume if Tune restored a checkpoint, report every epoch."""
    cfg = TrialConfig.from_dict(config)
    resume = None
    if (restored := tune.get_checkpoint()) is not None:
        with restored.as_directory() as folder:
            resume = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
    for result, state in run_trial(cfg, resume):
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder) / CHECKPOINT_FILE, state)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
