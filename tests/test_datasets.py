from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainable.catalog import TORCHVISION_FILES, DataError, DataSpec, missing_files
from trainable.config import TrialConfig
from trainable.datasets import build_data, prepare_torchvision_set

BREEDS = {"Abyssinian": 1, "basset_hound": 2, "Bengal": 3}  # Pets names image files by breed


def make_pets(root: Path, per_breed: dict[str, int]) -> Path:
    """A miniature Oxford-IIIT Pet in torchvision's layout: images/ and annotations/*.txt."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for split, count in per_breed.items():
        lines = []
        for breed, label in BREEDS.items():
            for n in range(count):
                image_id = f"{breed}_{split}{n}"
                pixels = rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(base / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {label} 1 {label}\n")
        (base / "annotations" / f"{split}.txt").write_text("".join(lines))
    return root


def _cfg(data: str, **changes: object) -> TrialConfig:
    base = {"data": data, "weights": "none", "image_size": 16, "shots": 0, "augment": False}
    return TrialConfig.from_dict({**base, **changes})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", DataSpec("digits")),
        ("imagefolder:/data/x", DataSpec("imagefolder", "/data/x")),
        ("cifar10", DataSpec("cifar10")),
        ("oxford_iiit_pet:/data/pets", DataSpec("oxford_iiit_pet", "/data/pets")),
    ],
)
def test_data_specs_parse_and_print_back(text: str, expected: DataSpec) -> None:
    assert DataSpec.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mnist", r"unknown data set 'mnist'; choose one of: digits, imagefolder:PATH, cifar10"),
        ("imagefolder", r"--data imagefolder needs a folder: --data imagefolder:PATH"),
        ("digits:/x", r"digits is embedded and reads no folder"),
    ],
)
def test_bad_data_specs_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        DataSpec.parse(text)


def test_a_missing_torchvision_set_names_its_files_and_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        prepare_torchvision_set("cifar10", tmp_path, download=False)
    message = str(error.value)
    assert message.startswith(f"cifar10 is not in {tmp_path}: missing cifar-10-batches-py/")
    assert "and 3 more" in message and TORCHVISION_FILES["cifar10"].url in message
    assert "add --download" in message and "\n" not in message
    assert missing_files("flowers102", tmp_path) == [
        "flowers-102/jpg/",
        "flowers-102/imagelabels.mat",
        "flowers-102/setid.mat",
    ]


def test_torchvision_files_that_fail_its_checksum_are_a_clear_error(tmp_path: Path) -> None:
    for name in TORCHVISION_FILES["cifar10"].files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not cifar")
    with pytest.raises(DataError, match=r"cifar10 in \S+ cannot be read .* delete them and add"):
        prepare_torchvision_set("cifar10", tmp_path, download=False)


def test_oxford_pets_from_local_files_is_read_with_its_own_splits(tmp_path: Path) -> None:
    root = make_pets(tmp_path, {"trainval": 5, "test": 2})
    prepare_torchvision_set("oxford_iiit_pet", root, download=False)  # present: no error
    data = build_data(_cfg(f"oxford_iiit_pet:{root}"))
    assert data.classes == ("Abyssinian", "Basset Hound", "Bengal")
    assert torch.bincount(data.val.labels).tolist() == [1, 1, 1]  # 20 % of 5, from trainval
    assert torch.bincount(data.train.labels).tolist() == [4, 4, 4]
    assert len(data.test) == 6
    images, labels = next(data.train.batches(4, torch.Generator().manual_seed(0)))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.long


def test_a_malformed_annotation_file_is_a_clear_error(tmp_path: Path) -> None:
    root = make_pets(tmp_path, {"trainval": 2, "test": 1})
    (root / "oxford-iiit-pet" / "annotations" / "test.txt").write_text("Bengal_test0\n")
    with pytest.raises(DataError, match=r"oxford_iiit_pet in \S+ cannot be read \(ValueError: "):
        prepare_torchvision_set("oxford_iiit_pet", root, download=False)


def test_unreadable_images_of_a_torchvision_set_are_skipped(tmp_path: Path) -> None:
    root = make_pets(tmp_path, {"trainval": 5, "test": 2})
    (root / "oxford-iiit-pet" / "images" / "Bengal_trainval0.jpg").write_bytes(b"broken")
    cfg = _cfg(f"oxford_iiit_pet:{root}", cache_dir=str(tmp_path / "cache"))
    lines: list[str] = []
    data = build_data(cfg, log=lines.append)
    broken = root / "oxford-iiit-pet" / "images" / "Bengal_trainval0.jpg"
    assert lines[-1].startswith(f"Warning: 1 unreadable image skipped: {broken} (")
    assert len(data.train) + len(data.val) == 14 and len(data.test) == 6
    images, _ = next(data.val.batches(8))
    assert images.shape[1:] == (3, 16, 16)
