"""Search settings: parsed from the command line into one frozen object, validated before Ray.

Defaults live here, each with its reason: they suit a 2-core laptop on the embedded data set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search.optuna_bridge import SAMPLERS
from search.storage import (
    SETTINGS_FILE,  # noqa: F401 (the resolved settings, in the experiment folder: re-exported)
    RemoteExperiment,
    is_uri,
    join_uri,
    uri_problems,
    working_copy,
    writable_problems,
)
from search.usage import OneLineErrorParser, UsageError
from search.wandb_mode import WANDB_MODES, wandb_mode_problems
from spaces import SPACES, get_space, validate_space, value_range
from trainable import weights as w
from trainable.backbones import BACKBONES
from trainable.config import TrialConfig, default_cache_dir, error_line, lookup
from trainable.datasets import CHOICES as DATA_CHOICES
from trainable.datasets import (
    DIGITS,
    IMAGE_FOLDER,
    TORCHVISION_SETS,
    DataSpec,
    check_present,
)
from trainable.images import DataError, index_image_folder
from trainable.metrics import VAL_ACC
from trainable.pretrain import SOURCES

METRIC, MODE = VAL_ACC, "max"  # the search metric and its direction, set once in TuneConfig
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
    "device",
    "cache_dir",
)
DATASETS_FOLDER = "datasets"  # torchvision data sets without :ROOT live in <cache-dir>/datasets
# Image sizes: digits are 8x8, drawn on 32 px; other data at the 224 px ImageNet backbones saw.
DIGITS_IMAGE_SIZE, IMAGE_SIZE = 32, 224
# A 2048 px image is 50 MB as floats, and ResNet's stem turns it into 270 MB of activations.
MAX_IMAGE_SIZE = 2048
DIGITS_SHOTS = 20  # digits' few-shot target task; other data sets train on all their images


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
    def remote(self) -> RemoteExperiment | None:
        """The experiment at a URI --storage-path with its working copy; None for a folder."""
        if not is_uri(self.storage_path):
            return None
        return RemoteExperiment(join_uri(self.storage_path, self.name), self.experiment_dir)

    @property
    def experiment_location(self) -> str:
        """Where Ray stores the experiment: its URI, or its folder."""
        return self.remote.uri if self.remote else str(self.experiment_dir)

    @property
    def storage_location(self) -> str:
        """Ray's RunConfig storage_path: the URI as given, or the absolute folder."""
        return self.storage_path if self.remote else str(self.experiment_dir.parent)

    @property
    def concurrency(self) -> int:
        """Trials that run at once: --max-concurrent, or as many as this machine's CPUs hold
        (on a cluster search.cluster sets --max-concurrent from the cluster's CPUs)."""
        return self.max_concurrent or max(1, int((os.cpu_count() or 1) // self.cpus_per_trial))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for `settings.json`."""
        return dataclasses.asdict(self)


DEFAULT = " (default: %(default)s)"  # argparse fills in each flag's default


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def build_parser(only_given: bool = False) -> argparse.ArgumentParser:
    """The command-line flags of scripts/search.py; `only_given` leaves defaults out."""
    d = SearchSettings()
    p = OneLineErrorParser(
        prog="search.py",
        description="Search freeze depth and learning rates for fine-tuning a pretrained backbone.",
        allow_abbrev=False,  # a typo in a flag must fail, not match a longer flag
        add_help=not only_given,
    )
    p.add_argument(
        "--space",
        metavar="NAME",
        default=d.space,
        help=f"search space: {', '.join(sorted(SPACES))}" + DEFAULT,
    )
    p.add_argument(
        "--data", metavar="SPEC", default=d.data, help=f"data set: {DATA_CHOICES}" + DEFAULT
    )
    p.add_argument(
        "--weights",
        metavar="SPEC",
        default=None,
        help=f"starting weights: {w.CHOICES} (default: source for digits, else imagenet)",
    )
    p.add_argument(
        "--backbone",
        metavar="NAME",
        default=d.backbone,
        help=f"backbone in place of the space's: {', '.join(sorted(BACKBONES))}",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        metavar="PX",
        help="crop size the model sees (default: 32 for digits, else 224)",
    )
    p.add_argument(
        "--shots",
        type=int,
        default=d.shots,
        metavar="N",
        help="training images per class, 0 = all (default: 20 for digits, else all)",
    )
    p.add_argument(
        "--val-fraction",
        metavar="F",
        type=float,
        default=d.val_fraction,
        help="validation share of each class when the data has no val split" + DEFAULT,
    )
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="no random crops and flips of training images",
    )
    p.add_argument(
        "--no-feature-cache",
        dest="feature_cache",
        action="store_false",
        help="recompute the frozen stages every epoch instead of caching their output",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch a missing torchvision data set or ImageNet weights (default: never)",
    )
    p.add_argument(
        "--num-samples",
        metavar="N",
        type=int,
        default=d.num_samples,
        help="number of trials" + DEFAULT,
    )
    p.add_argument(
        "--max-epochs",
        metavar="E",
        type=int,
        default=d.max_epochs,
        help="epochs of a full trial" + DEFAULT,
    )
    p.add_argument(
        "--grace-period",
        metavar="G",
        type=int,
        default=d.grace_period,
        help="ASHA's first rung" + DEFAULT,
    )
    p.add_argument(
        "--reduction-factor",
        metavar="R",
        type=int,
        default=d.reduction_factor,
        help="ASHA's η" + DEFAULT,
    )
    p.add_argument(
        "--max-concurrent",
        metavar="N",
        type=int,
        default=d.max_concurrent,
        help="trials at once (default: 0 = CPUs / cpus-per-trial)",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        default=d.address,
        help="a running Ray cluster to run the trials on, from one of its nodes (HOST:6379 or "
        "auto; local: none; default: $RAY_ADDRESS, else a local Ray on this machine)",
    )
    p.add_argument(
        "--cpus-per-trial",
        metavar="C",
        type=float,
        default=d.cpus_per_trial,
        help="CPUs and torch threads" + DEFAULT,
    )
    p.add_argument(
        "--gpus-per-trial",
        metavar="G",
        type=float,
        default=d.gpus_per_trial,
        help="GPUs per trial; fractions share one" + DEFAULT,
    )
    p.add_argument(
        "--max-failures",
        metavar="N",
        type=int,
        default=d.max_failures,
        help="retries of a failed trial from its last checkpoint" + DEFAULT,
    )
    p.add_argument(
        "--name", metavar="NAME", default=d.name, help="experiment name (default: <space>-<time>)"
    )
    p.add_argument(
        "--storage-path",
        metavar="DIR",
        default=d.storage_path,
        help="parent folder of experiments" + DEFAULT,
    )
    p.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=d.seed,
        help="seeds sampler, splits and init" + DEFAULT,
    )
    p.add_argument(
        "--sampler",
        default=d.sampler,
        choices=SAMPLERS,
        help="Optuna sampler" + DEFAULT,
    )
    p.add_argument(
        "--wandb",
        default=d.wandb,
        choices=WANDB_MODES,
        help="Weights & Biases mode" + DEFAULT,
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=d.cache_dir,
        help="source backbones, image checks, data sets (default: $TRANSFER_TUNE_CACHE, "
        "else ~/.cache/transfer-tune)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted experiment --storage-path/--name",
    )
    p.add_argument(
        "--extend",
        type=_positive_int,
        default=0,
        metavar="N",
        help="add N trials to the experiment --storage-path/--name, warm-started from its study",
    )
    if only_given:
        # --help is printed by the full parser (search.cli): its text shows the defaults.
        p.add_argument("-h", "--help", action="store_true")
        for action in p._actions:
            action.default = argparse.SUPPRESS
    return p


