"""The Ray Tune function trainable: the only module of `trainable` that imports Ray."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import torch
from ray import tune

from trainable import metrics
from trainable.checkpoint import CHECKPOINT_FILE, BackgroundSave, load_checkpoint, saved_epoch
from trainable.config import TrialConfig
from trainable.data import TransferData
from trainable.datasets import build_data
from trainable.loop import DivergedError, run_trial, trial_pipeline
from trainable.pipeline import Pipeline

# Left in the trial's working folder when it diverges. Tune retries a failed trial
# (--max-failures) whatever failed it, but a diverged one, with the same seed and learning
# rates, would train the same epochs again only to diverge again: its retry fails at once.
DIVERGED_FILE = "diverged.txt"
LOG_FILE = "trial.log"  # the trial's own notes (the frozen-feature cache), in its folder

# The data and input pipeline of the last trial this process ran: Tune reuses a trial's
# process (actor) for the next one, and every trial of a search reads the same data, which
# takes about 1 s to build; the pipeline's loader workers stay up for the next trial too.
_last_data: tuple[tuple, TransferData, Pipeline] | None = None


def _data_for(cfg: TrialConfig) -> tuple[TransferData, Pipeline]:
    """build_data(cfg) and its pipeline, reused while the settings they depend on stay the
    same."""
    global _last_data
    key = (cfg.data, cfg.image_size, cfg.shots, cfg.val_fraction, cfg.augment, cfg.seed,
           cfg.weights, cfg.backbone, cfg.cache_dir, cfg.loader_workers,
           cfg.device)  # fmt: skip
    if _last_data is None or _last_data[0] != key:
        if _last_data is not None:
            _last_data[2].close()
        data = build_data(cfg)
        _last_data = (key, data, trial_pipeline(cfg, data))
    return _last_data[1], _last_data[2]


def _granted_device() -> str:
    """ "cuda" when Ray gave this trial a GPU: the device of a config without one (restored
    from an experiment made before the search told trials their device)."""
    resources = tune.get_context().get_trial_resources().required_resources
    return "cuda" if resources.get("GPU", 0) > 0 else "cpu"


def _reported_epochs(trial_folder: Path) -> set[int]:
    """Epochs the driver wrote to the trial's result.json (it writes a row per report)."""
    rows = metrics.result_rows(trial_folder)
    return {int(row[metrics.EPOCH]) for row in rows if metrics.EPOCH in row}


def _local_trial_folder() -> Path | None:
    """The trial's folder in the experiment, when the experiment is on a local or shared
    filesystem (None for a URI)."""
    storage = tune.get_context().get_storage()
    if storage is None or not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        return None
    return Path(storage.trial_fs_path)


def starting_checkpoint(
    folder: Path | None, restored: Path | None, log: Callable[[str], None]
) -> tuple[dict[str, Any] | None, int]:
    """The checkpoint a trial starts from, and the last epoch the driver logged for it.

    `restored` is the checkpoint file Tune's saved state names. A newer checkpoint of the
    trial's `folder` whose epoch is in its result.json is taken instead: an epoch that reported
    just before the driver stopped or died can be logged while the saved state still names the
    checkpoint before it, and resumed from that one the trial would run the epoch again. A
    newer checkpoint whose epoch was never logged is not taken (the epoch is run again and
    logged once). When Tune's checkpoint cannot be read (cut short, removed), the newest
    readable one of the folder is taken, else none: the trial replays the epochs between it and
    the last logged one without reporting them again (they are seeded: the same numbers).
    """
    resume = None
    if restored is not None:
        try:
            resume = load_checkpoint(restored)
        except Exception as error:  # torch raises several types for a damaged file
            log(f"checkpoint {restored.parent.name} unreadable ({type(error).__name__}): "
                "taking the newest readable one")  # fmt: skip
    if folder is None:
        return resume, int(resume["epoch"]) if resume else 0
    reported = _reported_epochs(folder)
    epoch = int(resume["epoch"]) if resume else 0
    for candidate in sorted(folder.glob("checkpoint_*"), reverse=True):
        # Its epoch first (memory-mapped): only the checkpoint taken is read whole.
        candidate_epoch = saved_epoch(candidate)  # None: half copied when the trial died
        if candidate_epoch is None or candidate_epoch <= epoch or candidate_epoch not in reported:
            continue
        try:
            resume = load_checkpoint(candidate / CHECKPOINT_FILE)
        except Exception:  # unreadable after all
            continue
        log(f"resumed from {candidate.name} (epoch {candidate_epoch}): the newest readable "
            "checkpoint whose epoch was logged")  # fmt: skip
        break
    return resume, max(reported, default=0)


def train_transfer(
    config: dict[str, Any],
    backbone_state: dict[str, torch.Tensor] | None = None,
    backbone_states: dict[str, dict[str, torch.Tensor]] | None = None,
) -> None:
    """One transfer-learning trial: resume if Tune restored a checkpoint, report every epoch.

    `backbone_state` is the search's starting weights, passed through Ray's object store
    (`tune.with_parameters`): a cluster node reads them from there, not from a cache or a
    download of its own. `backbone_states`: those of each candidate backbone, when the
    backbone is searched too.
    """
    cfg = TrialConfig.from_dict({"device": _granted_device(), **config})
    if backbone_states is not None:
        backbone_state = backbone_states.get(cfg.backbone)
    # The trial's working folder: Ray copies it into the trial's folder in the experiment at
    # every report (SyncConfig(sync_artifacts=True)), its TensorBoard summaries included.
    trial_dir = Path(tune.get_context().get_trial_dir())
    diverged = trial_dir / DIVERGED_FILE
    if diverged.is_file():
        raise DivergedError(f"{diverged.read_text()} (in an earlier attempt; not retrained)")

    def log(line: str) -> None:
        with open(trial_dir / LOG_FILE, "a") as file:
            file.write(line + "\n")

    trial_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        restored = tune.get_checkpoint()
        named = Path(stack.enter_context(restored.as_directory())) if restored else None
        resume, logged = starting_checkpoint(
            _local_trial_folder(), named / CHECKPOINT_FILE if named else None, log
        )
    # Where the trial ran and where its code came from (a cluster ships it: search.run.cluster).
    context = ray.get_runtime_context()
    shipped = context.runtime_env.get("py_modules") or "none"
    log(f"node {context.get_node_id()}; code {Path(__file__).parent}; shipped {shipped}")
    data, pipeline = _data_for(cfg)
    writer = BackgroundSave()
    try:
        with tempfile.TemporaryDirectory() as scratch:

            def save(state: dict[str, Any]) -> None:  # while the epoch is validated
                writer.start(Path(scratch, f"epoch-{state['epoch']}", CHECKPOINT_FILE), state)

            trial = run_trial(cfg, resume, data, trial_dir, log, backbone_state, save, pipeline)
            try:
                for result, _ in trial:
                    writer.wait()
                    folder = Path(scratch, f"epoch-{result[metrics.EPOCH]}")
                    if result[metrics.EPOCH] > logged:  # else replayed: logged already
                        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
                    shutil.rmtree(folder)  # Ray copied it into the experiment
            finally:  # an epoch that failed mid-validation: its write ends before the folder
                with contextlib.suppress(Exception):
                    writer.wait()
    except DivergedError as error:
        diverged.parent.mkdir(parents=True, exist_ok=True)
        diverged.write_text(str(error))
        raise
