import re

import pytest
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from spaces import SEARCHED, SPACES, get_space, searched_keys, validate_space
from trainable.catalog import BACKBONES


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_registered_space_is_valid_and_converts_to_optuna(name: str) -> None:
    space = get_space(name)
    assert validate_space(space) == []
    distributions = OptunaSearch.convert_search_space(space)
    assert set(SEARCHED) <= set(distributions)
    assert set(distributions) == set(searched_keys(space))
    backbone = BACKBONES[space["backbone"]]
    assert distributions["freeze_depth"].low == 0
    assert distributions["freeze_depth"].high == backbone.max_freeze_depth
    for lr in ("backbone_lr", "head_lr"):
        assert distributions[lr].log, f"{lr} should be searched on a log scale"
        assert distributions[lr].high / distributions[lr].low >= 1e3, "range too narrow"


def _space(**changes: object) -> dict:
    base = {
        "backbone": "resnet18",
        "freeze_depth": tune.randint(0, 6),
        "backbone_lr": tune.loguniform(1e-5, 1e-1),
        "head_lr": tune.loguniform(1e-4, 1.0),
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (_space(head_lr=tune.uniform(0.1, 0.01)), r"'head_lr': `lower < upper` must hold"),
        (_space(freeze_depth=tune.randint(3, 3)), r"'freeze_depth': `lower < upper` must hold"),
        (_space(backbone_lr=tune.uniform(-1.0, 1.0)), r"'backbone_lr': learning rates must be"),
        (_space(head_lr=0.0), r"'head_lr': learning rates must be numbers > 0"),
        (_space(freeze_depth=tune.uniform(0, 5)), r"'freeze_depth': must be integers >= 0"),
        (_space(freeze_depth=tune.choice([-1, 2])), r"'freeze_depth': must be integers >= 0"),
        (_space(head_lr=tune.grid_search([0.1, 0.01])), r"grid_search cannot be converted"),
        (_space(optim={"lr": 0.1}), r"'optim': nested spaces are not supported"),
        (_space(head_lr=tune.sample_from(lambda _: 0.1)), r"'head_lr': must be a constant or"),
        ({"freeze_depth": 1, "head_lr": 0.1}, r"missing 'backbone_lr'"),
        ([1, 2], r"a search space must be a dict, but got list"),
    ],
)
def test_bad_spaces_are_rejected_with_the_rule(space: object, message: str) -> None:
    problems = validate_space(space)
    assert any(re.search(message, p) for p in problems), problems


def test_unknown_space_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown search space 'nope'; choose one of: .*resnet"):
        get_space("nope")
