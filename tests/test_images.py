import os
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import CLASS_COLOURS, make_image_folder
from PIL import Image

from trainable.catalog import DataError
from trainable.config import TrialConfig
from trainable.data import normalized, sample_rng
from trainable.datasets import build_data
from trainable.folders import index_image_folder
from trainable.images import (
    CROP_SCALE,
    ImageFiles,
    describe_unreadable,
    eval_preprocessing,
    eval_transform,
    find_unreadable,
    image_transforms,
    to_mode,
)

CLASSES = tuple(sorted(CLASS_COLOURS))


def _cfg(root: Path, cache: Path, **changes: object) -> TrialConfig:
    base = {"data": f"imagefolder:{root}", "weights": "none", "image_size": 16, "shots": 0}
    return TrialConfig.from_dict({**base, "cache_dir": str(cache), **changes})


def test_a_flat_folder_is_indexed_by_class_in_sorted_order(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=4)
    (root / "red" / ".DS_Store").write_text("x")  # hidden: ignored
    (root / "red" / "notes.txt").write_text("x")  # not an image: ignored
    (root / ".cache").mkdir()  # hidden folder: not a class
    index = index_image_folder(root)
    assert index.classes == CLASSES
    assert list(index.splits) == ["all"]
    assert [label for _, label in index.splits["all"]] == [0] * 4 + [1] * 4 + [2] * 4


def test_a_folder_without_a_val_split_is_split_stratified_by_the_seed(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=10)
    data = build_data(_cfg(root, tmp_path))
    assert data.classes == CLASSES
    assert torch.bincount(data.val.labels).tolist() == [2, 2, 2]  # 20 % of each class
    assert torch.bincount(data.train.labels).tolist() == [8, 8, 8]
    assert len(data.test) == 0
    assert not set(data.train.indices) & set(data.val.indices)
    same = build_data(_cfg(root, tmp_path))
    other = build_data(_cfg(root, tmp_path, seed=1))
    assert same.val.indices == data.val.indices and other.val.indices != data.val.indices
    shots = build_data(_cfg(root, tmp_path, shots=3))
    assert torch.bincount(shots.train.labels).tolist() == [3, 3, 3]


def test_train_val_test_folders_are_used_as_given(tmp_path: Path) -> None:
    for split, count in [("train", 6), ("val", 2), ("test", 3)]:
        make_image_folder(tmp_path / "imgs" / split, per_class=count, seed=len(split))
    data = build_data(_cfg(tmp_path / "imgs", tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 9)
    images, labels = next(data.train.batches(4, torch.Generator().manual_seed(0)))
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4,)
    assert data.test.image(0).shape == (3, 16, 16)


def test_a_val_class_the_training_folder_lacks_is_refused(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "imgs" / "train", per_class=2)
    make_image_folder(tmp_path / "imgs" / "val", per_class=1)
    (tmp_path / "imgs" / "val" / "zebra").mkdir()
    with pytest.raises(DataError, match=r"val has class folder\(s\) zebra that .*train lacks"):
        index_image_folder(tmp_path / "imgs")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, r"image folder \S+ does not exist"),
        (lambda root: root.write_text("x"), r"image folder \S+ is a file"),
        (
            lambda root: (root / "only").mkdir(parents=True),
            r"`classes >= 2` must hold, but \S+ has 1",
        ),
    ],
)
def test_a_folder_that_cannot_be_a_data_set_is_a_clear_error(tmp_path, make, message) -> None:
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(DataError, match=message):
        index_image_folder(root)


def test_a_class_too_small_to_split_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=3)
    for extra in sorted((root / "green").iterdir())[1:]:
        extra.unlink()
    with pytest.raises(DataError, match=r"class 'green' has 1 image\(s\) .* at least 2"):
        build_data(_cfg(root, tmp_path))


def test_a_symlink_leaving_the_root_is_refused(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    (root / "red" / "link.png").symlink_to(outside)
    with pytest.raises(DataError, match=r"link.png resolves to \S+secret.png, outside the data"):
        index_image_folder(root)


def test_symlinks_inside_the_root_are_followed_once(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2)
    store = make_image_folder(root / ".store", per_class=3)  # hidden: not a class itself
    (root / "grey").symlink_to(store / "red", target_is_directory=True)
    (root / "grey" / "loop").symlink_to(root / "grey", target_is_directory=True)  # a cycle
    index = index_image_folder(root)
    assert index.classes == ("blue", "green", "grey", "red")
    assert len(index.splits["all"]) == 2 * 3 + 3


def test_a_file_symlink_loop_is_one_line_naming_it(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2)
    (root / "red" / "a.png").symlink_to(root / "red" / "b.png")
    (root / "red" / "b.png").symlink_to(root / "red" / "a.png")
    with pytest.raises(DataError, match=r"red/a.png cannot be resolved \(.*\); remove the"):
        index_image_folder(root)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_greyscale_keeps_its_range(tmp_path: Path, mode: str) -> None:
    """Pillow's own conversion clips 16-bit greyscale at 255: a photo turns white."""
    import numpy as np

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)  # 16-bit greyscale: mode I;16
    with Image.open(path) as image:
        image = image if image.mode == mode else image.convert(mode)
        rgb = np.asarray(to_mode(image), dtype=np.float64)
        grey = np.asarray(to_mode(image, "L"), dtype=np.float64)
    expected = ramp / 257.0
    assert np.abs(rgb[..., 0] - expected).max() <= 1 and np.abs(grey - expected).max() <= 1
    assert (grey >= 254).mean() < 0.01  # not saturated (Pillow's convert: 99 %)


