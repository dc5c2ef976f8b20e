"""Users' own images: a folder of class sub-folders, indexed and checked without decoding.

Layouts (as torchvision's ImageFolder, one sub-folder per class):
    ROOT/<class>/**/<image>                      split into train and val by --seed
    ROOT/train/<class>/..., ROOT/val/<class>/... [, ROOT/test/<class>/...]   used as given
Hidden files and folders (".name") are ignored. A sample whose real path (symlinks resolved)
lies outside ROOT is refused. Plain os and pathlib: the search checks a folder before it
imports torch (trainable.images decodes the files).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trainable.catalog import DataError

# torchvision's IMG_EXTENSIONS (what its ImageFolder reads), without importing torchvision
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = ("train", "val", "test")


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


def _real(path: Path) -> Path:
    """`path` with its symlinks resolved; DataError (one line) for a symlink loop."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as error:  # RuntimeError: Python < 3.13's symlink loop
        raise DataError(
            f"{path} cannot be resolved ({error}); remove the symlink loop or the broken link"
        ) from None


def _images_below(folder: Path, root: Path) -> list[str]:
    """Image files below `folder`, sorted; a file whose real path leaves `root` is refused.

    Linked folders are followed once each: a link back to a parent cannot loop.
    """
    found, visited = [], {_real(folder)}
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".")]
        dirs[:] = [d for d in dirs if _real(Path(parent) / d) not in visited]
        visited.update(_real(Path(parent) / d) for d in dirs)
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(parent) / name
            target = _real(path)
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
                target = _real(Path(path))
                if target in owner:  # a symlink to an image already indexed
                    raise DataError(
                        f"image {path} is the same file as {owner[target]} (a symlink); each "
                        "image must appear once, or it trains and validates on itself"
                    )
                owner[target] = path
                splits[split].append((path, label[name]))
    return ImageFolderIndex(root, classes, splits)
