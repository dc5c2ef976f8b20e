"""The Ray Tune function trainable: the only module of `trainable` that imports Ray."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from trainable.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from trainable.config import TrialConfig
from trainable.loop import DivergedError, run_trial

# Left in the trial's working folder when it diverges. Tune retries a failed trial
# (--max-failures) whatever failed it, but a diverged one, with the same seed and learning
# rates, would train the same epochs again only to diverge again: its retry fails at once.
DIVERGED_FILE = "diverged.txt"


def _granted_device() -> str:
    """ "cuda" when Ray gave this trial a GPU: the device of a config without one (restored
    from an experiment made before the search told trials their device)."""
    resources = tune.get_context().get_trial_resources().required_resources
    return "cuda" if resources.get("GPU", 0) > 0 else "cpu"


def train_transfer(config: dict[str, Any]) -> None:
    """One transfer-learning trial: resume if Tune restored a checkpoint, report every epoch."""
    cfg = TrialConfig.from_dict({"device": _granted_device(), **config})
    # The trial's working folder: Ray copies it into the trial's folder in the experiment at
    # every report (SyncConfig(sync_artifacts=True)), its TensorBoard summaries included.
    trial_dir = Path(tune.get_context().get_trial_dir())
    diverged = trial_dir / DIVERGED_FILE
    if diverged.is_file():
        raise DivergedError(f"{diverged.read_text()} (in an earlier attempt; not retrained)")
    resume = None
    if (restored := tune.get_checkpoint()) is not None:
        with restored.as_directory() as folder:
            resume = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
    try:
        for result, state in run_trial(cfg, resume, log_dir=trial_dir):
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(Path(folder) / CHECKPOINT_FILE, state)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
    except DivergedError as error:
        diverged.parent.mkdir(parents=True, exist_ok=True)
        diverged.write_text(str(error))
        raise
