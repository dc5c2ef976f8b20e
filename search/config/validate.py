"""Validation of resolved search settings: every rule that needs no file, device or network,
each problem a sentence stating the rule and the value. search.config.preflight checks the
rest (folders, weights files, GPUs, storage) before Ray starts."""

from __future__ import annotations

import os
import re
from typing import Any

from search.config.settings import MAX_IMAGE_SIZE, SearchSettings
from spaces import SPACES
from trainable.catalog import (
    BACKBONES,
    DIGITS,
    DIGITS_MAX_SHOTS,
    NAMED_WEIGHTS,
    SOURCE,
    SOURCE_DATASETS,
    DataError,
    DataSpec,
)
from trainable.config import lookup


def _choice_problems(registry: dict[str, Any], kind: str, name: str) -> list[str]:
    """[] when `name` is registered, else the message naming the valid choices."""
    try:
        lookup(registry, kind, name)
    except ValueError as error:
        return [str(error)]
    return []


def _weights_problems(s: SearchSettings) -> list[str]:
    """--weights source for a data set without a source task (files are preflight's)."""
    if s.weights == SOURCE and s.data not in SOURCE_DATASETS:
        return [
            f"--weights source needs a data set with a source task "
            f"({', '.join(SOURCE_DATASETS)}), not {s.data!r}; choose imagenet, none or a "
            "state-dict file"
        ]
    return []


def local_resource_problems(s: SearchSettings) -> list[str]:
    """What keeps one trial of `s` from running on this machine's CPUs (Tune would wait
    forever); its GPUs are counted by preflight (that needs torch)."""
    problems = []
    if s.gpus_per_trial < 0:
        problems.append(f"`--gpus-per-trial >= 0` must hold, but got {s.gpus_per_trial:g}")
    cpus = os.cpu_count() or 1
    if not 0 < s.cpus_per_trial <= cpus:
        problems.append(
            f"`0 < --cpus-per-trial <= {cpus}` (this machine's CPUs) must hold, "
            f"but got {s.cpus_per_trial:g}"
        )
    return problems


def _image_size_problems(s: SearchSettings, backbone: str) -> list[str]:
    spec = BACKBONES.get(backbone)
    least = spec.min_image_size if spec else 16
    if not least <= s.image_size <= MAX_IMAGE_SIZE:
        return [
            f"`{least} <= --image-size <= {MAX_IMAGE_SIZE}` must hold for {backbone}, "
            f"but got {s.image_size}"
        ]
    if spec and s.image_size % spec.image_multiple:
        return [
            f"`--image-size % {spec.image_multiple} == 0` must hold for {backbone} (its patch "
            f"size), but got {s.image_size}"
        ]
    return []


def _backbones_problems(s: SearchSettings) -> list[str]:
    """--backbones: registered names, two or more, and starting weights each of them has."""
    if not s.backbones:
        return []
    problems = []
    for name in s.candidates:
        problems += _choice_problems(BACKBONES, "backbone in --backbones", name)
    if len(s.candidates) < 2:
        problems.append(
            f"--backbones needs two or more different backbones, but got {s.backbones!r}; "
            "for one, use --backbone"
        )
    if s.weights not in NAMED_WEIGHTS:
        problems.append(
            f"--weights {s.weights} is one backbone's state-dict file; with --backbones choose "
            f"{', '.join(NAMED_WEIGHTS)}"
        )
    return problems


def settings_problems(s: SearchSettings) -> list[str]:
    """Every problem of the settings that shows without I/O, each a sentence stating the rule
    and the value."""
    problems = _choice_problems(SPACES, "search space", s.space)
    problems += _choice_problems(BACKBONES, "backbone", s.backbone)
    problems += _backbones_problems(s)
    try:
        DataSpec.parse(s.data)
    except DataError as error:
        problems.append(str(error))
    problems += _weights_problems(s)
    if s.address:  # a cluster's CPUs and GPUs are checked once connected (search.run.cluster)
        if s.cpus_per_trial <= 0:
            problems.append(f"`--cpus-per-trial > 0` must hold, but got {s.cpus_per_trial:g}")
        if s.gpus_per_trial < 0:
            problems.append(f"`--gpus-per-trial >= 0` must hold, but got {s.gpus_per_trial:g}")
    else:
        problems += local_resource_problems(s)
    for backbone in s.candidates:
        problems += _image_size_problems(s, backbone)
    if s.shots < 0:
        problems.append(f"`--shots >= 0` must hold, but got {s.shots}")
    elif s.data == DIGITS and not 1 <= s.shots <= DIGITS_MAX_SHOTS:
        problems.append(
            f"`1 <= --shots <= {DIGITS_MAX_SHOTS}` must hold for digits (a few-shot task with "
            f"50 validation images per class), but got {s.shots}"
        )
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
    if s.time_budget < 0:
        problems.append(f"`--time-budget >= 0` must hold (0: none), but got {s.time_budget:g}")
    if s.patience < 0:
        problems.append(f"`--patience >= 0` must hold (0: off), but got {s.patience}")
    if s.reduction_factor < 2:
        problems.append(f"`--reduction-factor >= 2` must hold, but got {s.reduction_factor}")
    if s.max_failures < 0:
        problems.append(f"`--max-failures >= 0` must hold, but got {s.max_failures}")
    if s.max_concurrent is not None and s.max_concurrent < 1:
        problems.append(f"`--max-concurrent >= 1` must hold, but got {s.max_concurrent}")
    if s.keep_checkpoints < 0:
        problems.append(f"`--keep-checkpoints >= 0` must hold, but got {s.keep_checkpoints}")
    if s.loader_workers < 0:
        problems.append(f"`--loader-workers >= 0` must hold, but got {s.loader_workers}")
    if not 0 <= s.seed < 2**32:
        problems.append(f"`0 <= --seed < 2**32` must hold, but got {s.seed}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", s.name):
        problems.append(
            f"--name must be a folder name of letters, digits, '.', '_' or '-', but got {s.name!r}"
        )
    return problems
