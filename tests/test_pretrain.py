from pathlib import Path

import pytest
import torch

from trainable import pretrain
from trainable.backbones import build_model


@pytest.fixture
def quick_recipe(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The real source recipe, shortened to one epoch for a unit test."""
    recipe = {**pretrain.SOURCE_RECIPE, "epochs": 1}
    monkeypatch.setattr(pretrain, "SOURCE_RECIPE", recipe)
    return recipe


def test_source_weights_are_trained_once_then_read_from_the_cache(
    tmp_path: Path, quick_recipe: dict
) -> None:
    lines: list[str] = []
    path = pretrain.ensure_source_weights("resnet18", "digits", 16, str(tmp_path), lines.append)
    assert path.exists() and any("Pretraining resnet18" in line for line in lines)
    payload = torch.load(path, weights_only=True)
    build_model("resnet18", 5).load_state_dict(payload["model"])  # a complete backbone
    stamp = path.stat().st_mtime_ns
    lines.clear()
    again = pretrain.ensure_source_weights("resnet18", "digits", 16, str(tmp_path), lines.append)
    assert again == path and path.stat().st_mtime_ns == stamp and lines == []
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def test_the_cache_key_changes_with_everything_that_determines_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = pretrain.source_weights_path("resnet18", "digits", 32, str(tmp_path))
    assert pretrain.source_weights_path("resnet18", "digits", 16, str(tmp_path)) != base
    monkeypatch.setitem(pretrain.SOURCE_RECIPE, "lr", 0.01)
    assert pretrain.source_weights_path("resnet18", "digits", 32, str(tmp_path)) != base
