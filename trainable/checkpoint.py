"""A trial checkpoint: one file holding one dict of tensors and primitives.

Keys: "model" and "optimizer" (state dicts), "epoch" (last finished, 1-based), "config"
(the TrialConfig as a dict) and "classes" (names in label order), so that
`torch.load(path, weights_only=True)` loads it and the file alone says what it is.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "config", "classes")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: a crash mid-write leaves any previous file intact."""
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}; it needs {list(CHECKPOINT_KEYS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save({key: state[key] for key in CHECKPOINT_KEYS}, tmp)
    os.replace(tmp.name, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (tensors and primitives only)."""
    return torch.load(path, weights_only=True, map_location="cpu")
