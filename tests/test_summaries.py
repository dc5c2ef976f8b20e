"""A trial's own TensorBoard summaries (trainable.summaries), written by the real loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainable import metrics
from trainable.config import TrialConfig
from trainable.data import Split
from trainable.loop import run_trial
from trainable.summaries import confusion_matrix, render_confusion, render_misclassified

SMALL = {"weights": "none", "image_size": 16, "max_epochs": 4, "summary_every": 3}


def _load(folder: Path) -> EventAccumulator:
    return EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0}).Reload()


def test_the_confusion_matrix_counts_true_rows_and_predicted_columns() -> None:
    labels, predicted = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(labels, predicted, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    image = render_confusion(confusion_matrix(labels, predicted, 3), ("a", "b", "c"))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"


def test_misclassified_images_are_shown_up_to_sixteen() -> None:
    split = Split(torch.randn(20, 3, 8, 8), torch.zeros(20, dtype=torch.long))
    assert render_misclassified(split, torch.zeros(20, dtype=torch.long), ("a", "b")) is None
    grid = render_misclassified(split, torch.ones(20, dtype=torch.long), ("a", "b"))
    assert grid is not None and grid.shape[2] == 3
    assert grid.shape[1] == 4 * 64 and grid.shape[0] == 4 * (64 + 14)  # a 4 x 4 mosaic


def test_histograms_and_images_come_at_epoch_1_every_third_and_the_last(tmp_path: Path) -> None:
    cfg = TrialConfig(freeze_depth=2, backbone_lr=1e-3, head_lr=1e-2, **SMALL)
    results = [result for result, _ in run_trial(cfg, log_dir=tmp_path)]
    events = _load(tmp_path)
    assert [e.step for e in events.Tensors("config/text_summary")] == [0]
    for tag in ("weights/fc", "weights/layer4"):
        assert [e.step for e in events.Histograms(tag)] == [1, 3, 4]
    assert [e.step for e in events.Images("val/confusion_matrix")] == [1, 3, 4]
    assert results[-1][metrics.LR] == {"head": 1e-2, "backbone": 1e-3}
    accs = [r[metrics.VAL_ACC] for r in results]
    assert [r[metrics.BEST_VAL_ACC] for r in results] == [max(accs[: i + 1]) for i in range(4)]


def test_a_linear_probe_logs_the_head_alone(tmp_path: Path) -> None:
    cfg = TrialConfig(freeze_depth=5, backbone_lr=None, head_lr=1e-2, **SMALL)
    results = [result for result, _ in run_trial(cfg, log_dir=tmp_path)]
    assert results[-1][metrics.LR] == {"head": 1e-2}
    assert "weights/layer4" not in _load(tmp_path).Tags()["histograms"]


def test_a_resumed_trial_keeps_its_best_val_acc(tmp_path: Path) -> None:
    cfg = TrialConfig(freeze_depth=3, backbone_lr=1e-2, head_lr=1e-1, **SMALL)
    straight = [result for result, _ in run_trial(cfg)]
    trial = run_trial(cfg)
    next(trial)
    _, state = next(trial)  # after epoch 2
    resumed = [result for result, _ in run_trial(cfg, state)]  # trial is paused: state is stable
    assert [r[metrics.BEST_VAL_ACC] for r in resumed] == pytest.approx(
        [r[metrics.BEST_VAL_ACC] for r in straight[2:]]
    )
