"""An exported model: one file holding everything predicting needs, read without the experiment.

`torch.load(path, weights_only=True)` gives a dict with constant keys:
    state_dict  the fine-tuned model's weights (frozen stages as FrozenBatchNorm2d)
    config      backbone, num_classes, image_size, freeze_depth, preprocessing (how an image
                file becomes the model's input) and trial (the full TrialConfig it trained with)
    classes     class names in label order
    metrics     test_acc and test_images (the held-out test split), val_acc
    source      where it came from: experiment, trial_id, checkpoint, retrained, epochs, and
                the search's warnings on how far its numbers can be trusted (a list of lines)
Plain PyTorch: scripts/export.py writes it (search/export.py), scripts/predict.py reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from trainable.backbones import build_model, freeze_stages
from trainable.catalog import BACKBONES, DataError
from trainable.config import TrialConfig, error_line
from trainable.files import write_atomically
from trainable.images import DECODE_ERRORS, eval_transform, to_mode

EXPORT_KEYS = ("state_dict", "config", "classes", "metrics")
CONFIG_KEYS = ("backbone", "num_classes", "image_size", "freeze_depth", "preprocessing", "trial")
PREDICT_BATCH = 64  # images decoded and classified at a time
PREPROCESSING_KINDS = ("rgb", "digits")  # see input_transform


class ExportError(ValueError):
    """A file that is not an exported model, or cannot be read as one."""


def export_state(
    model: nn.Module,
    cfg: TrialConfig,
    classes: tuple[str, ...],
    preprocessing: dict[str, Any],
    metrics: dict[str, Any],
    source: dict[str, Any],
) -> dict[str, Any]:
    """The dict an exported model file holds (tensors and primitives only)."""
    return {
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "config": {
            "backbone": cfg.backbone,
            "num_classes": len(classes),
            "image_size": cfg.image_size,
            "freeze_depth": cfg.freeze_depth,
            "preprocessing": dict(preprocessing),
            "trial": cfg.to_dict(),
        },
        "classes": list(classes),
        "metrics": dict(metrics),
        "source": dict(source),
    }


def save_export(path: Path, export: dict[str, Any]) -> None:
    """Write the export atomically: a crash mid-write leaves no half file at `path`."""
    write_atomically(path, lambda f: torch.save(export, f))


def load_export(path: Path) -> dict[str, Any]:
    """Read an exported model file; ExportError (one line) when it is not one."""
    if not path.is_file():
        raise ExportError(f"model file {path} does not exist")
    try:
        export = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises several types for a foreign or damaged file
        raise ExportError(
            f"{path} is not a readable model file: {error_line(error)[:200]}"
        ) from None
    missing = [key for key in EXPORT_KEYS if key not in export] if isinstance(export, dict) else []
    if not isinstance(export, dict) or missing:
        raise ExportError(
            f"{path} is not a model written by scripts/export.py: it lacks {missing or EXPORT_KEYS}"
        )
    lacking = [key for key in CONFIG_KEYS if key not in export["config"]]
    if lacking:
        raise ExportError(f"{path}: its config lacks {lacking}")
    kind = export["config"]["preprocessing"].get("kind")
    if kind not in PREPROCESSING_KINDS:
        raise ExportError(f"{path}: unknown preprocessing kind {kind!r}")
    if export["config"]["backbone"] not in BACKBONES:
        raise ExportError(
            f"{path}: backbone {export['config']['backbone']!r} is not one of this version's: "
            f"{', '.join(sorted(BACKBONES))}"
        )
    return export


def trained_model(
    backbone: str,
    num_classes: int,
    image_size: int,
    freeze_depth: int,
    state: dict[str, torch.Tensor],
) -> nn.Module:
    """A fine-tuned model from its weights (a checkpoint's or an export's), in eval mode: the
    same frozen stages as in training, so the saved FrozenBatchNorm2d buffers fit."""
    model = build_model(backbone, num_classes, image_size)
    freeze_stages(model, backbone, freeze_depth)
    model.load_state_dict(state, strict=True)
    return model.eval()


def model_from_export(export: dict[str, Any]) -> nn.Module:
    """The exported model in eval mode, rebuilt from the file alone (no weights download)."""
    config = export["config"]
    try:
        return trained_model(
            config["backbone"],
            config["num_classes"],
            config["image_size"],
            config["freeze_depth"],
            export["state_dict"],
        )
    except (RuntimeError, ValueError) as error:  # weights that do not fit the config
        reason = error_line(error)
        raise ExportError(f"the model file's weights do not fit its config: {reason}") from None


def input_transform(preprocessing: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """What turns an image file (PIL) into the model's input, as the data set prepared it."""
    if preprocessing["kind"] == "rgb":
        rgb = eval_transform(preprocessing)
        return lambda image: rgb(to_mode(image))
    if preprocessing["kind"] == "digits":
        size, mean, std = preprocessing["size"], preprocessing["mean"], preprocessing["std"]

        def digit(image: Image.Image) -> torch.Tensor:
            grey = to_mode(image, "L")  # a bright digit on a dark ground, as the data set's
            if grey.size != (size, size):
                grey = grey.resize((size, size), Image.Resampling.BILINEAR)
            # ToTensor divides by 255 as the data set's 8-bit canvases were made
            return ((transforms.functional.to_tensor(grey) - mean) / std).expand(3, -1, -1)

        return digit
    raise ExportError(f"unknown preprocessing kind {preprocessing['kind']!r}")


def read_image(path: Path) -> Image.Image:
    """A whole decoded image; DataError naming the file when it is not one."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except DECODE_ERRORS as error:
        raise DataError(f"cannot read image {path}: {error}") from None


@torch.no_grad()
def classify(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted label of each input (N, 3, H, W) and its softmax probability."""
    probabilities = torch.softmax(model(inputs).float(), dim=1)
    best, labels = probabilities.max(dim=1)
    return labels, best


def predict_files(
    model: nn.Module, export: dict[str, Any], paths: list[Path]
) -> Iterator[tuple[Path, str, float] | DataError]:
    """(path, class name, probability) per image in order, or the DataError of an unreadable
    one; PREDICT_BATCH images are decoded and classified at a time by `model` (built by
    model_from_export)."""
    transform = input_transform(export["config"]["preprocessing"])
    classes = export["classes"]
    for start in range(0, len(paths), PREDICT_BATCH):
        batch: list[tuple[Path, torch.Tensor]] = []
        failures: dict[Path, DataError] = {}
        for path in paths[start : start + PREDICT_BATCH]:
            try:
                batch.append((path, transform(read_image(path))))
            except DataError as error:
                failures[path] = error
            except DECODE_ERRORS as error:  # decoded, but not convertible (e.g. a LAB image)
                failures[path] = DataError(f"cannot read image {path}: {error}")
        predicted = {}
        if batch:
            labels, probabilities = classify(model, torch.stack([x for _, x in batch]))
            for (path, _), label, p in zip(batch, labels, probabilities, strict=True):
                predicted[path] = (path, classes[int(label)], float(p))
        for path in paths[start : start + PREDICT_BATCH]:
            yield failures.get(path) or predicted[path]
