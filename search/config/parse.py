"""The command line of a search: flags parsed into SearchSettings, resolved and validated.

Pure and fast: nothing heavier than the standard library and the harness's own catalogs is
imported, so `--help`, `--version` and a bad flag answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from search.config.settings import SAMPLERS, SearchSettings, resolve
from search.config.validate import settings_problems
from search.usage import OneLineErrorParser, UsageError
from search.wandb_mode import WANDB_MODES
from spaces import SPACES
from trainable.catalog import BACKBONES, DATA_CHOICES, WEIGHTS_CHOICES
from trainable.config import default_cache_dir


def package_version() -> str:
    """The installed transfer-tune's version (pyproject.toml's)."""
    try:
        return metadata.version("transfer-tune")
    except metadata.PackageNotFoundError:  # run from a clone that was never installed
        return "unknown (not installed: pip install -e .)"


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
        help=f"starting weights: {WEIGHTS_CHOICES} (default: source for digits, else imagenet)",
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
        "--loader-workers",
        metavar="N",
        type=int,
        default=d.loader_workers,
        help="processes decoding image files per trial; 0: in the trial's own process "
        "(default: one per whole CPU of --cpus-per-trial)",
    )
    p.add_argument(
        "--keep-checkpoints",
        metavar="N",
        type=int,
        default=d.keep_checkpoints,
        help="when the search ends, keep the best checkpoint of the N best trials and remove "
        "the other finished trials' (0: every trial's best)" + DEFAULT,
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


def cluster_address(given: str | None) -> str:
    """--address, else $RAY_ADDRESS; "local" (either way) means no cluster: ""."""
    address = given or os.environ.get("RAY_ADDRESS", "")
    return "" if address == "local" else address


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
    return resolve(settings)
