"""Search settings: one frozen object, its defaults (each with its reason), and `resolve`, which
fills in the defaults that depend on other settings. Pure: no file, device or network access,
and nothing heavier than the standard library imported."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from spaces import SPACES, space_backbone
from trainable.catalog import (
    DIGITS,
    IMAGE_FOLDER,
    IMAGENET,
    NAMED_WEIGHTS,
    SOURCE,
    SOURCE_DATASETS,
    TORCHVISION_FILES,
    DataError,
    DataSpec,
)
from trainable.config import TrialConfig, default_cache_dir
from trainable.metrics import VAL_ACC

METRIC, MODE = VAL_ACC, "max"  # the search metric and its direction, set once in TuneConfig
SAMPLERS = ("tpe", "random")  # Optuna's TPE; random is the baseline it should beat
# Trial settings the harness sets from flags; a space may not define them.
HARNESS_KEYS = (
    "data",
    "weights",
    "backbone",
    "image_size",
    "shots",
    "val_fraction",
    "augment",
    "feature_cache",
    "max_epochs",
    "seed",
    "num_threads",
    "loader_workers",
    "device",
    "cache_dir",
)
DATASETS_FOLDER = "datasets"  # torchvision data sets without :ROOT live in <cache-dir>/datasets
# Image sizes: digits are 8x8, drawn on 32 px; other data at the 224 px ImageNet backbones saw.
DIGITS_IMAGE_SIZE, IMAGE_SIZE = 32, 224
# A 2048 px image is 50 MB as floats, and ResNet's stem turns it into 270 MB of activations.
MAX_IMAGE_SIZE = 2048
DIGITS_SHOTS = 20  # digits' few-shot target task; other data sets train on all their images
COPIES_FOLDER = "storage"  # the working copies: <cache_dir>/storage/<scheme>/<bucket>/<path>/<name>


def is_uri(storage_path: str) -> bool:
    """Whether --storage-path names a URI (`s3://bucket/runs`) rather than a local folder."""
    return "://" in storage_path


def join_uri(uri: str, name: str) -> str:
    """`uri` with `name` appended to its path; its query (`?endpoint_override=...`) kept."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/runs/NAME?q` as its storage URI `s3://bucket/runs?q` and NAME."""
    parts = urlsplit(uri)
    parent, _, name = parts.path.rstrip("/").rpartition("/")
    return urlunsplit(parts._replace(path=parent)), name


def working_copy(storage_uri: str, name: str, cache_dir: str) -> Path:
    """The local folder of experiment `name` stored at `storage_uri`: one per URI and name, so
    a resume on the same machine (or one with the same cache folder) finds it again."""
    parts = urlsplit(storage_uri)
    host = parts.netloc.rpartition("@")[2]  # never credentials in a folder name
    endpoint = parse_qs(parts.query).get("endpoint_override")
    if endpoint:  # the same bucket at another endpoint is another store: keep copies apart
        host += "-" + hashlib.sha1(endpoint[0].encode()).hexdigest()[:8]
    words = [parts.scheme, host, *PurePosixPath(parts.path).parts[1:]]
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", word) for word in words if word]
    return Path(cache_dir, COPIES_FOLDER, *safe, name)


