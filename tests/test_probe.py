"""The pre-screen's probes: they tell separable classes from shuffled labels, score every
depth of a backbone from the frozen-feature cache, and leave the entries the trials read."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from trainable import probe
from trainable.config import TrialConfig
from trainable.data import TransferData
from trainable.datasets import build_data
from trainable.features import FEATURES_DIR, CachedFeatures, cached_features
from trainable.loop import build_trial_model
from trainable.probe import (
    ProbeScore,
    kendall_tau,
    knn_accuracy,
    pool_features,
    probe_scores,
    ridge_accuracy,
)

CLASSES, TRAIN_SHOTS, VAL_SHOTS = 5, 20, 50  # as digits: 100 training, 250 validation images


def _clusters(width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Training and validation features around one centre per class, and their labels."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(CLASSES, width, generator=generator)

    def draw(shots: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(CLASSES).repeat_interleave(shots)
        return centres[labels] + torch.randn(len(labels), width, generator=generator), labels

    return (*draw(TRAIN_SHOTS), *draw(VAL_SHOTS))


# 16 features: ridge solves the primal; 400 features for 100 images: the dual.
@pytest.mark.parametrize("width", [16, 400])
def test_the_probes_find_separable_classes_and_not_shuffled_labels(width: int) -> None:
    train, train_labels, val, val_labels = _clusters(width)
    assert knn_accuracy(train, train_labels, val, val_labels) > 0.95
    assert ridge_accuracy(train, train_labels, val, val_labels) > 0.95
    shuffled = train_labels[torch.randperm(len(train_labels), generator=torch.Generator())]
    # Chance is 0.2; 250 validation images put 0.4 about 8 standard deviations above it.
    assert knn_accuracy(train, shuffled, val, val_labels) < 0.4
    assert ridge_accuracy(train, shuffled, val, val_labels) < 0.4


def test_the_dual_ridge_solve_gives_the_primal_scores() -> None:
    train, train_labels, val, _ = _clusters(150)  # more features than images
    primal = probe._ridge_scores(train, train_labels, val, dual=False)
    dual = probe._ridge_scores(train, train_labels, val, dual=True)
    assert torch.allclose(primal, dual, atol=1e-8)


def test_knn_asks_no_more_neighbours_than_the_smallest_class_has() -> None:
    # One image of class 0 and four of class 1: five neighbours would always vote class 1.
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(5, 8, generator=generator)
    labels = torch.tensor([0, 1, 1, 1, 1])
    near = train + 0.01 * torch.randn(5, 8, generator=generator)
    assert knn_accuracy(train, labels, near, labels, k=5) == 1.0


def test_the_probes_state_what_they_need() -> None:
    with pytest.raises(ValueError, match="same D"):
        ridge_accuracy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 5),
                       torch.zeros(2, dtype=torch.long))  # fmt: skip
    with pytest.raises(ValueError, match="one label"):
        knn_accuracy(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), torch.zeros(2, 3),
                     torch.zeros(2, dtype=torch.long))  # fmt: skip


def test_pooling_averages_positions_and_patch_tokens() -> None:
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert torch.equal(pool_features(maps), maps.mean(dim=(2, 3)))
    tokens = torch.randn(2, 5, 4)
    tokens[:, 0] = 1e6  # the class token is left out
    assert torch.allclose(pool_features(tokens), tokens[:, 1:].mean(dim=1))
    vectors = torch.randn(2, 4)
    assert torch.equal(pool_features(vectors), vectors)
    with pytest.raises(ValueError, match=r"but got shape \(2, 1, 1, 1, 1\)"):
        pool_features(torch.zeros(2, 1, 1, 1, 1))


# ---------------------------------------------------------------------------------------------
# probe_scores on ResNet-18 with random weights, on the embedded digits


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrialConfig, TransferData]:
    cache = tmp_path_factory.mktemp("probe-cache")
    cfg = TrialConfig(weights="none", max_epochs=2, cache_dir=str(cache))
    return cfg, build_data(cfg)


@pytest.fixture(scope="module")
def probed(digits: tuple[TrialConfig, TransferData]) -> list[ProbeScore]:
    cfg, data = digits
    return probe_scores(cfg, data, None)


def _features_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of each features file (not the lock files, touched by every
    reader)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*.pt")}  # fmt: skip


def test_every_depth_is_scored_from_the_cache(probed: list[ProbeScore]) -> None:
    assert [s.freeze_depth for s in probed] == [1, 2, 3, 4, 5]
    for s in probed:
        assert s.backbone == "resnet18" and s.cached and s.seconds > 0
        assert 0 <= s.knn_acc <= 1 and 0 <= s.ridge_acc <= 1
        assert s.score == pytest.approx((s.knn_acc + s.ridge_acc) / 2)
    # Random convolutions keep enough of the digits' shapes for a linear probe: above chance.
    assert max(s.ridge_acc for s in probed) > 0.4


def test_a_second_pre_screen_reads_the_cache(
    digits: tuple[TrialConfig, TransferData], probed: list[ProbeScore]
) -> None:
    cfg, data = digits
    before = _features_files(Path(cfg.cache_dir) / FEATURES_DIR)
    assert len(before) == 10  # val.pt and train.pt of each depth's entry
    lines: list[str] = []
    again = probe_scores(cfg, data, None, log=lines.append)
    assert _features_files(Path(cfg.cache_dir) / FEATURES_DIR) == before
    assert [(s.knn_acc, s.ridge_acc, s.cached) for s in again] == [
        (s.knn_acc, s.ridge_acc, True) for s in probed
    ]
    assert sum("features read from the cache" in line for line in lines) == 5


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_the_trials_read_the_entries_the_pre_screen_wrote(
    digits: tuple[TrialConfig, TransferData], probed: list[ProbeScore], depth: int
) -> None:
    """The pre-screen's one model, frozen at every stage, leaves the entry of each depth."""
    cfg, data = digits
    trial = dataclasses.replace(cfg, freeze_depth=depth)
    entry = cached_features(trial, build_trial_model(trial, len(data.classes)), data)
    assert isinstance(entry, CachedFeatures), entry
    assert entry.built_seconds == 0  # its validation and epoch-1 training features were there


