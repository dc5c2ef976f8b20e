"""Names of the per-epoch metrics every trial reports; defined once, used everywhere."""

import json
from pathlib import Path

EPOCH = "epoch"  # 1-based; ASHA's time attribute
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"  # the default search metric, maximised
BEST_VAL_ACC = "best_val_acc"  # the trial's best val_acc so far: its kept checkpoint's
EPOCH_SECONDS = "epoch_seconds"
TRAINABLE_PARAMS = "trainable_params"
CACHED_FEATURES = "cached_features"  # 1: trained on the frozen-feature cache, 0: uncached
# Classes with validation images that the model predicted for none of them (0: it names every
# class at least once); a model that never answers a class scores 0 on it.
VAL_CLASSES_MISSED = "val_classes_missed"
# 1 on the epoch after which the trial stopped because its val_acc had not improved for
# `patience` epochs (absent otherwise).
PLATEAU = "plateau"
LR = "lr"  # {group name: learning rate}, e.g. {"head": 0.01, "backbone": 0.001}

# The numbers a trial reports each epoch (LR is a dict of them, logged as lr/<group>).
PER_EPOCH = (
    EPOCH, TRAIN_LOSS, VAL_LOSS, VAL_ACC, BEST_VAL_ACC, EPOCH_SECONDS, TRAINABLE_PARAMS,
    CACHED_FEATURES, VAL_CLASSES_MISSED,
)  # fmt: skip

RESULT_FILE = "result.json"  # Tune's log of a trial's reports, one JSON row each, in its folder


def result_rows(trial_folder: Path) -> list[dict]:
    """The rows of the trial's result.json, in order; a line cut off by a crash is skipped."""
    path = trial_folder / RESULT_FILE
    return parse_rows(path.read_text()) if path.is_file() else []


def parse_rows(text: str) -> list[dict]:
    """The rows of a result.json's `text`, in order; a line cut off by a crash is skipped."""
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
