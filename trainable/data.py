"""Data sets as in-memory tensors, and the embedded default: scikit-learn's handwritten digits.

The digits task is a real transfer problem that runs offline in minutes: the backbone is
pretrained on the *source* task (digits 0-4) and fine-tuned on the *target* task (digits 5-9)
from a few labelled images per class.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

if TYPE_CHECKING:
    from trainable.images import Augment

# What Pillow raises for a file that is not a (whole) image: truncated data, bad headers.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# torchvision's ImageNet statistics: the normalisation of every backbone it ships.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalized(
    pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """8-bit pixels (N, 3, H, W), on any device, as the model's input: scaled to [0, 1] and
    standardised per channel, computed as ToTensor and Normalize compute it."""
    shape = (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(shape)
    return pixels.float().div_(255).sub_(m).div_(s)


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on `device`; images (N, C, H, W) on a GPU in channels-last layout, which its
    convolution kernels prefer (the loop puts the model in the same layout)."""
    if device.type == "cuda" and images.ndim == 4:
        return images.to(device, non_blocking=True, memory_format=torch.channels_last)
    return images.to(device, non_blocking=True)


SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SOURCE_VAL_FRACTION = 0.2  # held out to report the pretrained backbone's source accuracy
# Digits are drawn 14-24 px tall on a 32 px canvas (scaled likewise for other sizes), placed
# at random; the placement is part of the data set's definition, not of --seed.
PLACEMENT_SCALE = (0.44, 0.75)
PLACEMENT_SEED = 20261126
DIGITS_VERSION = 3  # bump when the images change: the cached source backbones depend on them
VAL_PER_CLASS = 50  # 250 validation images: val_acc moves in steps of 0.4 %
# The rest of digits 5-9 (about 900 - 5 x (shots + 50), ~550 images) is the test split.


