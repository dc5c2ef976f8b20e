"""A trial checkpoint: one file holding one dict of tensors and primitives.

Keys: "model" and "optimizer" (state dicts), "epoch" (last finished, 1-based), "config"
(the TrialConfig as a dict), "classes" (names in label order) and "best_val_acc" (the best
validation accuracy up to this epoch, which a resumed trial carries on from), so that
`torch.load(path, weights_only=True)` loads it and the file alone says what it is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "config", "classes", "best_val_acc")


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Create or replace `path` with what `write` writes to a binary file, atomically.

    It goes to a temporary file in the same folder, renamed over `path` when complete: a crash
    mid-write leaves any previous file intact, and a reader never sees half a file. An exception
    in `write` removes the temporary. A replaced file keeps its permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        try:
            write(tmp)
        except BaseException:  # Ctrl-C included: leave no half-written temporary behind
            os.unlink(tmp.name)
            raise
    if path.exists():
        os.chmod(tmp.name, path.stat().st_mode)
    os.replace(tmp.name, path)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: a crash mid-write leaves any previous file intact."""
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}; it needs {list(CHECKPOINT_KEYS)}")
    write_atomically(path, lambda f: torch.save({key: state[key] for key in CHECKPOINT_KEYS}, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (tensors and primitives only)."""
    return torch.load(path, weights_only=True, map_location="cpu")


def saved_epoch(folder: Path) -> int | None:
    """The epoch of the checkpoint in `folder`, read memory-mapped (not its weights); None when
    the file is missing or unreadable (e.g. half copied)."""
    try:
        return int(torch.load(folder / CHECKPOINT_FILE, mmap=True, weights_only=True)["epoch"])
    except Exception:  # torch raises several types for a damaged file
        return None
