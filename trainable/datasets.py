"""The data sets a user picks with `--data`, and how a trial builds its target task from one.

digits                 the embedded default (trainable.digits), no files needed
imagefolder:PATH       the user's own images (trainable.images)
NAME[:ROOT]            a torchvision data set read from ROOT (see TORCHVISION_SETS);
                       downloaded there only when the search is run with --download
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.utils.data import Subset
from torchvision import datasets as tv

from trainable.catalog import (
    DIGITS,
    IMAGE_FOLDER,
    TORCHVISION_FILES,
    DataError,
    DataSpec,
    check_present,
    missing_files,
)
from trainable.config import TrialConfig, error_line
from trainable.data import (
    ImageSplit,
    Split,
    TransferData,
    stratified_split,
    validation_count,
)
from trainable.digits import digits_target
from trainable.folders import IMAGE_EXTENSIONS, index_image_folder
from trainable.images import (
    ImageFiles,
    describe_unreadable,
    eval_preprocessing,
    files_stamp,
    find_unreadable,
    image_transforms,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class TorchvisionSet:
    """A torchvision data set: how to make it, its splits, its labels (its files and where they
    come from: trainable.catalog.TORCHVISION_FILES)."""

    make: Callable[[str, str, bool], Any]  # (root, split, download) -> the torchvision data set
    train: str
    val: str | None  # its own validation split; None: split from `train` by --seed
    test: str
    labels: Callable[[Any], list[int]]
    classes: Callable[[Any], list[str]]
    # The image file of each sample, for sets kept as files: checked like an image folder's.
    paths: Callable[[Any], list[str]] | None = None


def _split_kind(kind: type) -> Callable[[str, str, bool], Any]:
    return lambda root, split, download: kind(root, split=split, download=download)


def _cifar(kind: type[tv.CIFAR10]) -> TorchvisionSet:
    """CIFAR-10 or -100: arrays in pickled batches, a train and a test split."""
    return TorchvisionSet(
        make=lambda root, split, download: kind(root, train=split == "train", download=download),
        train="train",
        val=None,
        test="test",
        labels=lambda d: list(d.targets),
        classes=lambda d: list(d.classes),
    )


# Data sets that suit transfer learning; their labels and files are read without decoding any
# image (Flowers-102 and Pets keep them in attributes torchvision does not document).
TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    "cifar10": _cifar(tv.CIFAR10),
    "cifar100": _cifar(tv.CIFAR100),
    "flowers102": TorchvisionSet(
        make=_split_kind(tv.Flowers102),
        train="train",
        val="val",
        test="test",
        labels=lambda d: list(d._labels),
        classes=lambda d: [str(i) for i in range(1, 103)],  # torchvision names none
        paths=lambda d: [str(p) for p in d._image_files],
    ),
    "oxford_iiit_pet": TorchvisionSet(
        make=_split_kind(tv.OxfordIIITPet),
        train="trainval",
        val=None,
        test="test",
        labels=lambda d: list(d._labels),
        classes=lambda d: list(d.classes),
        paths=lambda d: [str(p) for p in d._images],
    ),
}


def prepare_torchvision_set(name: str, root: Path, download: bool, log: Log = print) -> None:
    """Make sure data set `name` is readable below `root`, downloading it there if allowed."""
    entry, url = TORCHVISION_SETS[name], TORCHVISION_FILES[name].url
    missing = missing_files(name, root)
    if not download:
        check_present(name, root)
    if missing:
        log(f"Downloading {name} into {root} (from {url})")
    for split in dict.fromkeys(s for s in (entry.train, entry.val, entry.test) if s):
        try:
            entry.make(str(root), split, bool(missing))
        except OSError as error:  # a download that failed (offline) or a file it cannot read
            raise DataError(f"cannot get {name} into {root}: {error}") from None
        except Exception as error:  # a failed checksum, or a malformed annotation file
            raise DataError(
                f"{name} in {root} cannot be read ({error_line(error)}); its files "
                f"may be corrupt or of another version: delete them and add --download, or "
                f"fetch them from {url}"
            ) from None


def _preset(cfg: TrialConfig) -> Callable[..., torch.nn.Module] | None:
    """The preprocessing preset of the trial's torchvision weights (None: not torchvision's)."""
    if cfg.weights != "imagenet":
        return None
    return torchvision.models.get_model_weights(cfg.backbone).DEFAULT.transforms


def _take(labels: list[int], counts: Callable[[int], list[int]], seed: int) -> list[list[int]]:
    """Stratified index lists per split, `counts(class size)` images of each class."""
    return [part.tolist() for part in stratified_split(torch.tensor(labels), counts, seed)]


def _shots(count: int, shots: int) -> int:
    return min(count, shots) if shots > 0 else count


def _assemble(
    cfg: TrialConfig,
    sources: dict[str, tuple[Any, list[int]]],
    classes: tuple[str, ...],
    where: str,
    stamp: str,
) -> TransferData:
    """Train/val/test ImageSplits from (source, labels) per split name ("all" or "train",
    optionally "val", "test"); val is split from train by the seed when it is absent. `stamp`
    identifies the sources' files (trainable.images.files_stamp)."""
    train_set, train_labels = sources["train"]
    sizes = torch.bincount(torch.tensor(train_labels), minlength=len(classes))
    if "val" in sources:
        small = [c for c, n in zip(classes, sizes.tolist(), strict=True) if n < 1]
        if small:
            raise DataError(f"class {small[0]!r} has no training images in {where}")
        (train,) = _take(train_labels, lambda n: [_shots(n, cfg.shots)], cfg.seed)
        val_set, val_labels = sources["val"]
        val = list(range(len(val_labels)))
    else:
        smallest = int(sizes.argmin())
        if sizes[smallest] < 2:
            raise DataError(
                f"class {classes[smallest]!r} has {int(sizes[smallest])} image(s) in {where}, "
                "but each class needs at least 2: one to train on and one to validate"
            )

        def val_then_train(size: int) -> list[int]:
            held_out = validation_count(size, cfg.val_fraction)
            return [held_out, _shots(size - held_out, cfg.shots)]

        val, train = _take(train_labels, val_then_train, cfg.seed)
        val_set, val_labels = train_set, train_labels
    pixels, augment = image_transforms(cfg.image_size, cfg.augment, _preset(cfg))
    preprocessing = eval_preprocessing(cfg.image_size, _preset(cfg))
    mean, std = tuple(preprocessing["mean"]), tuple(preprocessing["std"])

    def split(source: Any, labels: list[int], indices: list[int], **views: Any) -> ImageSplit:
        chosen = torch.tensor([labels[i] for i in indices], dtype=torch.long)
        return ImageSplit(source, indices, chosen, pixels, stamp, mean=mean, std=std, **views)

    if "test" in sources:
        test_set, test_labels = sources["test"]
        test = split(test_set, test_labels, list(range(len(test_labels))))
    else:
        empty = torch.empty(0, 3, cfg.image_size, cfg.image_size)
        test = Split(empty, torch.empty(0, dtype=torch.long))
    return TransferData(
        train=split(train_set, train_labels, train, augment=augment, seed=cfg.seed),
        val=split(val_set, val_labels, val),
        test=test,
        classes=classes,
        preprocessing=preprocessing,
    )