def batch_indices(
    size: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Sample indices of each mini-batch: for training (a generator given) shuffled, full
    batches only; else all samples in order. A tail batch of 2 would corrupt BatchNorm's
    running statistics."""
    if generator is None:
        order, stop = torch.arange(size), size
    else:
        order = torch.randperm(size, generator=generator)
        stop = max(size - size % batch_size, min(batch_size, size))
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of one sample's augmentation in one epoch: the same draws whichever
    process decodes it and in whatever order, so results do not depend on the number of
    loader workers, and a resumed trial sees the crops it would have seen."""
    digest = hashlib.blake2b(f"{seed},{epoch},{index}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class SplitLike:
    """What training and evaluation need of a split: its labels, and its images by index.

    `epoch` selects the augmented view of a training image (`sample_rng`);
    splits without augmentation ignore it.
    """

    labels: torch.Tensor
    decodes = False  # True: images are decoded from files on demand (trainable.pipeline)

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, index: int, epoch: int = 0, key: int | None = None) -> torch.Tensor:
        """One image (3, H, W) as the model sees it in `epoch`; `key` (default `index`) is the
        sample's number in the split being trained, which seeds its augmentation."""
        return self.take(torch.tensor([index]), epoch)[0]

    def take(self, index: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """The images (len(index), 3, H, W) at `index`, as the model sees them in `epoch`."""
        return torch.stack([self.sample(int(i), epoch) for i in index])

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, epoch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches of (images, labels), decoded in this process; see `batch_indices`.
        The images are the split's samples: `inputs` makes them the model's input."""
        for index in batch_indices(len(self), batch_size, generator):
            yield self.take(index, epoch), self.labels[index]

    def inputs(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """A batch of this split's samples as the model's input, on `device`."""
        return to_device(images, device)

    def image(self, index: int) -> torch.Tensor:
        """One image (3, H, W) as the model sees it, unaugmented, on the CPU."""
        return self.inputs(self.sample(index)[None], torch.device("cpu"))[0]

    def fingerprint(self) -> str:
        """A hash of the images as the model sees them, and of their labels: equal for equal
        splits (trainable.features keys its cache with it)."""
        raise NotImplementedError


def tensor_hash(*tensors: torch.Tensor) -> str:
    """A SHA-256 of the tensors' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous()
        digest.update(str((flat.dtype, tuple(flat.shape))).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class Split(SplitLike):
    """Images (N, 3, H, W) held in memory, normalised, and integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def sample(self, index: int, epoch: int = 0, key: int | None = None) -> torch.Tensor:
        return self.images[index]

    def take(self, index: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        return self.images[index]

    def fingerprint(self) -> str:
        return tensor_hash(self.images, self.labels)


@dataclass(frozen=True)
class ImageSplit(SplitLike):
    """Images decoded and transformed on demand: `source[indices[i]]` is (PIL image, label).

    A sample is 8-bit pixels (3, H, W): `transform` prepares an image for evaluation;
    `augment`, when set, draws a random view of a training image instead, from the generator of
    (seed, epoch, sample number). `inputs` scales and standardises a batch of them by `mean`
    and `std` on the model's device (`normalized`).
    """

    source: Any  # indexable: a torchvision data set, or trainable.images.ImageFiles
    indices: list[int]
    labels: torch.Tensor
    transform: Callable[[Any], torch.Tensor]
    # Identifies the source's content (its files' paths, sizes and modification times): the
    # fingerprint changes when a file does, without decoding any image.
    stamp: str = ""
    augment: Augment | None = None
    seed: int = 0  # of the augmentation's draws (the trial's --seed)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    decodes = True

    def sample(self, index: int, epoch: int = 0, key: int | None = None) -> torch.Tensor:
        image = self._decoded(index)
        if self.augment is None:
            return self.transform(image)
        return self.augment(image, sample_rng(self.seed, epoch, index if key is None else key))

    def inputs(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        return normalized(to_device(images, device), self.mean, self.std)

    def _decoded(self, index: int) -> Any:
        """The PIL image of sample `index`; a DataError (one line) when it does not decode:
        the file changed since the search checked it (ImageFiles names its path itself)."""
        from trainable.catalog import DataError

        number = self.indices[index]
        try:
            return self.source[number][0]
        except DataError:
            raise
        except DECODE_ERRORS as error:  # a torchvision data set's own reader
            name = type(self.source).__name__
            raise DataError(f"cannot read image {number} of {name}: {error}") from None

    def image(self, index: int) -> torch.Tensor:
        pixels = self.transform(self._decoded(index))
        return self.inputs(pixels[None], torch.device("cpu"))[0]

    def fingerprint(self) -> str:
        views = f"{self.augment!r}|seed {self.seed}" if self.augment else "unaugmented"
        steps = f"{self.transform!r}|{self.mean}|{self.std}|{views}"
        digest = hashlib.sha256(f"{self.stamp}|{self.indices}|{steps}".encode())
        digest.update(tensor_hash(self.labels).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class JoinedSplit(SplitLike):
    """Splits read as one, in order: index i of the whole is the part's own index."""

    parts: tuple[SplitLike, ...]

    @property
    def labels(self) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([part.labels for part in self.parts])

    @property
    def decodes(self) -> bool:  # type: ignore[override]
        return any(part.decodes for part in self.parts)

    def sample(self, index: int, epoch: int = 0, key: int | None = None) -> torch.Tensor:
        start = 0
        for part in self.parts:
            if index < start + len(part):
                return part.sample(index - start, epoch, index if key is None else key)
            start += len(part)
        raise IndexError(f"sample {index} of a split of {start}")

    def inputs(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.parts[0].inputs(images, device)  # its parts are of one data set

    def fingerprint(self) -> str:
        return hashlib.sha256("|".join(p.fingerprint() for p in self.parts).encode()).hexdigest()


def train_and_val(train: SplitLike, val: SplitLike) -> SplitLike:
    """Training and validation images as one training split, for a final fit on both: the
    validation images get the training augmentation when they are decoded files."""
    if isinstance(train, Split) and isinstance(val, Split):
        return Split(torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]))
    if isinstance(train, ImageSplit) and isinstance(val, ImageSplit):
        val = dataclasses.replace(val, augment=train.augment, seed=train.seed)
    return JoinedSplit((train, val))


@dataclass(frozen=True)
class TransferData:
    """The target task: train / validation / test splits and the class names in label order.

    `test` is empty when the data set has none (an image folder without `test/`).
    `preprocessing` says how an image file becomes an evaluation input, as plain values
    (trainable.exported rebuilds the transform from them).
    """

    train: SplitLike
    val: SplitLike
    test: SplitLike
    classes: tuple[str, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)


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
    pixels, labels = digits_file()
    small = torch.as_tensor(pixels, dtype=torch.float32).unsqueeze(1) / 16.0
    generator = torch.Generator().manual_seed(PLACEMENT_SEED)
    lo, hi = (round(image_size * f) for f in PLACEMENT_SCALE)
    images = torch.zeros(len(small), 1, image_size, image_size)
    for image, digit in zip(images, small, strict=True):
        size = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        top, left = torch.randint(0, image_size - size + 1, (2,), generator=generator).tolist()
        resized = F.interpolate(digit[None], size=(size, size), mode="bilinear")[0]
        image[:, top : top + size, left : left + size] = resized
    images = torch.round(images.clamp(0, 1) * 255) / 255
    return images, torch.as_tensor(labels)


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


def stratified_split(
    labels: torch.Tensor, counts: list[int] | Callable[[int], list[int]], seed: int
) -> list[torch.Tensor]:
    """Indices for consecutive splits taking `counts[i]` per class (-1: the rest), by seed.

    `counts` may be a function of a class's size, for splits by fraction.
    """
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = []
    for label in labels.unique(sorted=True):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        sizes = counts(len(members)) if callable(counts) else counts
        parts = parts or [[] for _ in sizes]
        start = 0
        for part, count in zip(parts, sizes, strict=True):
            stop = len(members) if count < 0 else start + count
            part.append(members[start:stop])
            start = stop
    return [torch.cat(part).sort().values for part in parts]


def validation_count(size: int, fraction: float) -> int:
    """Validation images of a class of `size` (>= 2): the fraction, rounded, at least 1 and
    leaving at least 1 to train on."""
    return min(size - 1, max(1, round(size * fraction)))


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
