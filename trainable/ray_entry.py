"""The Ray Tune function trainable: the only module of `trainable` that imports Ray."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from trainable.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from trainable.config import TrialConfig
from trainable.data import TransferData
from trainable.datasets import build_data
from trainable.loop import DivergedError, run_trial

# Left in the trial's working folder when it diverges. Tune retries a failed trial
# (--max-failures) whatever failed it, but a diverged one, with the same seed and learning
# rates, would train the same epochs again only to diverge again: its retry fails at once.
DIVERGED_FILE = "diverged.txt"
LOG_FILE = "trial.log"  # the trial's own notes (the frozen-feature cache), in its folder

# The data of the last trial this process ran: Tune reuses a trial's process (actor) for the
# next one, and every trial of a search reads the same data, which takes about 1 s to build.
_last_data: tuple[tuple, TransferData] | None = None


def _data_for(cfg: TrialConfig) -> TransferData:
    """build_data(cfg), reused while the settings it depends on stay the same."""
    global _last_data
    key = (cfg.data, cfg.image_size, cfg.shots, cfg.val_fraction, cfg.augment, cfg.seed,
           cfg.weights, cfg.backbone, cfg.cache_dir)  # fmt: skip
    if _last_data is None or _last_data[0] != key:
        _last_data = (key, build_data(cfg))
    return _last_data[1]


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

    def log(line: str) -> None:
        with open(trial_dir / LOG_FILE, "a") as file:
            file.write(line + "\n")

    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        for result, state in run_trial(cfg, resume, _data_for(cfg), trial_dir, log):
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(Path(folder) / CHECKPOINT_FILE, state)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
    except DivergedError as error:
        diverged.parent.mkdir(parents=True, exist_ok=True)
        diverged.write_text(str(error))
        raise
