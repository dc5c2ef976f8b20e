"""Preflight: the checks of a search's settings against this machine, run once before Ray
starts: the data's folders and files, the weights files, the GPUs, the storage, the space's
contents. Problems are reported together, as one line (UsageError).

The cheap checks (folders and files) run first and import nothing heavy: a mistyped path
answers in a fraction of a second. Only when they pass do the checks that need torch (a weights
file's tensors, the GPU count), pyarrow (a URI) or Ray (the space's domains) import them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path

from search.config.parse import read_settings
from search.config.settings import HARNESS_KEYS, SearchSettings, is_uri
from search.config.usage import UsageError
from search.config.validate import settings_problems
from search.config.wandb_mode import wandb_mode_problems
from trainable.catalog import (
    BACKBONES,
    IMAGE_FOLDER,
    IMAGENET,
    NAMED_WEIGHTS,
    NONE,
    TORCHVISION_FILES,
    WEIGHTS_CHOICES,
    DataError,
    DataSpec,
    check_present,
    hub_weights_file,
    imagenet_url,
)
from trainable.config import TrialConfig
from trainable.folders import index_image_folder


def checked_settings(argv: list[str] | None) -> SearchSettings:
    """The command line parsed, resolved, validated and checked on this machine, as
    scripts/search.py runs it; UsageError listing every problem."""
    settings = read_settings(argv)
    preflight(settings)
    return settings


def preflight(s: SearchSettings) -> None:
    """Raise UsageError listing every problem of `s` (search.config.validate's rules, then
    this machine's files, devices and storage); nothing is written."""
    problems = settings_problems(s) + quick_problems(s)
    if not problems:
        problems = thorough_problems(s)
    if problems:
        raise UsageError("; ".join(problems))


def quick_problems(s: SearchSettings) -> list[str]:
    """The checks of files and folders: data, weights files, an existing experiment."""
    problems = _data_problems(s)
    problems += _weights_file_problems(s)
    problems += wandb_mode_problems(s.wandb)
    if not is_uri(s.storage_path):
        folder = Path(s.storage_path).expanduser()
        if folder.exists() and not folder.is_dir():
            problems.append(f"--storage-path must be a folder, but {folder} is a file")
        elif s.experiment_dir.exists():
            problems.append(_exists_message([s.experiment_dir]))
        else:
            problems += _creatable_problems(folder)
    return problems


def thorough_problems(s: SearchSettings) -> list[str]:
    """The checks that need torch, pyarrow or Ray: the space's domains, a weights file's
    tensors, the GPUs, a storage URI."""
    problems = space_problems(s.space, s.backbone)
    if s.weights not in NAMED_WEIGHTS and s.backbone in BACKBONES:
        from trainable.weights import weights_file_problems

        problems += weights_file_problems(Path(s.weights), s.backbone)
    if not s.address:  # a cluster's GPUs are counted once connected (search.run.cluster)
        problems += gpu_problems(s.gpus_per_trial)
    if is_uri(s.storage_path):
        problems += _stored_experiment_problems(s)
    elif all(b in BACKBONES for b in s.candidates) and not problems:
        problems += free_space_problems(s)
    return problems


# What a trial writes besides checkpoints: result rows, TensorBoard events, an offline W&B run.
LOG_BYTES_PER_TRIAL = 4 << 20


def _gb(size: float) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"


@dataclasses.dataclass(frozen=True)
class Room:
    """What the volume of --storage-path holds, against what a search there writes: each
    trial keeps up to two checkpoints until the search ends (its best and the one its state
    resumes from: search.experiment.retention), each at most the whole model and its momentum
    (a lean one holds only what trains), plus its logs."""

    volume: Path  # the nearest existing folder of --storage-path
    free: int
    checkpoint: int  # the largest candidate backbone's
    concurrent: int
    num_samples: int

    @property
    def needed(self) -> int:
        """One checkpoint and the logs of each trial running at once."""
        return self.concurrent * (self.checkpoint + LOG_BYTES_PER_TRIAL)

    @property
    def may_write(self) -> int:
        return self.num_samples * (2 * self.checkpoint + LOG_BYTES_PER_TRIAL)


@functools.cache
def _checkpoint_bytes(backbone: str, image_size: int) -> int:
    from trainable.backbones import build_model
    from trainable.checkpoint import largest_checkpoint_bytes

    return largest_checkpoint_bytes(build_model(backbone, 10, image_size).state_dict())


def room(s: SearchSettings) -> Room:
    """Measure the volume of a local --storage-path against the search's checkpoints."""
    import shutil

    existing = Path(s.storage_path).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    checkpoint = max(_checkpoint_bytes(b, s.image_size or 224) for b in s.candidates)
    return Room(
        existing,
        shutil.disk_usage(existing).free,
        checkpoint,
        min(s.num_samples, s.concurrency),
        s.num_samples,
    )


def free_space_problems(s: SearchSettings) -> list[str]:
    """Refuse a volume that cannot hold a checkpoint and the logs of each running trial."""
    r = room(s)
    if r.free >= r.needed:
        return []
    return [
        f"--storage-path {s.storage_path} has {_gb(r.free)} free, less than one checkpoint "
        f"({_gb(r.checkpoint)}) and the logs of each of {r.concurrent} trials at once: make "
        "room first"
    ]


def free_space_warning(s: SearchSettings) -> str | None:
    """The warning for a volume that holds the running trials but not all the search may
    write (`warn_of_room` says it)."""
    r = room(s)
    if r.free >= r.may_write:
        return None
    return (
        f"Warning: {r.volume} has {_gb(r.free)} free; this search may write up to "
        f"{_gb(r.may_write)} ({s.num_samples} trials x 2 checkpoints of up to "
        f"{_gb(r.checkpoint)}, and logs). If the volume fills, the search stops and "
        "--resume continues it once there is room."
    )


def warn_of_room(s: SearchSettings) -> None:
    """Print `free_space_warning` of a local --storage-path. Called once every check has
    passed, as Ray starts (a cluster's once it is connected and checked): a refused search
    writes nothing, so before the one line that says why, the warning would be noise."""
    warning = None if is_uri(s.storage_path) else free_space_warning(s)
    if warning:
        print(warning, file=sys.stderr)


def space_problems(name: str, backbone: str) -> list[str]:
    """Problems of the named space with `backbone`: structure, known keys, freeze_depth range."""
    from spaces import get_space, validate_space, value_range

    space = get_space(name)
    problems = [f"space {name!r}: {p}" for p in validate_space(space)]
    known = {f.name for f in dataclasses.fields(TrialConfig)} - set(HARNESS_KEYS) | {"backbone"}
    for key in sorted(set(space) - known):
        problems.append(
            f"space {name!r}: unknown setting {key!r}; a space may set: {', '.join(sorted(known))}"
        )
    bounds = value_range(space.get("freeze_depth"))
    if backbone in BACKBONES and bounds is not None:
        top = BACKBONES[backbone].max_freeze_depth
        if bounds[1] > top:
            problems.append(
                f"`freeze_depth <= {top}` must hold for {backbone}, "
                f"but space {name!r} reaches freeze_depth={int(bounds[1])}"
            )
    return problems


def _data_problems(s: SearchSettings) -> list[str]:
    """Problems of --data found without decoding images: folders, classes, missing files."""
    try:
        spec = DataSpec.parse(s.data)
        if spec.name == IMAGE_FOLDER:
            index_image_folder(Path(spec.root))
        elif spec.name in TORCHVISION_FILES and not s.download:
            check_present(spec.name, Path(spec.root))
    except DataError as error:
        return [str(error)]
    return []


def _weights_file_problems(s: SearchSettings) -> list[str]:
    """A missing ImageNet weights file (without --download), a missing or folder --weights."""
    if s.backbone not in BACKBONES or s.weights == NONE:
        return []
    if s.weights == IMAGENET:
        path = hub_weights_file(s.backbone)
        if s.download or path.is_file():
            return []
        return [
            f"ImageNet weights of {s.backbone} are not in torch's hub cache: put "
            f"{imagenet_url(s.backbone)} at {path}, or add --download to fetch them"
        ]
    if s.weights in NAMED_WEIGHTS:
        return []
    path = Path(s.weights)
    if path.is_dir():
        return [f"weights file {path} is a folder; --weights takes {WEIGHTS_CHOICES}"]
    if not path.is_file():
        return [f"weights file {path} does not exist; --weights takes {WEIGHTS_CHOICES}"]
    return []


def gpu_problems(gpus_per_trial: float) -> list[str]:
    """--gpus-per-trial beyond this machine's GPUs: Ray would wait for them forever."""
    if gpus_per_trial <= 0:
        return []
    import torch

    available = torch.cuda.device_count()
    if available == 0:
        return [
            f"--gpus-per-trial {gpus_per_trial:g} needs a GPU, but torch sees none on this "
            "machine; leave it at 0 to train on the CPU"
        ]
    if gpus_per_trial > available:
        return [
            f"`--gpus-per-trial <= {available}` (this machine's GPUs) must hold, "
            f"but got {gpus_per_trial:g}"
        ]
    return []


def _creatable_problems(folder: Path) -> list[str]:
    """Why the experiment's folder could not be made below `folder`: the nearest part of the
    path that exists is a file, or a folder this user cannot write in."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return [f"--storage-path {folder} cannot be made: {existing} is a file"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"--storage-path {folder} cannot be written: {existing} is not writable"]
    return []


def _exists_message(where: list[object]) -> str:
    return (
        f"experiment {' and '.join(map(str, where))} already exists and is never overwritten; "
        "choose another --name"
    )


def _stored_experiment_problems(s: SearchSettings) -> list[str]:
    """A URI --storage-path that cannot be opened, read or written, or that already holds
    experiment --name (there or in its local working copy)."""
    from search.config.filesystems import stored_at, uri_problems, writable_problems
    from trainable.config import error_line

    problems = uri_problems(s.storage_path)
    if problems:
        return problems
    uri = s.experiment_uri
    assert uri is not None, "a URI --storage-path"
    try:
        where: list[object] = [uri] if stored_at(uri) else []
    except OSError as error:  # unreachable, no credentials, no such bucket
        return [f"--storage-path {s.storage_path!r} cannot be read: {error_line(error)}"]
    if not where:  # the search uploads its settings first thing
        problems = writable_problems(s.storage_path)
        if problems:
            return problems
    if s.experiment_dir.exists():  # left by an experiment whose stored copy was removed
        where.append(f"its working copy {s.experiment_dir}")
    return [_exists_message(where)] if where else []
