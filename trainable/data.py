"""Data sets a trial trains on: splits in memory or as image files, the batches of an epoch
and each sample's augmentation generator, stratified splits. The embedded digits are built in
trainable.digits."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
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
