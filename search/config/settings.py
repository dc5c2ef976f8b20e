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
from trainable.defaults import (
    DEFAULT_BACKBONE,
    DIGITS_IMAGE_SIZE,
    DIGITS_SHOTS,
    IMAGE_SIZE,
    default,
)
from trainable.metrics import VAL_ACC

METRIC, MODE = VAL_ACC, "max"  # the search metric and its direction, set once in TuneConfig
SAMPLERS = ("tpe", "random")  # Optuna's TPE; random is the baseline it should beat
DATASETS_FOLDER = "datasets"  # torchvision data sets without :ROOT live in <cache-dir>/datasets
# A 2048 px image is 50 MB as floats, and ResNet's stem turns it into 270 MB of activations.
MAX_IMAGE_SIZE = 2048
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
    """Everything one search needs; written next to the results as `settings.json`. Defaults
    and their reasons: trainable.defaults. None: derived by `resolve`."""

    space: str = default("space")
    data: str = default("data")
    weights: str | None = default("weights")
    backbone: str | None = default("backbone")
    # Several backbones searched as a choice (comma-separated, as given); "" for one.
    backbones: str = default("backbones")
    prescreen: bool = default("prescreen")
    image_size: int | None = default("image_size")
    shots: int | None = default("shots")  # 0: all
    val_fraction: float = default("val_fraction")
    augment: bool = default("augment")
    feature_cache: bool = default("feature_cache")
    download: bool = default("download")
    num_samples: int = default("num_samples")
    max_epochs: int = default("max_epochs")
    grace_period: int = default("grace_period")
    reduction_factor: int = default("reduction_factor")
    patience: int = default("patience")  # 0: off
    # Seconds this run of the search may take (0: no limit); each --resume or --extend is given
    # its own (search.run.budget).
    time_budget: float = default("time_budget")
    max_concurrent: int | None = default("max_concurrent")
    cpus_per_trial: float = default("cpus_per_trial")
    gpus_per_trial: float = default("gpus_per_trial")
    loader_workers: int | None = default("loader_workers")  # 0: in the trial's process
    keep_checkpoints: int = default("keep_checkpoints")  # 0: every trial's best
    max_failures: int = default("max_failures")
    name: str | None = default("name")
    storage_path: str = default("storage_path")
    seed: int = default("seed")
    sampler: str = default("sampler")
    wandb: str = default("wandb")
    cache_dir: str | None = default("cache_dir")
    # Not part of the experiment: a resume may run elsewhere.
    address: str | None = default("address")

    @property
    def experiment_dir(self) -> Path:
        """The experiment folder, `storage_path/name`, absolute; for a URI --storage-path, its
        local working copy (search.experiment.storage)."""
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
        (on a cluster search.run.cluster sets --max-concurrent from the cluster's CPUs)."""
        if self.max_concurrent:
            return self.max_concurrent
        return max(1, int((os.cpu_count() or 1) // self.cpus_per_trial))

    @property
    def candidates(self) -> list[str]:
        """The backbones the search chooses among: --backbones, else the one backbone."""
        named = [name.strip() for name in self.backbones.split(",") if name.strip()]
        return list(dict.fromkeys(named)) or [self.backbone]

    @property
    def searches_backbone(self) -> bool:
        """Whether the backbone is a searched choice (two or more candidates)."""
        return len(self.candidates) > 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for `settings.json`."""
        return dataclasses.asdict(self)


def resolve(s: SearchSettings) -> SearchSettings:
    """Fill in the defaults that depend on other settings, and make paths absolute, so that
    settings.json and each trial's params.json say exactly what ran. An unknown data set or
    space is left as given, for validation to report with every other problem."""
    cache_dir = s.cache_dir or default_cache_dir()
    try:
        spec = DataSpec.parse(s.data)
    except DataError:
        spec = DataSpec(s.data)
    if spec.name == IMAGE_FOLDER:
        spec = DataSpec(spec.name, str(Path(spec.root).expanduser().resolve()))
    elif spec.name in TORCHVISION_FILES:
        root = Path(spec.root).expanduser() if spec.root else Path(cache_dir) / DATASETS_FOLDER
        spec = DataSpec(spec.name, str(root.resolve()))
    digits = spec.name == DIGITS
    weights = s.weights or (SOURCE if spec.name in SOURCE_DATASETS else IMAGENET)
    if weights not in NAMED_WEIGHTS:
        weights = str(Path(weights).expanduser().resolve())
    own = space_backbone(s.space) if s.space in SPACES else DEFAULT_BACKBONE
    named = [name.strip() for name in s.backbones.split(",") if name.strip()]
    if named and not s.backbone:  # the first candidate stands for the others where one is read
        own = named[0]
    return dataclasses.replace(
        s,
        data=str(spec),
        weights=weights,
        backbone=s.backbone or own,
        backbones=",".join(dict.fromkeys(named)),
        image_size=s.image_size
        if s.image_size is not None
        else (DIGITS_IMAGE_SIZE if digits else IMAGE_SIZE),
        shots=s.shots if s.shots is not None else (DIGITS_SHOTS if digits else 0),
        loader_workers=(
            s.loader_workers if s.loader_workers is not None else max(1, int(s.cpus_per_trial))
        ),
        cache_dir=cache_dir,
    )


# The trial fields a search sets from its own settings of the same name.
SHARED_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(TrialConfig)
    if f.name in {g.name for g in dataclasses.fields(SearchSettings)}
)
# Trial fields the harness sets; a space may not define them.
HARNESS_KEYS = (*SHARED_FIELDS, "num_threads", "device")


def space_of(s: SearchSettings, backbones: list[str] | None = None) -> dict[str, Any]:
    """The search's space (spaces.get_space): with several candidates (`backbones`, else
    s.candidates), the backbone is one of its searched keys."""
    from spaces import get_space
    from trainable.catalog import BACKBONES

    chosen = backbones or s.candidates
    depths = {b: BACKBONES[b].max_freeze_depth for b in chosen} if len(chosen) > 1 else None
    return get_space(s.space, s.weights, depths)


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimizer steps of one epoch: its full batches, at least one (trainable.data trains on
    full batches only)."""
    return max(1, train_images // batch_size)


def asha_rungs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace_period * reduction_factor**k < max_t."""
    rungs, rung = [], grace_period
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs


def trial_settings(s: SearchSettings) -> dict[str, Any]:
    """The trial fields a resolved search fixes for every trial: the same-named settings, one
    torch thread per whole CPU, and the device (a GPU only when the search gave trials one)."""
    return {
        **{name: getattr(s, name) for name in SHARED_FIELDS},
        "num_threads": max(1, int(s.cpus_per_trial)),
        "device": "cuda" if s.gpus_per_trial > 0 else "cpu",
    }
