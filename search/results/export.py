"""`scripts/export.py EXPERIMENT_DIR --out MODEL.pt [--retrain]`: the best model, ready to use.

Takes the best trial's kept checkpoint (or, with --retrain, fits its configuration again on the
training and validation images for the full epoch budget, seeded), evaluates it on the held-out
test split and writes one file (trainable.exported) that scripts/predict.py reads alone.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from search.config.usage import UsageError, check_out
from search.experiment.outcomes import fmt
from search.experiment.storage import best_checkpoint
from trainable.catalog import DIGITS, IMAGE_FOLDER, DataError, DataSpec
from trainable.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from trainable.config import TrialConfig, default_cache_dir, error_line
from trainable.data import ImageSplit, Split, SplitLike, TransferData
from trainable.datasets import build_data, prepare_torchvision_set
from trainable.engine import evaluate
from trainable.exported import export_state, model_from_export, save_export
from trainable.files import MODEL_FILE
from trainable.loop import DivergedError, retrain, trained_model
from trainable.weights import WeightsError


def write_split_images(
    split: SplitLike, classes: tuple[str, ...], preprocessing: dict[str, Any], folder: Path
) -> int:
    """Save each image of `split` as DIR/CLASS/NNNNN.png, as predict.py reads image files.

    Image files are written as decoded (lossless); digits as their 8-bit canvases, which is
    exactly what the data set's tensors were made from (trainable.digits.digits_canvas).
    """
    for index in range(len(split)):
        label = classes[int(split.labels[index])]
        target = folder / label / f"{index:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(split, ImageSplit):
            image = split.source[split.indices[index]][0]
        elif isinstance(split, Split) and preprocessing.get("kind") == "digits":
            grey = split.images[index, 0] * preprocessing["std"] + preprocessing["mean"]
            pixels = torch.round(grey.clamp(0, 1) * 255).to(torch.uint8).numpy()
            image = Image.fromarray(pixels, mode="L")
        else:
            raise UsageError("--test-images: this data set's test images are not image files")
        image.save(target)
    return len(split)


def _read_checkpoint(path: Path) -> tuple[dict, TrialConfig]:
    """The checkpoint and its trial's recipe; UsageError (one line) when unreadable."""
    try:
        checkpoint = load_checkpoint(path)
        return checkpoint, TrialConfig.from_dict(checkpoint["config"])
    except Exception as error:  # torch and from_dict raise several types for a bad file
        raise UsageError(f"cannot read the checkpoint {path}: {error_line(error)}") from None


def _build_data(cfg: TrialConfig) -> TransferData:
    """The experiment's data as its trials split it; UsageError when it cannot be read here."""
    spec = DataSpec.parse(cfg.data)
    try:
        if spec.name not in (DIGITS, IMAGE_FOLDER):  # one line naming missing files, not
            prepare_torchvision_set(spec.name, Path(spec.root), download=False)  # torchvision's
        return build_data(cfg, log=print)
    except (DataError, WeightsError, OSError) as error:
        raise UsageError(f"the experiment's data {cfg.data} cannot be read here: {error}") from None


