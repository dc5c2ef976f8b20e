"""The exported model file: built from the file alone, and fed exactly what training saw."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import make_image_folder

from search.config.usage import UsageError
from search.results.export import check_out, write_split_images
from trainable.backbones import build_model, freeze_stages
from trainable.config import TrialConfig
from trainable.data import ImageSplit, JoinedSplit, Split, train_and_val
from trainable.datasets import image_folder_data
from trainable.digits import digits_target
from trainable.exported import (
    ExportError,
    export_state,
    input_transform,
    load_export,
    model_from_export,
    read_image,
    save_export,
)


def test_digit_image_files_read_back_as_the_data_set_tensors(tmp_path: Path) -> None:
    data = digits_target(image_size=32, shots=20, seed=0)
    written = write_split_images(data.test, data.classes, data.preprocessing, tmp_path)
    assert written == len(data.test)
    transform = input_transform(data.preprocessing)
    for index in (0, 1, len(data.test) - 1):
        label = data.classes[int(data.test.labels[index])]
        image = read_image(tmp_path / label / f"{index:05d}.png")
        assert torch.equal(transform(image), data.test.image(index))  # bit for bit


def test_image_files_get_the_evaluation_transform_of_training(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images", per_class=4, size=40)
    cfg = TrialConfig(data=f"imagefolder:{root}", image_size=32, shots=0, cache_dir=str(tmp_path))
    data = image_folder_data(cfg, str(root))
    assert data.preprocessing["kind"] == "rgb" and data.preprocessing["crop"] == 32
    transform = input_transform(data.preprocessing)
    val = data.val
    assert isinstance(val, ImageSplit)
    path, _ = val.source.samples[val.indices[0]]
    assert torch.equal(transform(read_image(Path(path))), val.image(0))


def test_train_and_val_join_with_the_training_transform(tmp_path: Path) -> None:
    digits = digits_target(image_size=32, shots=5, seed=0)
    joined = train_and_val(digits.train, digits.val)
    assert isinstance(joined, Split) and len(joined) == len(digits.train) + len(digits.val)
    assert torch.equal(joined.image(len(digits.train)), digits.val.image(0))

    root = make_image_folder(tmp_path / "images", per_class=4, size=40)
    cfg = TrialConfig(data=f"imagefolder:{root}", image_size=32, shots=0, cache_dir=str(tmp_path))
    data = image_folder_data(cfg, str(root))
    both = train_and_val(data.train, data.val)
    assert isinstance(both, JoinedSplit) and len(both) == len(data.train) + len(data.val)
    assert torch.equal(both.labels, torch.cat([data.train.labels, data.val.labels]))
    val_part = both.parts[1]
    assert isinstance(val_part, ImageSplit) and val_part.augment is data.train.augment
    plain = dataclasses.replace(val_part, augment=None)
    assert torch.equal(plain.sample(0), data.val.sample(0))  # same image, unaugmented
    assert not torch.equal(val_part.sample(0, epoch=1), data.val.sample(0))
    assert both.take(torch.tensor([0, len(data.train)])).shape == (2, 3, 32, 32)


def test_the_file_alone_rebuilds_the_model(tmp_path: Path) -> None:
    cfg = TrialConfig(backbone="resnet18", freeze_depth=3, image_size=32)
    model = build_model("resnet18", 5, 32)
    freeze_stages(model, "resnet18", 3)
    model.eval()
    preprocessing = {"kind": "digits", "size": 32, "mean": 0.1, "std": 0.2}
    classes = ("5", "6", "7", "8", "9")
    path = tmp_path / "model.pt"
    save_export(path, export_state(model, cfg, classes, preprocessing, {"test_acc": 0.5}, {}))
    loaded = load_export(path)
    assert loaded["classes"] == list(classes) and loaded["config"]["freeze_depth"] == 3
    rebuilt = model_from_export(loaded)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not a torch file", "not a readable model file"),
        ({"model": {}}, "not a model written by scripts/export.py"),
    ],
)
def test_a_file_that_is_no_export_is_refused(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ExportError, match=message):
        load_export(path)


def test_export_refuses_paths_it_would_overwrite_or_cannot_write(tmp_path: Path) -> None:
    taken = tmp_path / "model.pt"
    taken.write_text("mine")
    with pytest.raises(UsageError, match="exists; nothing was written"):
        check_out(taken, "--out")
    with pytest.raises(UsageError, match="cannot write in"):
        check_out(taken / "inside.pt", "--out")  # a file is not a folder
    with pytest.raises(UsageError, match="exists"):
        check_out(taken, "--test-images", folder=True)  # a file where a folder should go
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_text("")
    with pytest.raises(UsageError, match="exists"):
        check_out(tmp_path / "full", "--test-images", folder=True)
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", "--test-images", folder=True)
    check_out(tmp_path / "new" / "deeper" / "model.pt", "--out")
    assert taken.read_text() == "mine"