def test_an_image_reached_twice_through_a_symlink_is_refused(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2)
    os.symlink(root / "red" / "000.png", root / "blue" / "alias.png")
    with pytest.raises(
        DataError, match=r"red/000.png is the same file as \S+blue/alias.png \(a symlink\)"
    ):
        index_image_folder(root)


def test_a_split_folder_with_another_name_is_refused_not_taken_for_a_class(tmp_path) -> None:
    make_image_folder(tmp_path / "imgs" / "train", per_class=2)
    make_image_folder(tmp_path / "imgs" / "valid", per_class=1)  # Kaggle's spelling
    (tmp_path / "imgs" / "__MACOSX").mkdir()
    with pytest.raises(DataError, match=r"has split folders \(train/\) and also __MACOSX/, valid/"):
        index_image_folder(tmp_path / "imgs")


def test_a_flat_folder_may_have_a_class_called_train(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2)
    make_image_folder(tmp_path / "trains", per_class=2)
    (tmp_path / "trains" / "red").rename(root / "train")
    index = index_image_folder(root)
    assert index.classes == ("blue", "green", "red", "train") and list(index.splits) == ["all"]


def test_unreadable_images_are_found_once_and_skipped(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=4)
    (root / "red" / "broken.png").write_bytes(b"not a png")
    good = root / "blue" / "000.png"
    truncated = root / "blue" / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-40])  # its header reads, its pixels do not
    paths = [p for samples in index_image_folder(root).splits.values() for p, _ in samples]
    lines: list[str] = []
    unreadable = find_unreadable(paths, str(tmp_path / "cache"), lines.append)
    assert sorted(unreadable) == sorted([str(root / "red" / "broken.png"), str(truncated)])
    assert len(lines) == 1 and "Checking that 14 images decode" in lines[0]
    assert find_unreadable(paths, str(tmp_path / "cache"), lines.append) == unreadable
    assert len(lines) == 1  # the second check read the cache
    assert describe_unreadable(unreadable).startswith("2 unreadable images skipped: ")
    data = build_data(_cfg(root, tmp_path / "cache"))
    assert len(data.train) + len(data.val) == 12


def test_transforms_crop_to_the_size_and_augment_only_training(tmp_path: Path) -> None:
    evaluate, augment = image_transforms(24, augment=True)
    assert augment is not None
    image = Image.new("RGB", (50, 30), (255, 0, 0))
    assert augment(image, sample_rng(0, 1, 0)).shape == evaluate(image).shape == (3, 24, 24)
    noisy = Image.effect_noise((50, 30), 60).convert("RGB")
    # A view is drawn from its sample's generator: the same (seed, epoch, index), the same view
    same = [augment(noisy, sample_rng(0, 1, 5)) for _ in range(2)]
    assert torch.equal(*same)
    assert not torch.equal(same[0], augment(noisy, sample_rng(0, 2, 5)))  # another epoch
    assert not torch.equal(same[0], augment(noisy, sample_rng(1, 1, 5)))  # another seed
    assert torch.equal(evaluate(noisy), evaluate(noisy))
    assert image_transforms(24, augment=False)[1] is None
    # Greyscale and RGBA files become 3-channel images.
    Image.new("L", (20, 20), 128).save(tmp_path / "grey.png")
    files = ImageFiles([(str(tmp_path / "grey.png"), 0)])
    assert evaluate(files[0][0]).shape == (3, 24, 24)


def test_torchvision_weights_bring_their_own_preprocessing_scaled_to_the_size() -> None:
    preset = torchvision.models.get_model_weights("efficientnet_b0").DEFAULT.transforms
    pixels, augment = image_transforms(32, augment=True, preset=preset)
    steps = eval_preprocessing(32, preset)
    assert (steps["crop"], steps["resize"], steps["interpolation"]) == (32, 37, "bicubic")
    assert steps["mean"] == list(preset().mean)
    # The evaluation transform, rebuilt from those plain values (as an exported model is),
    # is the weights' own preset to the bit; and so are a trial's 8-bit pixels, normalised
    # with their batch on the model's device.
    noisy = Image.effect_noise((50, 41), 60).convert("RGB")
    expected = preset(crop_size=32, resize_size=37)(noisy)
    assert torch.equal(eval_transform(steps)(noisy), expected)
    assert pixels(noisy).dtype == torch.uint8
    batch = normalized(pixels(noisy)[None], tuple(steps["mean"]), tuple(steps["std"]))
    assert torch.equal(batch[0], expected)
    assert augment is not None
    assert augment.size == 32 and augment.interpolation.value == "bicubic"


def test_a_large_val_fraction_still_leaves_each_class_one_training_image(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2)
    data = build_data(_cfg(root, tmp_path, val_fraction=0.9))
    assert torch.bincount(data.train.labels).tolist() == [1, 1, 1]
    assert torch.bincount(data.val.labels).tolist() == [1, 1, 1]


def test_crops_keep_to_the_scale_and_aspect_ranges() -> None:
    _, augment = image_transforms(24, augment=True)
    assert augment is not None
    for index in range(200):
        top, left, h, w = augment.crop(500, 375, sample_rng(0, 1, index))
        assert 0 <= top <= 375 - h and 0 <= left <= 500 - w
        assert CROP_SCALE[0] - 0.01 <= h * w / (500 * 375) <= CROP_SCALE[1] + 0.01
        assert 0.74 <= w / h <= 1.34
    # An image too narrow for any allowed aspect: the centre crop of the nearest one
    top, left, h, w = augment.crop(10, 400, sample_rng(0, 1, 0))
    assert (w, left) == (10, 0) and h == round(10 / (3 / 4)) and top == (400 - h) // 2
