"""Users' own images: a folder of class sub-folders, indexed, checked, split and decoded.

Layouts (as torchvision's ImageFolder, one sub-folder per class):
    ROOT/<class>/**/<image>                      split into train and val by --seed
    ROOT/train/<class>/..., ROOT/val/<class>/... [, ROOT/test/<class>/...]   used as given
Hidden files and folders (".name") are ignored. A sample whose real path (symlinks resolved)
lies outside ROOT is refused. Unreadable images are skipped, with a count: every image is
decoded once per folder state and the result is cached (see `find_unreadable`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torchvision import transforms

from trainable.checkpoint import write_atomically

IMAGE_EXTENSIONS = tuple(torchvision.datasets.folder.IMG_EXTENSIONS)  # .jpg .png .webp ...
SPLIT_FOLDERS = ("train", "val", "test")
# torchvision's ImageNet statistics: the normalisation of every backbone it ships.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # resize the shorter side to this times the crop (ImageNet's recipe)
# Light augmentation: crops of 35-100 % of the image (ImageNet training uses 8-100 %, too
# strong for a few epochs of fine-tuning) and horizontal flips.
CROP_SCALE = (0.35, 1.0)
PROGRESS_SECONDS = 10  # a progress line this often while checking a large folder
CHECK_VERSION = 1  # bump when `_decode_error` changes what counts as unreadable
# What Pillow raises for a file that is not a (whole) image: truncated data, bad headers.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DataError(ValueError):
    """A problem with the user's data: one line saying what is wrong, where, and what to do."""


@dataclass(frozen=True)
class ImageFolderIndex:
    """The classes of a folder and its samples, (path, label) sorted, per split folder found."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, list[tuple[str, int]]]  # "train" [, "val", "test"]; or "all" when flat


def _visible(entries: Iterable[Path]) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def _class_folders(folder: Path) -> list[Path]:
    try:
        return [p for p in _visible(folder.iterdir()) if p.is_dir()]
    except OSError as error:
        raise DataError(f"cannot read folder {folder}: {error.strerror}") from None


def _images_below(folder: Path, root: Path) -> list[str]:
    """Image files below `folder`, sorted; a file whose real path leaves `root` is refused.

    Linked folders are followed once each: a link back to a parent cannot loop.
    """
    found, visited = [], {folder.resolve()}
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".")]
        dirs[:] = [d for d in dirs if (Path(parent) / d).resolve() not in visited]
        visited.update((Path(parent) / d).resolve() for d in dirs)
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(parent) / name
            target = path.resolve()
            if not target.is_relative_to(root):
                raise DataError(
                    f"image {path} resolves to {target}, outside the data folder {root}; "
                    "samples must lie inside it (copy the file in instead of linking it)"
                )
            found.append(str(path))
    return found


def _index_classes(folder: Path, root: Path) -> dict[str, list[str]]:
    return {c.name: _images_below(c, root) for c in _class_folders(folder)}


def index_image_folder(root: Path) -> ImageFolderIndex:
    """Index a folder of class sub-folders (or of train/val/test folders of such)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"image folder {root} is a file; --data imagefolder:PATH needs a folder")
    root = root.resolve()
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"cannot read folder {root}: permission denied")
    folders = {p.name for p in _class_folders(root)}
    # train/ holding class folders means split folders; a flat folder (PASCAL VOC) may have a
    # class "train" of images.
    if "train" in folders and _class_folders(root / "train"):
        extra = sorted(folders - set(SPLIT_FOLDERS))
        if extra:
            raise DataError(
                f"{root} has split folders (train/) and also {', '.join(f'{e}/' for e in extra)}"
                f"; split folders must be named {', '.join(f'{s}/' for s in SPLIT_FOLDERS)}: "
                "rename (valid/ to val/) or move the others out"
            )
        present = [split for split in SPLIT_FOLDERS if split in folders]
        per_split = {split: _index_classes(root / split, root) for split in present}
        classes = tuple(per_split["train"])
        for split, found in per_split.items():
            extra = sorted(set(found) - set(classes))
            if extra:
                raise DataError(
                    f"{root / split} has class folder(s) {', '.join(extra)} that "
                    f"{root / 'train'} lacks; every class must have training images"
                )
    else:
        per_split = {"all": _index_classes(root, root)}
        classes = tuple(per_split["all"])
    where = root / "train" if "train" in per_split else root
    if len(classes) < 2:
        raise DataError(
            f"`classes >= 2` must hold, but {where} has {len(classes)} class folder(s)"
            f"{': ' + classes[0] if classes else ''}; put each class's images in a sub-folder"
        )
    label = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[tuple[str, int]]] = {split: [] for split in per_split}
    owner: dict[Path, str] = {}  # real file -> the path it was first found at
    for split, found in per_split.items():
        for name, paths in found.items():
            for path in paths:
                target = Path(path).resolve()
                if target in owner:  # a symlink to an image already indexed
                    raise DataError(
                        f"image {path} is the same file as {owner[target]} (a symlink); each "
                        "image must appear once, or it trains and validates on itself"
                    )
                owner[target] = path
                splits[split].append((path, label[name]))
    return ImageFolderIndex(root, classes, splits)


