"""trainable.catalog and trainable.folders state facts of torch, torchvision and the data sets
without importing them: each fact checked against the library it describes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torchvision import datasets as tv

from trainable import catalog
from trainable.backbones import BUILDERS, build_model, stage_parameters
from trainable.datasets import TORCHVISION_SETS
from trainable.folders import IMAGE_EXTENSIONS
from trainable.pretrain import SOURCES
from trainable.weights import imagenet_file


@pytest.mark.parametrize("name", sorted(catalog.BACKBONES))
def test_each_backbone_names_torchvisions_imagenet_weights(name: str) -> None:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    assert catalog.imagenet_url(name) == weights.url
    assert catalog.hub_weights_file(name) == imagenet_file(name)  # torch's own hub path


@pytest.mark.parametrize("name", sorted(catalog.BACKBONES))
def test_the_stages_and_the_head_cover_every_parameter_once(name: str) -> None:
    family = catalog.get_backbone(name)
    model = build_model(name, 5, max(32, family.min_image_size))
    staged = [n for stage in family.stages for n, _ in stage_parameters(model, stage)]
    head = [n for n, _ in model.named_parameters() if n.startswith(f"{family.head}.")]
    assert len(staged) == len(set(staged))
    assert sorted(staged + head) == sorted(n for n, _ in model.named_parameters())


def test_every_family_has_a_builder() -> None:
    assert set(BUILDERS) == set(catalog.BACKBONES)


def test_the_hub_folder_is_where_torch_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert catalog.torch_hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.torch_hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "xdg/torch/hub"


def test_the_data_sets_are_the_ones_trainable_builds() -> None:
    assert set(catalog.TORCHVISION_FILES) == set(TORCHVISION_SETS)
    assert set(catalog.SOURCE_DATASETS) == set(SOURCES)
    assert tuple(torchvision.datasets.folder.IMG_EXTENSIONS) == IMAGE_EXTENSIONS


@pytest.mark.parametrize("kind", [tv.CIFAR10, tv.CIFAR100])
def test_the_cifar_files_are_torchvisions(kind: type) -> None:
    name = "cifar10" if kind is tv.CIFAR10 else "cifar100"
    names = [n for n, _ in [*kind.train_list, *kind.test_list]] + [kind.meta["filename"]]
    assert catalog.TORCHVISION_FILES[name].files == tuple(f"{kind.base_folder}/{n}" for n in names)
    assert catalog.TORCHVISION_FILES[name].url == kind.url
