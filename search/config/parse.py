"""The command line of a search: flags parsed into SearchSettings, resolved and validated.

Pure and fast: nothing heavier than the standard library and the harness's own catalogs is
imported, so `--help`, `--version` and a bad flag answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from search.config.settings import SAMPLERS, SearchSettings, resolve
from search.config.usage import OneLineErrorParser, UsageError
from search.config.validate import settings_problems
from search.config.wandb_mode import WANDB_MODES
from spaces import SPACES
from trainable.catalog import BACKBONES, DATA_CHOICES, WEIGHTS_CHOICES
from trainable.defaults import DEFAULTS


def package_version() -> str:
    """The installed transfer-tune's version (pyproject.toml's)."""
    try:
        return metadata.version("transfer-tune")
    except metadata.PackageNotFoundError:  # run from a clone that was never installed
        return "unknown (not installed: pip install -e .)"


def _default(name: str) -> str:
    """' (default: VALUE, REASON)' of setting `name`, from the table of trainable.defaults; a
    derived default's reason says what it is."""
    entry = DEFAULTS[name]
    said = entry.reason if entry.value is None else f"{entry.value}, {entry.reason}"
    return f" (default: {said})".replace("%", "%%")  # argparse formats help with %


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    """An argparse type: a duration such as 90s, 20m, 1.5h (seconds when no unit), over 0."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text)
    seconds = float(match[1]) * DURATION_UNITS[match[2] or "s"] if match else 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a duration over 0 such as 90s, 20m or 2h, got {text!r}"
        )
    return seconds


def build_parser(only_given: bool = False, prog: str = "search.py") -> argparse.ArgumentParser:
    """The command-line flags of scripts/search.py; `only_given` leaves defaults out."""
    d = SearchSettings()
    p = OneLineErrorParser(
        prog=prog,
        description="Search freeze depth and learning rates for fine-tuning a pretrained backbone.",
        allow_abbrev=False,  # a typo in a flag must fail, not match a longer flag
        add_help=not only_given,
    )
    p.add_argument(
        "--space",
        metavar="NAME",
        default=d.space,
        help=f"search space: {', '.join(sorted(SPACES))}" + _default("space"),
    )
    p.add_argument(
        "--data",
        metavar="SPEC",
        default=d.data,
        help=f"data set: {DATA_CHOICES}" + _default("data"),
    )
    p.add_argument(
        "--weights",
        metavar="SPEC",
        default=d.weights,
        help=f"starting weights: {WEIGHTS_CHOICES}" + _default("weights"),
    )
    p.add_argument(
        "--backbone",
        metavar="NAME",
        default=d.backbone,
        help=f"backbone in place of the space's: {', '.join(sorted(BACKBONES))}"
        + _default("backbone"),
    )
    p.add_argument(
        "--backbones",
        metavar="A,B,...",
        default=d.backbones,
        help="search the backbone too, among these (each with its own freeze depths and "
        "learning-rate ranges); registered: "
        + ", ".join(sorted(BACKBONES))
        + _default("backbones"),
    )
    p.add_argument(
        "--no-prescreen",
        dest="prescreen",
        action="store_false",
        help="with --backbones, skip the probes on frozen features that rank the backbones, "
        "drop those clearly behind and warm-start the search" + _default("prescreen"),
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        metavar="PX",
        help="crop size the model sees" + _default("image_size"),
    )
    p.add_argument(
        "--shots",
        type=int,
        default=d.shots,
        metavar="N",
        help="training images per class, 0 = all" + _default("shots"),
    )
    p.add_argument(
        "--val-fraction",
        metavar="F",
        type=float,
        default=d.val_fraction,
        help="validation share of each class when the data has no val split"
        + _default("val_fraction"),
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
        help="fetch a missing torchvision data set or ImageNet weights" + _default("download"),
    )
    p.add_argument(
        "--num-samples",
        metavar="N",
        type=int,
        default=d.num_samples,
        help="number of trials" + _default("num_samples"),
    )
    p.add_argument(
        "--max-epochs",
        metavar="E",
        type=int,
        default=d.max_epochs,
        help="epochs of a full trial" + _default("max_epochs"),
    )
    p.add_argument(
        "--grace-period",
        metavar="G",
        type=int,
        default=d.grace_period,
        help="ASHA's first rung" + _default("grace_period"),
    )
    p.add_argument(
        "--reduction-factor",
        metavar="R",
        type=int,
        default=d.reduction_factor,
        help="ASHA's η" + _default("reduction_factor"),
    )
    p.add_argument(
        "--patience",
        metavar="N",
        type=int,
        default=d.patience,
        help="stop a trial whose val_acc has not improved for N epochs (stop reason plateau); "
        "0 leaves it to ASHA" + _default("patience"),
    )
    p.add_argument(
        "--time-budget",
        metavar="DURATION",
        type=duration,
        default=d.time_budget,
        help="stop the search after this long (90s, 20m, 2h), starting no trial it cannot "
        "finish by then; with --resume or --extend, the time that run may take"
        + _default("time_budget"),
    )
    p.add_argument(
        "--max-concurrent",
        metavar="N",
        type=int,
        default=d.max_concurrent,
        help="trials at once" + _default("max_concurrent"),
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        default=d.address,
        help="a running Ray cluster to run the trials on, from one of its nodes (HOST:6379 or "
        "auto; local: none)" + _default("address"),
    )
    p.add_argument(
        "--cpus-per-trial",
        metavar="C",
        type=float,
        default=d.cpus_per_trial,
        help="CPUs and torch threads" + _default("cpus_per_trial"),
    )
    p.add_argument(
        "--gpus-per-trial",
        metavar="G",
        type=float,
        default=d.gpus_per_trial,
        help="GPUs per trial; fractions share one" + _default("gpus_per_trial"),
    )
    p.add_argument(
        "--loader-workers",
        metavar="N",
        type=int,
        default=d.loader_workers,
        help="processes decoding image files per trial; 0: in the trial's own process"
        + _default("loader_workers"),
    )
    p.add_argument(
        "--keep-checkpoints",
        metavar="N",
        type=int,
        default=d.keep_checkpoints,
        help="when the search ends, keep the best checkpoint of the N best trials and remove "
        "the other finished trials' (0: every trial's best)" + _default("keep_checkpoints"),
    )
    p.add_argument(
        "--max-failures",
        metavar="N",
        type=int,
        default=d.max_failures,
        help="retries of a failed trial from its last checkpoint" + _default("max_failures"),
    )
    p.add_argument(
        "--name", metavar="NAME", default=d.name, help="experiment name" + _default("name")
    )
    p.add_argument(
        "--storage-path",
        metavar="DIR",
        default=d.storage_path,
        help="parent folder of experiments" + _default("storage_path"),
    )
    p.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=d.seed,
        help="seeds sampler, splits and init" + _default("seed"),
    )
    p.add_argument(
        "--sampler",
        default=d.sampler,
        choices=SAMPLERS,
        help="Optuna sampler" + _default("sampler"),
    )
    p.add_argument(
        "--wandb",
        default=d.wandb,
        choices=WANDB_MODES,
        help="Weights & Biases mode" + _default("wandb"),
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=d.cache_dir,
        help="source backbones, image checks, data sets" + _default("cache_dir"),
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
        # --help is printed by the full parser (search.cli.search): its text shows the defaults.
        p.add_argument("-h", "--help", action="store_true")
        p.add_argument("--version", action="store_true")
        for action in p._actions:
            action.default = argparse.SUPPRESS
    else:
        p.add_argument("--version", action="version", version=f"transfer-tune {package_version()}")
    return p


def given_flags(argv: list[str] | None) -> dict[str, Any]:
    """The flags present on the command line, with their parsed values (no defaults)."""
    return vars(build_parser(only_given=True).parse_args(argv))


def cluster_address(given: str | None) -> str | None:
    """--address, else $RAY_ADDRESS; "local" (either way) means no cluster: None."""
    address = given or os.environ.get("RAY_ADDRESS")
    return None if address in ("local", "") else address


def parse_settings(argv: list[str] | None) -> SearchSettings:
    """Parse, resolve and validate the command line (no file, device or network access:
    search.config.preflight does that); raise UsageError listing every problem."""
    settings = read_settings(argv)
    problems = settings_problems(settings)
    if problems:
        raise UsageError("; ".join(problems))
    return settings


def read_settings(argv: list[str] | None) -> SearchSettings:
    """The command line parsed and resolved, not yet validated; UsageError for a flag argparse
    refuses (unknown, malformed)."""
    args = build_parser().parse_args(argv)
    if args.backbone and args.backbones:
        raise UsageError(
            f"--backbone {args.backbone} fixes the backbone and --backbones {args.backbones} "
            "searches it: give one of them"
        )
    del args.resume, args.extend  # not settings of the experiment: see search.run.resume
    name = args.name if args.name is not None else f"{args.space}-{time.strftime('%Y%m%d-%H%M%S')}"
    cache_dir = str(Path(args.cache_dir).expanduser().resolve()) if args.cache_dir else None
    # Flags and fields share their names; the derived defaults are filled in by `resolve`.
    settings = SearchSettings(
        **{
            **vars(args),
            "name": name,
            "cache_dir": cache_dir,
            "address": cluster_address(args.address),
        }
    )
    return resolve(settings)
