"""A trial checkpoint: one file holding one dict of tensors and primitives, lean.

It holds what the trial changes, not what it froze: `torch.load(path, weights_only=True)` gives
    model               the parameters and buffers of the unfrozen stages and the head
    optimizer           their optimizer state (momentum); {} in a trial's last epoch, after
                        which nothing trains
    epoch               the last finished epoch (1-based)
    prior_best_val_acc  the best validation accuracy of the epochs before it (its own is
                        measured again when a trial resumes from it: see trainable.loop)
    prior_best_epoch    the epoch of prior_best_val_acc (0: none before), which --patience
                        counts from
    config              the TrialConfig as a dict, the recipe it trained with
    classes             class names in label order
    frozen_fingerprint  a hash of the frozen stages' starting weights
A restore rebuilds the frozen stages from the search's starting weights and refuses, in one
line, when their fingerprint differs (`load_trained`). A ResNet-18 linear probe's checkpoint is
tens of kilobytes instead of 90 MB; trainable.exported writes a complete model file.

Checkpoints written before lean ones hold every tensor under "model" and "best_val_acc" instead
of "prior_best_val_acc"; they load as they are (as do those before "prior_best_epoch": patience
counts from their own epoch).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainable.files import CHECKPOINT_FILE, write_atomically

CHECKPOINT_KEYS = (
    "model", "optimizer", "epoch", "prior_best_val_acc", "prior_best_epoch", "config",
    "classes", "frozen_fingerprint",
)  # fmt: skip


def largest_checkpoint_bytes(state: dict[str, torch.Tensor]) -> int:
    """The most a checkpoint of a model with state dict `state` can take on disk: every
    tensor (nothing frozen) and SGD's momentum of each (before the last epoch)."""
    return 2 * sum(t.numel() * t.element_size() for t in state.values())


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is restored into: one line saying why."""


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


def lean_state(model: nn.Module, frozen: set[str]) -> dict[str, torch.Tensor]:
    """The model's state dict without the frozen stages' tensors (`frozen`: their keys)."""
    return {key: value for key, value in model.state_dict().items() if key not in frozen}


def load_trained(
    model: nn.Module, checkpoint: dict[str, Any], frozen: set[str], fingerprint: str
) -> None:
    """Load a checkpoint's tensors into `model`, whose frozen stages (keys `frozen`, hash
    `fingerprint`) were rebuilt from the starting weights. CheckpointError when they are not
    the stages it trained with, or its tensors do not fit."""
    epoch = checkpoint.get("epoch", "?")
    if "frozen_fingerprint" not in checkpoint:  # a complete checkpoint, made before lean ones
        try:
            model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1].strip()
            raise CheckpointError(
                f"the checkpoint of epoch {epoch} does not fit: {reason}"
            ) from None
        return
    if checkpoint["frozen_fingerprint"] != fingerprint:
        raise CheckpointError(
            f"the checkpoint of epoch {epoch} trained on other frozen stages: their starting "
            f"weights hash to {checkpoint['frozen_fingerprint'][:12]} in it but to "
            f"{fingerprint[:12]} here (the --weights it started from changed since); restore "
            "it where those weights are"
        )
    wanted = set(model.state_dict()) - frozen
    given = set(checkpoint["model"])
    if given != wanted:
        missing, extra = sorted(wanted - given)[:3], sorted(given - wanted)[:3]
        raise CheckpointError(
            f"the checkpoint of epoch {epoch} does not fit the model: missing {missing}, "
            f"unexpected {extra}"
        )
    try:
        model.load_state_dict(checkpoint["model"], strict=False)
    except RuntimeError as error:  # shapes that differ
        reason = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(f"the checkpoint of epoch {epoch} does not fit: {reason}") from None


class BackgroundSave:
    """Writes one checkpoint at a time in a thread, while the trial validates the epoch.

    Safe because validation reads the weights without changing them, and the next epoch starts
    only after `wait`, which re-raises what the write raised (a full disk, say).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, path: Path, state: dict[str, Any]) -> None:
        """Begin writing `state` to `path` (the previous write is waited for first)."""
        self.wait()

        def write() -> None:
            try:
                save_checkpoint(path, state)
            except BaseException as error:  # handed to the trial's thread by wait()
                self._error = error

        self._thread = threading.Thread(target=write, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the current write is complete; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