@dataclass(frozen=True)
class SearchSettings:
    """Everything one search needs; written next to the results as `settings.json`."""

    space: str = "resnet_small"
    data: str = "digits"  # the embedded default: runs offline in minutes
    # "": the data set's own: "source" for digits (pretrained on digits 0-4), else "imagenet"
    weights: str = ""
    backbone: str = ""  # "": the space's
    image_size: int = 0  # 0: the data set's own (32 px digits, else 224 px)
    shots: int = -1  # training images per class; -1: the data set's own (digits 20), 0: all
    val_fraction: float = 0.2  # per class, when the data set has no validation split
    augment: bool = True  # random resized crops and flips of training images (not digits)
    # Frozen stages' output computed once and shared by epochs and trials, where valid
    feature_cache: bool = True
    download: bool = False  # may fetch torchvision data sets and ImageNet weights
    num_samples: int = 16  # enough for TPE to leave its 10 random start-up trials
    max_epochs: int = 9  # ASHA rungs at epochs 1, 3, 9 for grace_period=1, reduction_factor=3
    grace_period: int = 1  # one epoch already separates diverging from learning trials
    reduction_factor: int = 3  # keep the best third at every rung (ASHA's usual value)
    max_concurrent: int = 0  # 0: as many trials as the CPUs hold (cpu_count / cpus_per_trial)
    cpus_per_trial: float = 1.0  # one torch thread per trial: 2 trials in parallel on 2 cores
    gpus_per_trial: float = 0.0  # CPU by default; 0.5 puts two trials on one GPU
    # Processes decoding image files per trial; -1: one per whole CPU of the trial (a worker
    # decodes while the trial's thread trains or waits on its GPU); 0: in the trial's process
    loader_workers: int = -1
    # Checkpoints kept when the search ends: the best one of this many best trials (0: of every
    # trial). 3 leaves the runner-up and a tie to compare; the rest are removed (search.retention)
    keep_checkpoints: int = 3
    # Retries of a failed trial from its checkpoint: a worker that died (OOM, killed) gets one
    # more chance (a diverged trial's retry fails at once: see trainable.ray_entry).
    max_failures: int = 1
    name: str = ""  # "": <space>-<date>-<time>, a new experiment every run
    storage_path: str = "runs"
    seed: int = 0
    sampler: str = "tpe"  # Optuna's TPE; "random" is the baseline it should beat
    wandb: str = "auto"  # online only when W&B is configured, else offline; never prompts
    cache_dir: str = ""  # "": $TRANSFER_TUNE_CACHE or ~/.cache/transfer-tune
    # A running Ray cluster to use ("HOST:6379", "ray://HOST:10001", "auto"); "": a local Ray.
    # Not part of the experiment: a resume may run elsewhere. $RAY_ADDRESS when not given.
    address: str = ""

    @property
    def experiment_dir(self) -> Path:
        """The experiment folder, `storage_path/name`, absolute; for a URI --storage-path, its
        local working copy (search.storage)."""
        if is_uri(self.storage_path):
            return working_copy(self.storage_path, self.name, self.cache_dir or default_cache_dir())
        return Path(self.storage_path).expanduser().resolve() / self.name

    @property
    def experiment_uri(self) -> str | None:
        """The experiment's URI for a URI --storage-path; None for a folder."""
        return join_uri(self.storage_path, self.name) if is_uri(self.storage_path) else None

    @property
    def experiment_location(self) -> str:
        """Where Ray stores the experiment: its URI, or its folder."""
        return self.experiment_uri or str(self.experiment_dir)

    @property
    def storage_location(self) -> str:
        """Ray's RunConfig storage_path: the URI as given, or the absolute folder."""
        return self.storage_path if is_uri(self.storage_path) else str(self.experiment_dir.parent)

    @property
    def concurrency(self) -> int:
        """Trials that run at once: --max-concurrent, or as many as this machine's CPUs hold
        (on a cluster search.cluster sets --max-concurrent from the cluster's CPUs)."""
        return self.max_concurrent or max(1, int((os.cpu_count() or 1) // self.cpus_per_trial))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for `settings.json`."""
        return dataclasses.asdict(self)


def resolve(s: SearchSettings) -> SearchSettings:
    """Fill in the defaults that depend on other settings, and make paths absolute, so that
    settings.json and each trial's params.json say exactly what ran. An unknown data set or
    space is left as given, for validation to report with every other problem."""
    try:
        spec = DataSpec.parse(s.data)
    except DataError:
        spec = DataSpec(s.data)
    if spec.name == IMAGE_FOLDER:
        spec = DataSpec(spec.name, str(Path(spec.root).expanduser().resolve()))
    elif spec.name in TORCHVISION_FILES:
        root = Path(spec.root).expanduser() if spec.root else Path(s.cache_dir) / DATASETS_FOLDER
        spec = DataSpec(spec.name, str(root.resolve()))
    digits = spec.name == DIGITS
    weights = s.weights or (SOURCE if spec.name in SOURCE_DATASETS else IMAGENET)
    if weights not in NAMED_WEIGHTS:
        weights = str(Path(weights).expanduser().resolve())
    own = space_backbone(s.space) if s.space in SPACES else TrialConfig.backbone
    return dataclasses.replace(
        s,
        data=str(spec),
        weights=weights,
        backbone=s.backbone or own,
        image_size=s.image_size or (DIGITS_IMAGE_SIZE if digits else IMAGE_SIZE),
        shots=s.shots if s.shots != -1 else (DIGITS_SHOTS if digits else 0),
        loader_workers=(
            s.loader_workers if s.loader_workers >= 0 else max(1, int(s.cpus_per_trial))
        ),
    )