def given_flags(argv: list[str] | None) -> dict[str, Any]:
    """The flags present on the command line, with their parsed values (no defaults)."""
    return vars(build_parser(only_given=True).parse_args(argv))


def cluster_address(given: str | None) -> str:
    """--address, else $RAY_ADDRESS; "local" (either way) means no cluster: ""."""
    address = given or os.environ.get("RAY_ADDRESS", "")
    return "" if address == "local" else address


def parse_settings(argv: list[str] | None) -> SearchSettings:
    """Parse and validate the command line; raise UsageError listing every problem."""
    args = build_parser().parse_args(argv)
    del args.resume, args.extend  # not settings of the experiment: see search.resume
    name = args.name or f"{args.space}-{time.strftime('%Y%m%d-%H%M%S')}"
    cache_dir = str(Path(args.cache_dir).expanduser().resolve()) if args.cache_dir else ""
    # Flags and fields share their names; the derived defaults are filled in by `resolve`.
    settings = SearchSettings(
        **{
            **vars(args),
            "weights": args.weights or "",
            "name": name,
            "cache_dir": cache_dir or default_cache_dir(),
            "address": cluster_address(args.address),
        }
    )
    settings = resolve(settings)
    problems = validate_settings(settings)
    if problems:
        raise UsageError("; ".join(problems))
    return settings


