"""Which checkpoints an experiment keeps once its trials have ended.

While a trial runs, Ray keeps two of its checkpoints: its best by `val_acc` (to export) and
its latest (to resume from). Once it has ended (completed, or stopped by ASHA) it is never
resumed, and once the search ends only the best trials' weights are worth their disk: the
experiment keeps the best checkpoint of its `keep` best trials (by best `val_acc`, the order of
summary.json) and removes every other checkpoint of an ended trial. Trials that have not ended
(interrupted, or failed and retried by `--resume`) keep theirs. Pruning runs after Ray has
saved its final state, at the end of every search, resume and extension; a trial's rank can
only fall as more trials end, so a later end never wants back what an earlier one removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from search.config.settings import SearchSettings
from search.experiment.layout import CHECKPOINT_PREFIX
from search.experiment.storage import remote_experiment

TERMINATED = "TERMINATED"  # Tune's status of a trial that ended without an error


@dataclass(frozen=True)
class Pruned:
    """What pruning removed: checkpoint folders, their bytes, and the trials they were of."""

    folders: int
    bytes: int
    trials: int


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def prune_checkpoints(settings: SearchSettings, summary: dict) -> Pruned:
    """Remove the checkpoints that the rule above does not keep; set each trial's
    `checkpoint` in `summary` to the one it keeps (None when it keeps none)."""
    root = settings.experiment_dir
    remote = remote_experiment(settings)
    keep = settings.keep_checkpoints
    folders = size = trials = 0
    for rank, trial in enumerate(summary["trials"]):
        if trial["status"] != TERMINATED:
            continue
        kept = trial.get("checkpoint") if keep == 0 or rank < keep else None
        removed = [
            folder
            for folder in sorted((root / trial["path"]).glob(f"{CHECKPOINT_PREFIX}*"))
            if folder.is_dir() and folder.relative_to(root).as_posix() != kept
        ]
        for folder in removed:
            size += _folder_bytes(folder)
            relative = folder.relative_to(root).as_posix()
            if remote is not None:
                remote.delete(relative)
            else:
                shutil.rmtree(folder)
        folders += len(removed)
        trials += bool(removed)
        trial["checkpoint"] = kept
    return Pruned(folders, size, trials)