def test_without_the_cache_the_features_are_computed_alike(
    digits: tuple[TrialConfig, TransferData], probed: list[ProbeScore]
) -> None:
    cfg, data = digits
    uncached = dataclasses.replace(cfg, feature_cache=False)
    lines: list[str] = []
    scores = probe_scores(uncached, data, None, depths=[2, 5], log=lines.append)
    assert [s.cached for s in scores] == [False, False]
    assert "features not cached: turned off" in lines[-1]
    for s in scores:
        same = probed[s.freeze_depth - 1]
        assert s.knn_acc == pytest.approx(same.knn_acc, abs=0.005)  # one image of 250
        assert s.ridge_acc == pytest.approx(same.ridge_acc, abs=0.005)


@pytest.mark.parametrize("depths", [[0], [6], [2, 7]])
def test_depths_outside_the_backbone_are_refused(
    digits: tuple[TrialConfig, TransferData], depths: list[int]
) -> None:
    with pytest.raises(ValueError, match=r"`1 <= freeze_depth <= 5` must hold for resnet18"):
        probe_scores(*digits, None, depths=depths)


# ---------------------------------------------------------------------------------------------
# kendall_tau


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),  # the same order
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),  # reversed
        ([1, 2, 3], [2, 1, 3], 1 / 3),  # 2 concordant pairs, 1 discordant, of 3
        # a ties one pair: 5 concordant, 0 discordant; tau-b = 5 / sqrt((6 - 1) * (6 - 0))
        ([1, 2, 2, 3], [1, 2, 3, 4], 5 / math.sqrt(30)),
        # a tie in each, on different pairs: (4 - 0) / sqrt((6 - 1) * (6 - 1))
        ([1, 1, 2, 3], [1, 2, 3, 3], 4 / 5),
    ],
)
def test_kendall_tau_of_hand_counted_pairs(a: list[float], b: list[float], expected: float) -> None:
    assert kendall_tau(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(("a", "b"), [([], []), ([0.5], [0.7]), ([1, 1, 1], [1, 2, 3])])
def test_kendall_tau_is_none_without_an_order_to_compare(a: list[float], b: list[float]) -> None:
    assert kendall_tau(a, b) is None


def test_kendall_tau_needs_as_many_values_on_each_side() -> None:
    with pytest.raises(ValueError, match=r"`len\(a\) == len\(b\)` must hold"):
        kendall_tau([1, 2, 3], [1, 2])