def _existing_experiment(s: SearchSettings) -> list[str]:
    """A problem when experiment --name exists (at a URI --storage-path: there or in its local
    working copy); experiments are never overwritten."""
    remote = s.remote
    if remote is None:
        where: list[Any] = [s.experiment_dir] if s.experiment_dir.exists() else []
    else:
        try:
            where = [remote.uri] if remote.exists() else []
        except OSError as error:  # unreachable, no credentials, no such bucket
            return [f"--storage-path {s.storage_path!r} cannot be read: {error_line(error)}"]
        if not where:  # the search uploads its settings first thing
            problems = writable_problems(s.storage_path)
            if problems:
                return problems
        if s.experiment_dir.exists():  # left by an experiment whose stored copy was removed
            where.append(f"its working copy {s.experiment_dir}")
    if not where:
        return []
    return [
        f"experiment {' and '.join(map(str, where))} already exists and is never overwritten; "
        "choose another --name"
    ]


def resolve(s: SearchSettings) -> SearchSettings:
    """Fill in the defaults that depend on other settings, and make paths absolute, so that
    settings.json and each trial's params.json say exactly what ran. An unknown data set is
    left as given, for `validate_settings` to report with every other problem."""
    try:
        spec = DataSpec.parse(s.data)
    except DataError:
        spec = DataSpec(s.data)
    if spec.name == IMAGE_FOLDER:
        spec = DataSpec(spec.name, str(Path(spec.root).expanduser().resolve()))
    elif spec.name in TORCHVISION_SETS:
        root = Path(spec.root).expanduser() if spec.root else Path(s.cache_dir) / DATASETS_FOLDER
        spec = DataSpec(spec.name, str(root.resolve()))
    digits = spec.name == DIGITS
    weights = s.weights or (w.SOURCE if spec.name in SOURCES else w.IMAGENET)
    if weights not in w.NAMED:
        weights = str(Path(weights).expanduser().resolve())
    space = get_space(s.space) if s.space in SPACES else {}
    return dataclasses.replace(
        s,
        data=str(spec),
        weights=weights,
        backbone=s.backbone or space.get("backbone", TrialConfig.backbone),
        image_size=s.image_size or (DIGITS_IMAGE_SIZE if digits else IMAGE_SIZE),
        shots=s.shots if s.shots != -1 else (DIGITS_SHOTS if digits else 0),
    )


def _choice_problems(registry: dict[str, Any], kind: str, name: str) -> list[str]:
    """[] when `name` is registered, else the message naming the valid choices."""
    try:
        lookup(registry, kind, name)
    except ValueError as error:
        return [str(error)]
    return []


def _space_problems(name: str, backbone: str) -> list[str]:
    """Problems of the named space with `backbone`: structure, known keys, freeze_depth range."""
    try:
        space = get_space(name)
    except ValueError as error:
        return [str(error)]
    problems = [f"space {name!r}: {p}" for p in validate_space(space)]
    known = {f.name for f in dataclasses.fields(TrialConfig)} - set(HARNESS_KEYS) | {"backbone"}
    for key in sorted(set(space) - known):
        problems.append(
            f"space {name!r}: unknown setting {key!r}; a space may set: {', '.join(sorted(known))}"
        )
    backbone_problems = _choice_problems(BACKBONES, "backbone", backbone)
    problems += backbone_problems
    bounds = value_range(space.get("freeze_depth"))
    if not backbone_problems and bounds is not None:
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
        elif spec.name != DIGITS and not s.download:
            check_present(spec.name, Path(spec.root))
    except DataError as error:
        return [str(error)]
    return []


def _weights_problems(s: SearchSettings) -> list[str]:
    """Problems of --weights: a name it does not fit, a missing or unfitting file."""
    if s.weights == w.SOURCE:
        if s.data not in SOURCES:
            return [
                f"--weights source needs a data set with a source task ({', '.join(SOURCES)}), "
                f"not {s.data!r}; choose imagenet, none or a state-dict file"
            ]
        return []
    if s.backbone not in BACKBONES or s.weights == w.NONE:
        return []
    if s.weights == w.IMAGENET:
        if s.download:
            return []
        try:
            w.prepare_imagenet(s.backbone, download=False)
        except w.WeightsError as error:
            return [str(error)]
        return []
    return w.weights_file_problems(Path(s.weights), s.backbone)


