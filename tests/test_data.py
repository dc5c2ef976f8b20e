import numpy as np
import pytest
import torch

from trainable.data import stratified_split
from trainable.digits import VAL_PER_CLASS, digits_source, digits_target


def test_target_splits_are_stratified_disjoint_and_sized() -> None:
    data = digits_target(image_size=16, shots=7, seed=0)
    assert data.classes == ("5", "6", "7", "8", "9")
    assert torch.bincount(data.train.labels).tolist() == [7] * 5
    assert torch.bincount(data.val.labels).tolist() == [VAL_PER_CLASS] * 5
    assert data.train.images.shape[1:] == (3, 16, 16)
    # scikit-learn ships 896 images of digits 5-9: the test split holds the rest.
    assert len(data.train) + len(data.val) + len(data.test) == 896


def test_stratified_split_partitions_every_class() -> None:
    labels = torch.tensor([0] * 10 + [1] * 12)
    train, val, rest = stratified_split(labels, [3, 4, -1], seed=0)
    assert torch.bincount(labels[train]).tolist() == [3, 3]
    assert torch.bincount(labels[val]).tolist() == [4, 4]
    everything = torch.cat([train, val, rest])
    assert sorted(everything.tolist()) == list(range(22))  # disjoint, and nothing lost


def test_splits_are_fixed_by_the_seed() -> None:
    a, b, c = (digits_target(16, 5, seed) for seed in (1, 1, 2))
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, c.train.images)


def test_source_task_is_digits_0_to_4_with_a_held_out_split() -> None:
    train, held_out = digits_source(image_size=16, seed=0)
    assert set(train.labels.tolist()) == set(held_out.labels.tolist()) == {0, 1, 2, 3, 4}
    assert 0.15 < len(held_out) / (len(train) + len(held_out)) < 0.25


def test_training_batches_are_full_and_cover_a_shuffled_epoch() -> None:
    data = digits_target(16, 10, 0)  # 50 images, batches of 16: 3 full batches
    sizes = [len(y) for _, y in data.train.batches(16, torch.Generator().manual_seed(0))]
    assert sizes == [16, 16, 16]
    eval_sizes = [len(y) for _, y in data.train.batches(16)]
    assert sum(eval_sizes) == 50


def test_digits_take_up_to_their_stated_shots() -> None:
    from trainable.catalog import DIGITS_MAX_SHOTS

    assert len(digits_target(8, DIGITS_MAX_SHOTS, 0).train) == 5 * DIGITS_MAX_SHOTS
    with pytest.raises(ValueError, match=rf"`1 <= shots < {DIGITS_MAX_SHOTS + 1}` must hold"):
        digits_target(8, DIGITS_MAX_SHOTS + 1, 0)


def test_too_many_shots_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"`1 <= shots < \d+` must hold for digits, but got"):
        digits_target(16, 500, 0)


def test_the_digits_are_scikit_learns() -> None:
    """Read from the file scikit-learn bundles without importing it: the same images."""
    from sklearn.datasets import load_digits

    from trainable.digits import digits_file

    pixels, labels = digits_file()
    digits = load_digits()
    assert np.array_equal(pixels, digits.images) and np.array_equal(labels, digits.target)
