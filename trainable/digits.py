"""The embedded default data set: scikit-learn's handwritten digits, read from its CSV file.

The digits task is a real transfer problem that runs offline in minutes: the backbone is
pretrained on the *source* task (digits 0-4) and fine-tuned on the *target* task (digits 5-9)
from a few labelled images per class.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from trainable.data import Split, TransferData, stratified_split

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SOURCE_VAL_FRACTION = 0.2  # held out to report the pretrained backbone's source accuracy
# Digits are drawn 14-24 px tall on a 32 px canvas (scaled likewise for other sizes), placed
# at random; the placement is part of the data set's definition, not of --seed.
PLACEMENT_SCALE = (0.44, 0.75)
PLACEMENT_SEED = 20261126
DIGITS_VERSION = 3  # bump when the images change: the cached source backbones depend on them
VAL_PER_CLASS = 50  # 250 validation images: val_acc moves in steps of 0.4 %


def load_digits_tensors(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, 3, S, S) float images, standardised, and their labels 0-9.

    Each 8x8 digit is drawn at a random scale and position on an S x S canvas, fixed per image
    by PLACEMENT_SEED. Centred and upscaled, digits 5-9 are so easy that random ResNet features
    with a linear classifier reach 90 % from 10 shots and pretraining cannot help; placed
    freely, the target needs the position-invariant stroke features the source task teaches.
    """
    canvas, labels = digits_canvas(image_size)
    mean, std = digits_statistics(image_size)
    images = (canvas - mean) / std
    return images.expand(-1, 3, -1, -1).contiguous(), labels


def digits_statistics(image_size: int) -> tuple[float, float]:
    """Mean and standard deviation of all digit canvases: the standardisation of the images,
    saved with an exported model so that `predict.py` repeats it on image files."""
    canvas, _ = digits_canvas(image_size)
    return float(canvas.mean()), float(canvas.std())


def digits_preprocessing(image_size: int) -> dict[str, Any]:
    """How an 8-bit greyscale image file becomes the model's input (trainable.exported)."""
    mean, std = digits_statistics(image_size)
    return {"kind": "digits", "size": image_size, "mean": mean, "std": std}


@functools.lru_cache(maxsize=4)
def digits_canvas(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits placed on (N, 1, S, S) canvases in [0, 1], ink bright, and their labels.

    Values are whole multiples of 1/255, as an 8-bit greyscale PNG stores them, so that an
    image file written from a canvas reads back as exactly the same tensor.
    """
    small, labels = digits_small()
    generator = torch.Generator().manual_seed(PLACEMENT_SEED)
    return place_digits(small, image_size, generator), labels


@functools.lru_cache(maxsize=1)
def digits_small() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 8x8 digits as (N, 1, 8, 8) floats in [0, 1], and their labels 0-9."""
    pixels, labels = digits_file()
    small = torch.as_tensor(pixels, dtype=torch.float32).unsqueeze(1) / 16.0
    return small, torch.as_tensor(labels)


def place_digits(small: torch.Tensor, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """8x8 digits (N, 1, 8, 8) drawn at a random scale (PLACEMENT_SCALE) and position on
    (N, 1, S, S) canvases in [0, 1], in whole multiples of 1/255; the draws come from
    `generator`, two per digit in order (its size, then its top and left)."""
    lo, hi = (round(image_size * f) for f in PLACEMENT_SCALE)
    images = torch.zeros(len(small), 1, image_size, image_size)
    for image, digit in zip(images, small, strict=True):
        size = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        top, left = torch.randint(0, image_size - size + 1, (2,), generator=generator).tolist()
        resized = F.interpolate(digit[None], size=(size, size), mode="bilinear")[0]
        image[:, top : top + size, left : left + size] = resized
    return torch.round(images.clamp(0, 1) * 255) / 255


def digits_file() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits (values 0-16) and their labels, read from the CSV file that
    scikit-learn bundles, as its `load_digits` reads it: importing scikit-learn takes a second,
    paid by the driver and every trial's process, and the file needs none of it."""
    spec = importlib.util.find_spec("sklearn")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed; it ships the digits")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def _subset(
    images: torch.Tensor, labels: torch.Tensor, classes: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of the given classes, relabelled 0..len(classes)-1 in that order."""
    keep = torch.isin(labels, torch.tensor(classes))
    relabel = {c: i for i, c in enumerate(classes)}
    return images[keep], torch.tensor([relabel[int(y)] for y in labels[keep]])


def digits_source(image_size: int, seed: int) -> tuple[Split, Split]:
    """Source task (digits 0-4): a train and a held-out split for pretraining the backbone."""
    images, labels = _subset(*load_digits_tensors(image_size), SOURCE_CLASSES)
    per_class = int(torch.bincount(labels).min() * SOURCE_VAL_FRACTION)
    val, train = stratified_split(labels, [per_class, -1], seed)
    return Split(images[train], labels[train]), Split(images[val], labels[val])


def digits_source_redrawn(
    image_size: int, seed: int, generator: torch.Generator, rotate: float = 0.0
) -> Split:
    """The source task's training digits (those of `digits_source`, in its order), each turned
    by a random angle of up to `rotate` degrees either way and drawn anew at a random scale
    and position, all from `generator`: one epoch of augmented source pretraining."""
    small, labels = _subset(*digits_small(), SOURCE_CLASSES)
    per_class = int(torch.bincount(labels).min() * SOURCE_VAL_FRACTION)
    _, train = stratified_split(labels, [per_class, -1], seed)
    small, labels = small[train], labels[train]
    if rotate:
        # Turned at 3x their size, then shrunk back: an 8x8 digit turned by 10 degrees keeps
        # its strokes instead of aliasing.
        angles = ((torch.rand(len(small), generator=generator) * 2 - 1) * rotate).tolist()
        big = F.interpolate(small, size=(24, 24), mode="bilinear")
        big = torch.stack(
            [
                TF.rotate(b, a, TF.InterpolationMode.BILINEAR)
                for b, a in zip(big, angles, strict=True)
            ]
        )
        small = F.interpolate(big, size=(8, 8), mode="area")
    mean, std = digits_statistics(image_size)
    images = (place_digits(small, image_size, generator) - mean) / std
    return Split(images.expand(-1, 3, -1, -1).contiguous(), labels)


def digits_target(image_size: int, shots: int, seed: int) -> TransferData:
    """Target task (digits 5-9): `shots` training images per class, stratified val and test."""
    images, labels = _subset(*load_digits_tensors(image_size), TARGET_CLASSES)
    smallest = int(torch.bincount(labels).min())
    if shots < 1 or shots + VAL_PER_CLASS >= smallest:
        raise ValueError(
            f"`1 <= shots < {smallest - VAL_PER_CLASS}` must hold for digits, but got shots={shots}"
        )
    train, val, test = stratified_split(labels, [shots, VAL_PER_CLASS, -1], seed)
    return TransferData(
        train=Split(images[train], labels[train]),
        val=Split(images[val], labels[val]),
        test=Split(images[test], labels[test]),
        classes=tuple(str(c) for c in TARGET_CLASSES),
        preprocessing=digits_preprocessing(image_size),
    )