def _gpu_problems(gpus_per_trial: float) -> list[str]:
    """--gpus-per-trial beyond this machine's GPUs: Ray would wait for them forever."""
    if gpus_per_trial < 0:
        return [f"`--gpus-per-trial >= 0` must hold, but got {gpus_per_trial:g}"]
    if gpus_per_trial == 0:
        return []
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


def _storage_problems(storage_path: str) -> list[str]:
    """Why --storage-path cannot hold experiments: a file, or a URI pyarrow cannot open."""
    if is_uri(storage_path):
        return uri_problems(storage_path)
    folder = Path(storage_path).expanduser()
    if folder.exists() and not folder.is_dir():
        return [f"--storage-path must be a folder, but {folder} is a file"]
    return []


def local_resource_problems(s: SearchSettings) -> list[str]:
    """What keeps one trial of `s` from running on this machine (Tune would wait forever)."""
    problems = _gpu_problems(s.gpus_per_trial)
    cpus = os.cpu_count() or 1
    if not 0 < s.cpus_per_trial <= cpus:
        problems.append(
            f"`0 < --cpus-per-trial <= {cpus}` (this machine's CPUs) must hold, "
            f"but got {s.cpus_per_trial:g}"
        )
    return problems


def validate_settings(s: SearchSettings) -> list[str]:
    """Every problem with the settings, each a sentence stating the rule and the value."""
    problems = _space_problems(s.space, s.backbone)
    problems += _data_problems(s)
    problems += _weights_problems(s)
    if not s.address:  # a cluster's CPUs and GPUs are checked once connected (search.cluster)
        problems += local_resource_problems(s)
    spec = BACKBONES.get(s.backbone)
    least = spec.min_image_size if spec else 16
    if not least <= s.image_size <= MAX_IMAGE_SIZE:
        problems.append(
            f"`{least} <= --image-size <= {MAX_IMAGE_SIZE}` must hold for {s.backbone}, "
            f"but got {s.image_size}"
        )
    elif spec and s.image_size % spec.image_multiple:
        problems.append(
            f"`--image-size % {spec.image_multiple} == 0` must hold for {s.backbone} (its patch "
            f"size), but got {s.image_size}"
        )
    if s.shots < 0:
        problems.append(f"`--shots >= 0` must hold, but got {s.shots}")
    if not 0 < s.val_fraction < 1:
        problems.append(f"`0 < --val-fraction < 1` must hold, but got {s.val_fraction:g}")
    for flag, value in [
        ("num_samples", s.num_samples),
        ("max_epochs", s.max_epochs),
        ("grace_period", s.grace_period),
    ]:
        if value < 1:
            problems.append(f"`--{flag.replace('_', '-')} >= 1` must hold, but got {value}")
    if s.grace_period > s.max_epochs:
        problems.append(
            f"`--grace-period <= --max-epochs` must hold, but got "
            f"(grace_period={s.grace_period}, max_epochs={s.max_epochs})"
        )
    if s.reduction_factor < 2:
        problems.append(f"`--reduction-factor >= 2` must hold, but got {s.reduction_factor}")
    if s.max_failures < 0:
        problems.append(f"`--max-failures >= 0` must hold, but got {s.max_failures}")
    if s.max_concurrent < 0:
        problems.append(f"`--max-concurrent >= 0` must hold, but got {s.max_concurrent}")
    if s.address:  # what the cluster's nodes hold is checked once connected
        if s.cpus_per_trial <= 0:
            problems.append(f"`--cpus-per-trial > 0` must hold, but got {s.cpus_per_trial:g}")
        if s.gpus_per_trial < 0:
            problems.append(f"`--gpus-per-trial >= 0` must hold, but got {s.gpus_per_trial:g}")
    if not 0 <= s.seed < 2**32:
        problems.append(f"`0 <= --seed < 2**32` must hold, but got {s.seed}")
    storage = _storage_problems(s.storage_path)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", s.name):
        problems.append(
            f"--name must be a folder name of letters, digits, '.', '_' or '-', but got {s.name!r}"
        )
    elif not storage:  # with a storage that can't be used, where it would be is moot
        problems += _existing_experiment(s)
    problems += wandb_mode_problems(s.wandb)
    return problems + storage
