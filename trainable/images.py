"""Users' images decoded: which files are unreadable (checked once, cached), the evaluation
transform, and the training augmentation drawn from a per-sample generator.

The folder itself is indexed by trainable.folders, without torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from trainable.catalog import DataError
from trainable.data import DECODE_ERRORS, IMAGENET_MEAN, IMAGENET_STD
from trainable.files import write_atomically

RESIZE_RATIO = 256 / 224  # resize the shorter side to this times the crop (ImageNet's recipe)
# Light augmentation: crops of 35-100 % of the image (ImageNet training uses 8-100 %, too
# strong for a few epochs of fine-tuning), aspect ratios 3/4-4/3, and horizontal flips.
CROP_SCALE = (0.35, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
PROGRESS_SECONDS = 10  # a progress line this often while checking a large folder
CHECK_VERSION = 1  # bump when `_decode_error` changes what counts as unreadable


def to_mode(image: Image.Image, mode: str = "RGB") -> Image.Image:
    """`image` in `mode` ("RGB" or "L"), its range kept: Pillow's own conversion clips 16- and
    32-bit greyscale at 255, which turns most of a 16-bit photo white. Those are scaled to 8
    bits first (16-bit by 1/257, 32-bit integers and floats by their own maximum)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        if image.mode == "I" and top <= 65535:  # a 16-bit PNG that Pillow opened as "I"
            top = 65535.0 if pixels.max() > 255 else 255.0
        scaled = np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8)
        image = Image.fromarray(scaled, "L")
    return image.convert(mode)


def _decode_error(path: str) -> str | None:
    """Why the image at `path` cannot be used, or None when it decodes."""
    try:
        with Image.open(path) as image:
            to_mode(image).load()  # full decode: a truncated JPEG passes Image.verify()
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


def eval_pixels(preprocessing: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """An image resized and centre-cropped as `eval_preprocessing`'s values say, as 8-bit
    pixels (3, H, W): what a trial's loader workers send (a quarter of the bytes of floats);
    trainable.data.normalized turns a batch of them into the model's input, on its device."""
    return transforms.Compose(
        [
            transforms.Resize(
                preprocessing["resize"],
                interpolation=transforms.InterpolationMode(preprocessing["interpolation"]),
            ),
            transforms.CenterCrop(preprocessing["crop"]),
            transforms.PILToTensor(),
        ]
    )


def eval_transform(preprocessing: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform described by `eval_preprocessing`'s values, to the model's
    input (scripts/predict.py); the same numbers as `eval_pixels` then `normalized`."""
    return transforms.Compose(
        [
            eval_pixels(preprocessing),
            transforms.ConvertImageDtype(torch.float32),
            transforms.Normalize(preprocessing["mean"], preprocessing["std"]),
        ]
    )


class Augment:
    """The training transform: a random resized crop (CROP_SCALE of the area, CROP_RATIO
    aspect) and a horizontal flip, drawn from the generator it is given (torchvision's
    RandomResizedCrop algorithm), as 8-bit pixels (normalised with their batch:
    trainable.data.normalized)."""

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        self.size = int(preprocessing["crop"])
        self.interpolation = transforms.InterpolationMode(preprocessing["interpolation"])

    def __repr__(self) -> str:  # part of a split's fingerprint: every value that shapes a view
        return (
            f"Augment(size={self.size}, scale={CROP_SCALE}, ratio={CROP_RATIO}, "
            f"interpolation={self.interpolation.value}, flip=0.5)"
        )

    def crop(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop, as RandomResizedCrop.get_params draws it."""
        area = width * height
        log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
        for _ in range(10):
            target = area * rng.uniform(*CROP_SCALE)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        # Ten misses (a very long image): the centre crop of the nearest allowed aspect.
        aspect = width / height
        if aspect < CROP_RATIO[0]:
            w, h = width, round(width / CROP_RATIO[0])
        elif aspect > CROP_RATIO[1]:
            h, w = height, round(height * CROP_RATIO[1])
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Image.Image, rng: random.Random) -> torch.Tensor:
        top, left, h, w = self.crop(*image.size, rng)
        size = [self.size, self.size]
        view = TF.resized_crop(image, top, left, h, w, size, self.interpolation, antialias=True)
        if rng.random() < 0.5:
            view = TF.hflip(view)
        return TF.pil_to_tensor(view)


def image_transforms(
    image_size: int, augment: bool, preset: Callable[..., torch.nn.Module] | None = None
) -> tuple[Callable[[Image.Image], torch.Tensor], Augment | None]:
    """The evaluation pixels of PIL images for `image_size` crops (`eval_pixels`), and the
    training augmentation (None with `augment` off); see `eval_preprocessing` for `preset`."""
    preprocessing = eval_preprocessing(image_size, preset)
    return eval_pixels(preprocessing), Augment(preprocessing) if augment else None


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
                return to_mode(image), label
        except DECODE_ERRORS as error:
            # It decoded when the search started: the file changed since.
            raise DataError(f"cannot read image {path}: {error}") from None