def export_best(
    root: Path, out: Path, retrain_it: bool, test_images: Path | None = None
) -> dict[str, Any]:
    """Write the best model of the experiment at `root` to `out`; return the export's metrics."""
    summary, path = best_checkpoint(root)
    check_out(out, "--out")
    if test_images is not None:
        check_out(test_images, "--test-images", folder=True)
        if out.resolve().is_relative_to(test_images.resolve()):
            raise UsageError(f"--out {out} must not lie in --test-images {test_images}")
    checkpoint, recipe = _read_checkpoint(path)
    # On this machine's CPU, with the cores this process may use; the search's cache folder
    # when it can be read here (its pretrained source backbone: the checkpoint's frozen stages
    # are those bytes), else this machine's.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    readable = os.access(recipe.cache_dir, os.R_OK | os.X_OK)
    cache_dir = recipe.cache_dir if readable else default_cache_dir()
    cfg = dataclasses.replace(recipe, device="cpu", num_threads=cores or 1, cache_dir=cache_dir)
    best = summary["best"]
    data = _build_data(cfg)
    if tuple(checkpoint["classes"]) != data.classes:
        raise UsageError(
            f"the data's classes {list(data.classes)} differ from the checkpoint's "
            f"{checkpoint['classes']}: the data set changed since the search"
        )
    if test_images is not None and not len(data.test):
        raise UsageError(f"--test-images: {cfg.data} has no test split")
    config = "  ".join(f"{k}={fmt(v)}" for k, v in best["config"].items())
    # The kept checkpoint's own epoch: of epochs tied on val_acc, Ray keeps the later one.
    epoch = int(checkpoint["epoch"])
    if retrain_it:
        print(
            f"Retraining trial {best['trial_id']}'s configuration ({config}) on "
            f"{len(data.train)} train + {len(data.val)} validation images for {cfg.max_epochs} "
            "epochs"
        )
        began = time.monotonic()
        try:
            model = retrain(cfg, data, log=print)
        except (DivergedError, WeightsError, DataError, OSError) as error:
            raise UsageError(f"retraining failed: {error}") from None
        print(f"Retrained in {time.monotonic() - began:.0f} s")
    else:
        print(f"Best trial {best['trial_id']} ({config}), checkpoint of epoch {epoch}")
        try:  # its frozen stages from the starting weights, as the trial built them
            model = trained_model(cfg, checkpoint)
        except (CheckpointError, WeightsError, OSError) as error:
            raise UsageError(f"the checkpoint {path} cannot be restored: {error}") from None
    source = {
        "experiment": summary["experiment"],
        "trial_id": best["trial_id"],
        "checkpoint": Path(best["checkpoint"], CHECKPOINT_FILE).as_posix(),
        "retrained": retrain_it,
        "epochs": cfg.max_epochs if retrain_it else epoch,
        "warnings": list(summary.get("warnings", [])),  # predict.py repeats them
    }
    for warning in source["warnings"]:
        print(f"Warning (from the search): {warning}")
    # A retrained model saw the validation images: it has no val_acc.
    scores = {"val_acc": None if retrain_it else best["val_acc"]}
    export = export_state(model, recipe, data.classes, data.preprocessing, scores, source)
    try:
        # The test accuracy of the model as predict.py rebuilds it: from the file's bytes.
        test = (
            evaluate(model_from_export(_round_trip(export)), data.test) if len(data.test) else None
        )
        if test_images is not None:  # before the model: an interrupted export leaves no model
            written = write_split_images(data.test, data.classes, data.preprocessing, test_images)
            print(f"Wrote the {written} test images to {test_images}/CLASS/")
    except (DataError, OSError) as error:  # an image file changed or vanished since the search
        raise UsageError(f"evaluating on the test split failed: {error}") from None
    export["metrics"].update(test_acc=test.acc if test else None, test_images=len(data.test))
    check_out(out, "--out")  # still free after the work
    save_export(out, export)
    if test is None:
        print(f"Note: {cfg.data} has no test split; test_acc is null (add a test/ folder)")
    else:
        print(f"test_acc {test.acc:.4f} on {len(data.test)} held-out test images")
    print(f"Model: {out}\nPredict with:  python scripts/predict.py {out} IMAGE_OR_FOLDER ...")
    return export["metrics"]


def write_model_file(
    root: Path,
    best: dict[str, Any],
    experiment: str,
    preprocessing: dict[str, Any],
    backbone_state: dict[str, torch.Tensor] | None,
) -> Path:
    """The best trial's whole model, written next to its checkpoint as MODEL_FILE in the
    exported format (scripts/predict.py reads it; test_acc null: only export.py evaluates
    on the test split). The frozen stages come from `backbone_state`, the search's starting
    weights."""
    folder = root / best["checkpoint"]
    checkpoint = load_checkpoint(folder / CHECKPOINT_FILE)
    cfg = TrialConfig.from_dict(checkpoint["config"])
    model = trained_model(cfg, checkpoint, backbone_state)
    source = {
        "experiment": experiment,
        "trial_id": best["trial_id"],
        "checkpoint": Path(best["checkpoint"], CHECKPOINT_FILE).as_posix(),
        "retrained": False,
        "epochs": int(checkpoint["epoch"]),
    }
    scores = {"val_acc": best["val_acc"], "test_acc": None, "test_images": 0}
    classes = tuple(checkpoint["classes"])
    path = folder / MODEL_FILE
    save_export(path, export_state(model, cfg, classes, preprocessing, scores, source))
    return path


def _round_trip(export: dict[str, Any]) -> dict[str, Any]:
    """The export as torch.load(weights_only=True) reads it back from its file."""
    buffer = io.BytesIO()
    torch.save(export, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
