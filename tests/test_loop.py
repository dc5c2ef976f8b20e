import pytest

from trainable import metrics
from trainable.config import TrialConfig
from trainable.loop import DivergedError, run_trial

SMALL = {"weights": "none", "image_size": 16, "max_epochs": 2}


def test_each_epoch_reports_the_named_metrics() -> None:
    cfg = TrialConfig(freeze_depth=4, backbone_lr=1e-3, head_lr=1e-2, **SMALL)
    results = [result for result, _ in run_trial(cfg)]
    assert [r[metrics.EPOCH] for r in results] == [1, 2]
    for r in results:
        assert 0.0 <= r[metrics.VAL_ACC] <= 1.0
        assert r[metrics.TRAIN_LOSS] > 0 and r[metrics.VAL_LOSS] > 0
        assert r[metrics.TRAINABLE_PARAMS] > 0


def test_a_linear_probe_trains_without_a_backbone_lr() -> None:
    cfg = TrialConfig(freeze_depth=5, backbone_lr=None, head_lr=1e-1, **SMALL)
    results = [result for result, _ in run_trial(cfg)]
    assert results[-1][metrics.TRAINABLE_PARAMS] == 512 * 5 + 5  # the head alone


def test_a_diverging_trial_fails_with_the_reason() -> None:
    cfg = TrialConfig(freeze_depth=0, backbone_lr=1e6, head_lr=1e6, **SMALL)
    with pytest.raises(DivergedError, match=r"train_loss is (nan|inf) at epoch \d: diverged"):
        for _ in run_trial(cfg):
            pass
