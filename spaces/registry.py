"""The named search spaces a user picks with `--space`, and their structural validation.

Nothing here imports Ray until a space is built: its name and backbone are read first (the
command line checks them in milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spaces.families import convnext, efficientnet, mobilenet, vit
from spaces.resnet import resnet_large, resnet_small


@dataclass(frozen=True)
class Space:
    """A registered space: the function returning its searched and fixed settings (a flat
    dict of `ray.tune` domains and constants), and the backbone it fine-tunes."""

    build: Callable[[], dict[str, Any]]
    backbone: str  # a name of trainable.catalog.BACKBONES


# Adding a space: write a function returning a flat dict, and register it here with its backbone.
SPACES: dict[str, Space] = {
    "resnet_small": Space(resnet_small, "resnet18"),
    "resnet_large": Space(resnet_large, "resnet50"),
    "mobilenet": Space(mobilenet, "mobilenet_v3_large"),
    "efficientnet": Space(efficientnet, "efficientnet_b0"),
    "convnext": Space(convnext, "convnext_tiny"),
    "vit": Space(vit, "vit_b_16"),
}

SEARCHED = ("freeze_depth", "backbone_lr", "head_lr")  # every space must define these
_CONSTANTS = (bool, int, float, str)


def _registered(name: str) -> Space:
    if name not in SPACES:
        raise ValueError(
            f"unknown search space {name!r}; choose one of: {', '.join(sorted(SPACES))}"
        )
    return SPACES[name]


def space_backbone(name: str) -> str:
    """The backbone of the space registered as `name`, without building the space."""
    return _registered(name).backbone


# What freeze_depth is fixed to when trials start from random weights (--weights none): the
# frozen stages of an untrained backbone are random features, not transferred ones, so how
# many to freeze is no transfer choice; every stage trains.
SCRATCH_FREEZE_DEPTH = 0


def get_space(
    name: str, weights: str | None = None, backbones: dict[str, int] | None = None
) -> dict[str, Any]:
    """The search space registered as `name`, its backbone included; unknown names list the
    choices. With `weights` "none" (training from scratch) freeze_depth is fixed to
    SCRATCH_FREEZE_DEPTH instead of searched.

    With two or more `backbones` (name: the freeze_depth of its linear probe, its number of
    stages) the backbone is a searched choice among them, and the
    searched ranges are the union of theirs (`backbone_space` has each one's): what the
    TensorBoard board and the checks of a space read. The constants are `name`'s.
    """
    entry = _registered(name)
    space = {"backbone": entry.backbone, **entry.build()}
    if backbones and len(backbones) > 1:
        from ray import tune

        own = [backbone_space(b, depth, name, weights) for b, depth in backbones.items()]
        space = {key: value for key, value in space.items() if key not in SEARCHED}
        space["backbone"] = tune.choice(list(backbones))
        for key in SEARCHED:
            space[key] = _union([s[key] for s in own if key in s])
        return space
    if weights == "none" and "freeze_depth" in space:
        space["freeze_depth"] = SCRATCH_FREEZE_DEPTH
    return space


def own_space(backbone: str) -> str | None:
    """The registered space made for `backbone` (the first, by registration), or None."""
    return next((name for name, s in SPACES.items() if s.backbone == backbone), None)


def backbone_space(
    backbone: str, max_depth: int, fallback: str, weights: str | None = None
) -> dict[str, Any]:
    """The searched domains of `backbone` when the backbone is searched too: its own space's
    learning-rate ranges (`fallback`'s when no space is registered for it) and freeze_depth
    over 0..`max_depth`, every depth of its family (fixed to SCRATCH_FREEZE_DEPTH with
    --weights none)."""
    from ray import tune

    built = _registered(own_space(backbone) or fallback).build()
    space = {key: built[key] for key in SEARCHED if key in built}
    space["freeze_depth"] = (
        SCRATCH_FREEZE_DEPTH if weights == "none" else tune.randint(0, max_depth + 1)
    )
    return space


def _union(values: list[Any]) -> Any:
    """One domain spanning every one of `values` (same kind: randint, loguniform); a constant
    when all are that constant."""
    from ray import tune
    from ray.tune.search.sample import Float, Integer

    if all(not isinstance(v, Integer | Float) for v in values) and len(set(values)) == 1:
        return values[0]
    low = min(value_range(v)[0] for v in values)
    high = max(value_range(v)[1] for v in values)
    if all(isinstance(v, Integer | int) for v in values):
        return tune.randint(int(low), int(high) + 1)
    return tune.loguniform(low, high)


def searched_keys(space: dict[str, Any]) -> list[str]:
    """Keys whose values the searcher samples (domains), in the space's order."""
    from ray.tune.search.sample import Domain

    return [key for key, value in space.items() if isinstance(value, Domain)]


def value_range(value: Any) -> tuple[float, float] | None:
    """Smallest and largest value a constant or domain can take; None when not numeric."""
    from ray.tune.search.sample import Categorical, Float, Integer

    if isinstance(value, bool | str):
        return None
    if isinstance(value, int | float):
        return float(value), float(value)
    if isinstance(value, Integer):
        return float(value.lower), float(value.upper - 1)  # tune.randint's upper is exclusive
    if isinstance(value, Float):
        return float(value.lower), float(value.upper)
    if isinstance(value, Categorical):
        numbers = [c for c in value.categories if isinstance(c, int | float)]
        if len(numbers) == len(value.categories) and numbers:
            return float(min(numbers)), float(max(numbers))
    return None


def _integer_valued(value: Any) -> bool:
    """True for an int, a tune.randint, or a tune.choice of ints."""
    from ray.tune.search.sample import Categorical, Integer

    if isinstance(value, Categorical):
        return all(isinstance(c, int) and not isinstance(c, bool) for c in value.categories)
    return isinstance(value, Integer) or (isinstance(value, int) and not isinstance(value, bool))


def _domain_problems(key: str, value: Any) -> list[str]:
    """What is wrong with one entry of a space (empty when it is fine)."""
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform

    if isinstance(value, dict) and "grid_search" in value:
        return [f"{key!r}: grid_search cannot be converted to Optuna; use tune.choice"]
    if isinstance(value, dict):
        return [f"{key!r}: nested spaces are not supported (Optuna flattens them); keep it flat"]
    if isinstance(value, _CONSTANTS):
        return []
    if not isinstance(value, Integer | Float | Categorical):
        kind = type(value).__name__
        return [
            f"{key!r}: must be a constant or tune.randint/uniform/loguniform/choice, got {kind}"
        ]
    problems = []
    if isinstance(value, Integer | Float):
        if not value.lower < value.upper:
            problems.append(
                f"{key!r}: `lower < upper` must hold, but got (lower={value.lower}, "
                f"upper={value.upper})"
            )
        if isinstance(value.get_sampler(), LogUniform) and value.lower <= 0:
            problems.append(f"{key!r}: a log scale needs `lower > 0`, but got lower={value.lower}")
    if isinstance(value, Categorical) and not value.categories:
        problems.append(f"{key!r}: tune.choice needs at least one value")
    return problems


def validate_space(space: Any) -> list[str]:
    """Structural problems of a space (empty list when valid): shapes, ranges, required keys."""
    if not isinstance(space, dict):
        return [f"a search space must be a dict, but got {type(space).__name__}"]
    problems = [f"missing {key!r}" for key in SEARCHED if key not in space]
    for key, value in space.items():
        problems += _domain_problems(key, value)
    for key in ("backbone_lr", "head_lr"):
        bounds = value_range(space.get(key, 1.0))
        if bounds is None or bounds[0] <= 0:
            problems.append(f"{key!r}: learning rates must be numbers > 0, but got {space[key]!r}")
    depth = space.get("freeze_depth", 0)
    bounds = value_range(depth)
    if not _integer_valued(depth) or bounds is None or bounds[0] < 0:
        problems.append(f"'freeze_depth': must be integers >= 0, but got {depth!r}")
    return problems