def _decode_error(path: str) -> str | None:
    """Why the image at `path` cannot be used, or None when it decodes."""
    try:
        with Image.open(path) as image:
            image.convert("RGB").load()  # full decode: a truncated JPEG passes Image.verify()
    except DECODE_ERRORS as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


def find_unreadable(
    paths: list[str], cache_dir: str, log: Callable[[str], None] | None = None
) -> dict[str, str]:
    """{path: reason} of the images that do not decode.

    Every image is decoded once, in threads (Pillow releases the GIL); the answer is cached in
    `cache_dir`, keyed by each file's path, size and modification time, so later searches and
    every trial of this one read it back in milliseconds.
    """
    stats = [(p, *_size_and_mtime(p)) for p in paths]
    digest = hashlib.sha256(json.dumps([CHECK_VERSION, stats]).encode()).hexdigest()[:16]
    cached = Path(cache_dir) / "image-checks" / f"{digest}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    say = log or (lambda line: None)
    say(f"Checking that {len(paths):,} images decode (once; cached in {cached.parent})")
    unreadable, last = {}, time.monotonic()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        errors = pool.map(_decode_error, paths, chunksize=64)
        for done, (path, error) in enumerate(zip(paths, errors, strict=True), start=1):
            if error:
                unreadable[path] = error
            if time.monotonic() - last >= PROGRESS_SECONDS:
                say(f"  {done:,} of {len(paths):,} images checked, {len(unreadable)} unreadable")
                last = time.monotonic()
    # A cluster node without the driver's cache folder checked them anyway: not an error.
    with contextlib.suppress(OSError):
        write_atomically(cached, lambda f: f.write(json.dumps(unreadable, indent=1).encode()))
    return unreadable


def _size_and_mtime(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return -1, -1  # vanished or unreadable: _decode_error reports it
    return stat.st_size, stat.st_mtime_ns


def files_stamp(paths: Iterable[str]) -> str:
    """A hash of each file's path, size and modification time: it changes when a file does."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path}|{_size_and_mtime(path)}\n".encode())
    return digest.hexdigest()


def describe_unreadable(unreadable: dict[str, str], listed: int = 3) -> str:
    """'2 unreadable images skipped: a.png (reason), b.jpg (reason)' for the console."""
    items = [f"{path} ({reason})" for path, reason in list(unreadable.items())[:listed]]
    more = len(unreadable) - listed
    tail = f" and {more} more" if more > 0 else ""
    count = len(unreadable)
    return f"{count} unreadable image{'s' if count != 1 else ''} skipped: {', '.join(items)}{tail}"


def eval_preprocessing(
    image_size: int, preset: Callable[..., torch.nn.Module] | None = None
) -> dict[str, Any]:
    """How an image is prepared for evaluation, as plain values (saved with an exported model).

    `preset` is a torchvision weights' `transforms` (resize, centre crop and normalisation as
    the weights were trained with), scaled to `image_size`; None uses ImageNet's statistics
    with a bilinear resize.
    """
    resize, mean, std = round(image_size * RESIZE_RATIO), IMAGENET_MEAN, IMAGENET_STD
    interpolation = transforms.InterpolationMode.BILINEAR
    if preset is not None:
        defaults = preset()
        resize = round(image_size * defaults.resize_size[0] / defaults.crop_size[0])
        mean, std, interpolation = defaults.mean, defaults.std, defaults.interpolation
    return {
        "kind": "rgb",
        "resize": resize,  # the shorter side, before the centre crop
        "crop": image_size,
        "interpolation": interpolation.value,  # "bilinear" or "bicubic"
        "mean": list(mean),
        "std": list(std),
    }


def eval_transform(preprocessing: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform described by `eval_preprocessing`'s values."""
    return transforms.Compose(
        [
            transforms.Resize(
                preprocessing["resize"],
                interpolation=transforms.InterpolationMode(preprocessing["interpolation"]),
            ),
            transforms.CenterCrop(preprocessing["crop"]),
            transforms.ToTensor(),
            transforms.Normalize(preprocessing["mean"], preprocessing["std"]),
        ]
    )


def image_transforms(
    image_size: int, augment: bool, preset: Callable[..., torch.nn.Module] | None = None
) -> tuple[Callable[[Image.Image], torch.Tensor], Callable[[Image.Image], torch.Tensor]]:
    """The training and evaluation transforms of PIL images, for `image_size` crops (see
    `eval_preprocessing` for `preset`)."""
    preprocessing = eval_preprocessing(image_size, preset)
    evaluate = eval_transform(preprocessing)
    if not augment:
        return evaluate, evaluate
    interpolation = transforms.InterpolationMode(preprocessing["interpolation"])
    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=CROP_SCALE, interpolation=interpolation),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(preprocessing["mean"], preprocessing["std"]),
        ]
    )
    return train, evaluate


class ImageFiles:
    """Image files read on demand: `files[i]` is (RGB PIL image, label); greyscale, RGBA and
    palette images are converted."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB"), label
        except DECODE_ERRORS as error:
            # It decoded when the search started: the file changed since.
            raise DataError(f"cannot read image {path}: {error}") from None