def _unreadable(paths: list[str], cfg: TrialConfig, log: Log | None) -> dict[str, str]:
    """The images among `paths` that do not decode (cached); `log` hears of the check and of
    what is skipped."""
    if not paths:
        return {}
    unreadable = find_unreadable(paths, cfg.cache_dir, log)
    if unreadable and log is not None:
        log(f"Warning: {describe_unreadable(unreadable)}")
    return unreadable


def image_folder_data(cfg: TrialConfig, root: str, log: Log | None = None) -> TransferData:
    """The user's image folder; unreadable images are skipped (see trainable.images)."""
    index = index_image_folder(Path(root))
    every = [path for samples in index.splits.values() for path, _ in samples]
    unreadable = _unreadable(every, cfg, log)
    sources = {}
    for name, samples in index.splits.items():
        kept = [(path, label) for path, label in samples if path not in unreadable]
        if not kept and name in ("all", "train"):
            where = index.root / name if name != "all" else index.root
            kinds = ", ".join(IMAGE_EXTENSIONS[:4])
            raise DataError(f"{where} has no readable images ({kinds}, ...) in its class folders")
        if kept:
            sources["train" if name == "all" else name] = (
                ImageFiles(kept),
                [label for _, label in kept],
            )
    kept_paths = sorted(path for path in every if path not in unreadable)
    return _assemble(cfg, sources, index.classes, str(index.root), files_stamp(kept_paths))


def torchvision_data(
    cfg: TrialConfig, name: str, root: str, log: Log | None = None
) -> TransferData:
    """Torchvision data set `name` from `root` (never downloaded here: see prepare_*)."""
    entry = TORCHVISION_SETS[name]
    made = {
        role: entry.make(root, split, False)
        for role, split in (("train", entry.train), ("val", entry.val), ("test", entry.test))
        if split
    }
    paths = {role: entry.paths(data) for role, data in made.items()} if entry.paths else {}
    every = [path for role_paths in paths.values() for path in role_paths]
    unreadable = _unreadable(every, cfg, log)
    sources = {}
    for role, data in made.items():
        labels = entry.labels(data)
        if unreadable and role in paths:  # skip the images that do not decode, as in a folder
            kept = [i for i, path in enumerate(paths[role]) if path not in unreadable]
            data, labels = Subset(data, kept), [labels[i] for i in kept]
        sources[role] = (data, labels)
    files = [str(Path(root) / f) for f in TORCHVISION_FILES[name].files if not f.endswith("/")]
    stamp = files_stamp([*files, *every]) + f"|{sorted(unreadable)}"
    classes = tuple(entry.classes(made["train"]))
    return _assemble(cfg, sources, classes, f"{name} ({root})", stamp)


def build_data(cfg: TrialConfig, log: Log | None = None) -> TransferData:
    """The trial's target task, split by its seed. `log` (the search's driver) hears of the
    image check and of the images it skips; trials build the same data silently."""
    spec = DataSpec.parse(cfg.data)
    if spec.name == DIGITS:
        return digits_target(cfg.image_size, cfg.shots, cfg.seed)
    if spec.name == IMAGE_FOLDER:
        return image_folder_data(cfg, spec.root, log)
    return torchvision_data(cfg, spec.name, spec.root, log)
