"""The input pipeline: loader workers change how fast images arrive, never which ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import make_image_folder

from trainable import metrics
from trainable.catalog import DataError
from trainable.config import TrialConfig
from trainable.data import sample_rng
from trainable.datasets import build_data
from trainable.loop import run_trial, trial_pipeline
from trainable.pipeline import PipedSplit, Pipeline, default_workers


def _photos(tmp_path: Path, **changes: object) -> TrialConfig:
    folder = make_image_folder(tmp_path / "imgs", per_class=6, size=40)
    base = {"data": f"imagefolder:{folder}", "image_size": 32, "shots": 0, "batch_size": 4,
            "max_epochs": 2, "augment": True, "weights": "none", "freeze_depth": 3,
            "backbone_lr": 1e-3, "head_lr": 1e-2, "feature_cache": False,
            "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    return TrialConfig(**{**base, **changes})


def test_the_batches_do_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    cfg = _photos(tmp_path)
    data = build_data(cfg)
    seen = {}
    for workers in (0, 1, 2):
        with Pipeline({"train": data.train}, workers) as pipeline:
            split = pipeline.split("train")
            assert isinstance(split, PipedSplit) == (workers > 0)
            generator = torch.Generator().manual_seed(7)
            seen[workers] = list(split.batches(4, generator, epoch=3))
    for workers in (1, 2):
        for (images, labels), (expected, expected_labels) in zip(
            seen[workers], seen[0], strict=True
        ):
            assert torch.equal(images, expected) and torch.equal(labels, expected_labels)
    assert seen[0][0][0].dtype == torch.uint8  # 8-bit pixels: a quarter of the bytes to send


@pytest.mark.parametrize(
    "changes",
    [{}, {"backbone": "mobilenet_v3_large", "freeze_depth": 6}],  # its trained head has dropout
)
def test_a_trial_trains_the_same_with_and_without_workers(tmp_path: Path, changes: dict) -> None:
    cfg = _photos(tmp_path, **changes)
    data = build_data(cfg)
    inproc = [r for r, _ in run_trial(cfg, data=data)]
    workers = TrialConfig(**{**cfg.to_dict(), "loader_workers": 2})
    piped = [r for r, _ in run_trial(workers, data=data)]
    for a, b in zip(inproc, piped, strict=True):
        assert a[metrics.TRAIN_LOSS] == b[metrics.TRAIN_LOSS]
        assert a[metrics.VAL_LOSS] == b[metrics.VAL_LOSS]


def test_each_epoch_draws_its_own_views_and_a_resume_the_same_ones(tmp_path: Path) -> None:
    data = build_data(_photos(tmp_path))
    train = data.train
    assert torch.equal(train.sample(2, epoch=1), train.sample(2, epoch=1))  # a resumed epoch
    assert not torch.equal(train.sample(2, epoch=1), train.sample(2, epoch=2))
    rng = sample_rng(0, 1, 2)
    assert rng.random() == sample_rng(0, 1, 2).random() != sample_rng(0, 1, 3).random()


def test_an_unreadable_image_in_a_worker_is_one_line_naming_it(tmp_path: Path) -> None:
    cfg = _photos(tmp_path, loader_workers=2)
    data = build_data(cfg)
    broken = next(Path(tmp_path / "imgs" / "red").glob("*.png"))
    broken.write_bytes(b"not a png any more")  # changed after the search checked it
    with trial_pipeline(cfg, data) as pipeline, pytest.raises(DataError) as error:
        for _ in run_trial(cfg, data=data, pipeline=pipeline):
            pass
    message = str(error.value)
    assert message.startswith(f"cannot read image {broken}") and "\n" not in message
    assert "Traceback" not in message and "worker" not in message


def test_workers_follow_the_trials_cpus() -> None:
    assert [default_workers(c) for c in (0.5, 1, 2, 2.5, 16)] == [1, 1, 2, 2, 16]


def test_data_in_memory_never_starts_workers(tmp_path: Path) -> None:
    digits = build_data(TrialConfig(cache_dir=str(tmp_path)))
    pipeline = Pipeline({"train": digits.train}, workers=2)
    assert pipeline.split("train") is digits.train
    list(pipeline.split("train").batches(16))
    assert pipeline._loader is None


class _Unreadable:
    """A data set whose reader fails as torchvision's do on a damaged file."""

    def __getitem__(self, index: int) -> tuple:
        raise OSError("image file is truncated")


def test_an_image_a_data_set_cannot_read_is_one_line(tmp_path: Path) -> None:
    from trainable.data import ImageSplit

    split = ImageSplit(_Unreadable(), [7], torch.tensor([0]), lambda image: image)
    with Pipeline({"train": split}, workers=1) as pipeline, pytest.raises(DataError) as error:
        list(pipeline.split("train").batches(1))
    assert str(error.value) == "cannot read image 7 of _Unreadable: image file is truncated"
