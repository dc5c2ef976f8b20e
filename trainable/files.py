"""Atomic file writes, shared by checkpoints, caches, exports and the experiment's own files;
and the names of a checkpoint's and a model's file (read by the search before torch is
imported)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

CHECKPOINT_FILE = "checkpoint.pt"  # a trial checkpoint (trainable.checkpoint), in its folder
MODEL_FILE = "model.pt"  # a search's best model (trainable.exported), beside its checkpoint


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
