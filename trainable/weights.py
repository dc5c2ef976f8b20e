"""The weights a trial's backbone starts from (`--weights`), loaded without surprises.

    source     pretrained on the data set's own source task (digits 0-4; trainable.pretrain)
    imagenet   torchvision's ImageNet weights of the backbone, from torch's hub cache
    PATH       a state-dict file (torch.save of model.state_dict()), read with weights_only=True
    none       random initialisation: training from scratch

Only the search's driver downloads (`prepare_imagenet`, with --download); a trial reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from trainable.backbones import backbone_state_problems, build_model
from trainable.catalog import IMAGENET, NONE, SOURCE, WEIGHTS_CHOICES, get_backbone
from trainable.config import error_line
from trainable.pretrain import SOURCES, ensure_source_weights


class WeightsError(ValueError):
    """Weights that cannot be used: one line saying which and why."""


def imagenet_weights(backbone: str) -> torchvision.models.WeightsEnum:
    """torchvision's recommended ImageNet weights of `backbone`."""
    return torchvision.models.get_model_weights(backbone).DEFAULT


def imagenet_file(backbone: str) -> Path:
    """Where torchvision keeps (or downloads) the ImageNet weights of `backbone`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / get_backbone(backbone).imagenet_file


def prepare_imagenet(backbone: str, download: bool, log: Callable[[str], None] = print) -> None:
    """Make sure torch's hub cache holds the ImageNet weights of `backbone`; download if allowed."""
    path = imagenet_file(backbone)
    if path.is_file():
        return
    url = imagenet_weights(backbone).url
    if not download:
        raise WeightsError(
            f"ImageNet weights of {backbone} are not in torch's hub cache: put {url} "
            f"at {path}, or add --download to fetch them"
        )
    log(f"Downloading ImageNet weights of {backbone} to {path}")
    try:
        imagenet_weights(backbone).get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # offline, or a corrupt download
        raise WeightsError(f"cannot download {url} to {path}: {error}") from None


def check_imagenet(backbone: str) -> None:
    """Load the cached ImageNet weights of `backbone` once, so that a damaged file stops the
    search here, named, instead of failing every trial."""
    path = imagenet_file(backbone)
    try:
        state = imagenet_weights(backbone).get_state_dict(progress=False, weights_only=True)
    except Exception as error:  # a truncated download raises anything torch.load can
        raise WeightsError(
            f"ImageNet weights file {path} cannot be read ({error_line(error)}); "
            "delete it and add --download, or put a fresh copy there"
        ) from None
    problems = backbone_state_problems(build_model(backbone, 2), backbone, state)
    if problems:
        raise WeightsError(f"ImageNet weights file {path} does not fit {backbone}: {problems[0]}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in `path`: a dict of tensors, or one under "model" or "state_dict" (a
    transfer-tune or Lightning checkpoint); DataParallel's "module." prefix is dropped."""
    if path.is_dir():
        raise WeightsError(f"weights file {path} is a folder; --weights takes {WEIGHTS_CHOICES}")
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; --weights takes {WEIGHTS_CHOICES}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # garbage bytes raise anything from KeyError to UnpicklingError
        raise WeightsError(
            f"weights file {path} is not a state dict torch.load reads with weights_only=True: "
            f"{error_line(error)}"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not (
        isinstance(loaded, dict)
        and loaded
        and all(isinstance(v, torch.Tensor) for v in loaded.values())
    ):
        raise WeightsError(
            f"weights file {path} is not a state dict: it holds a {type(loaded).__name__}, "
            "not a dict of tensors (save one with torch.save(model.state_dict(), path))"
        )
    if all(k.startswith("module.") for k in loaded):
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    return loaded


def weights_file_problems(path: Path, backbone: str) -> list[str]:
    """[] when `path` holds a state dict that fits `backbone` (head aside), else why not."""
    try:
        state = read_state_dict(path)
    except WeightsError as error:
        return [str(error)]
    problems = backbone_state_problems(build_model(backbone, 2), backbone, state)
    if problems:
        return [f"weights file {path} does not fit {backbone}: {'; '.join(problems)}"]
    return []


def load_weights(
    spec: str, backbone: str, data: str, image_size: int, cache_dir: str
) -> dict[str, torch.Tensor] | None:
    """The backbone state dict a trial starts from; None trains from scratch."""
    if spec == NONE:
        return None
    if spec == SOURCE:
        if data not in SOURCES:
            raise WeightsError(f"--weights source needs a data set with a source task, not {data}")
        path = ensure_source_weights(backbone, data, image_size, cache_dir)
        return torch.load(path, weights_only=True)["model"]
    if spec == IMAGENET:
        prepare_imagenet(backbone, download=False)  # a trial never downloads: raises if absent
        return imagenet_weights(backbone).get_state_dict(progress=False, weights_only=True)
    return read_state_dict(Path(spec))
