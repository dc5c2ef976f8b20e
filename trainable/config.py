"""TrialConfig: everything one trial needs, built from Ray Tune's `config` dict in one place."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainable.defaults import (
    DEFAULT_BACKBONE,
    DIGITS_IMAGE_SIZE,
    DIGITS_SHOTS,
    DIGITS_WEIGHTS,
    default,
)


def default_cache_dir() -> str:
    """Where pretrained source backbones are cached: $TRANSFER_TUNE_CACHE, else ~/.cache."""
    env = os.environ.get("TRANSFER_TUNE_CACHE")
    if env:
        return str(Path(env).expanduser().resolve())
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return str(Path(base) / "transfer-tune")


def error_line(error: BaseException) -> str:
    """'TypeName: first line of the message', for one-line reports of foreign errors."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def lookup(registry: dict[str, Any], kind: str, name: str) -> Any:
    """`registry[name]`, or a ValueError naming the valid choices."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}")
    return registry[name]


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
# Its 1-based number in the search, set by the searcher in each trial's config beside the
# recipe (search.run.optuna_bridge): it names the trial, and changes nothing it does.
TRIAL_NUMBER = "trial_number"


def _parse_type(annotation: str) -> tuple[str, bool]:
    """'float | None' -> ('float', True): a field's scalar type and whether it may be None."""
    parts = [part.strip() for part in annotation.split("|")]
    return next(p for p in parts if p != "None"), "None" in parts


@dataclass(frozen=True)
class TrialConfig:
    """One trial's complete recipe; `params.json` of a trial holds exactly these keys."""

    # searched
    freeze_depth: int = 0
    backbone_lr: float | None = None  # None only when every backbone stage is frozen
    head_lr: float = default("head_lr")
    # fixed per search (trainable.defaults has each reason); the data-dependent ones take the
    # values the embedded default resolves to
    backbone: str = DEFAULT_BACKBONE
    data: str = default("data")  # or "imagefolder:/abs/path", or "cifar10:/abs/root"
    # "source": pretrained on the data set's source task; "imagenet": torchvision's weights;
    # an absolute path: a state-dict file; "none": from scratch
    weights: str = DIGITS_WEIGHTS
    max_epochs: int = default("max_epochs")
    # Stop once val_acc has not improved for this many epochs (0: never); the last epoch's
    # result then says `plateau`.
    patience: int = default("patience")
    batch_size: int = default("batch_size")
    momentum: float = default("momentum")
    weight_decay: float = default("weight_decay")
    image_size: int = DIGITS_IMAGE_SIZE
    shots: int = DIGITS_SHOTS  # labelled training images per class; 0: all
    val_fraction: float = default("val_fraction")
    augment: bool = default("augment")
    feature_cache: bool = default("feature_cache")  # trainable.features, where valid
    seed: int = default("seed")
    num_threads: int = 1  # torch threads; the search sets it to the trial's CPU allotment
    # Processes decoding image files (trainable.pipeline); 0 decodes in the trial's own
    # process. The search sets it from --cpus-per-trial (or --loader-workers).
    loader_workers: int = 0
    # "cuda" only when the search gave the trial a GPU (--gpus-per-trial): Ray 2.60 no longer
    # hides the GPUs from a trial that asked for none, so the trial must not guess.
    device: str = "cpu"
    summary_every: int = default("summary_every")
    cache_dir: str = field(default_factory=default_cache_dir)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrialConfig:
        """Build from a Tune config, coercing numbers; unknown keys raise, naming the valid ones."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        config = {key: value for key, value in config.items() if key != TRIAL_NUMBER}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown trial setting(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(sorted(fields))}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in config.items():
            kind_name, optional = _parse_type(str(fields[name].type))
            if value is None:
                if not optional:
                    raise ValueError(f"`{name}` must be a {kind_name}, but got {name}=None")
                kwargs[name] = None
                continue
            kind = _SCALARS[kind_name]
            # Optuna and numpy hand back numpy scalars; store plain Python values.
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"`{name}` must be true or false, but got {name}={value!r}")
            if kind is int and float(value) != int(value):
                raise ValueError(f"`{name}` must be an integer, but got {name}={value!r}")
            kwargs[name] = kind(value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict form stored in checkpoints and in Tune's params.json."""
        return dataclasses.asdict(self)
