import math
from pathlib import Path

import pytest
import torch
from helpers import make_image_folder
from ray.tune.search.sample import Domain

from spaces import SPACES, get_space
from trainable import metrics
from trainable.catalog import BACKBONES
from trainable.config import TrialConfig
from trainable.datasets import build_data
from trainable.engine import evaluate, train_one_epoch
from trainable.loop import DivergedError, build_optimizer, build_trial_model, run_trial

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


@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_space_trains_an_epoch_on_an_image_folder(space: str, tmp_path: Path) -> None:
    """Each registered space's backbone, at its middle freeze depth, on the user's images."""
    constants = {k: v for k, v in get_space(space).items() if not isinstance(v, Domain)}
    depth = BACKBONES[constants["backbone"]].max_freeze_depth // 2
    cfg = TrialConfig.from_dict(
        {
            **constants,
            "freeze_depth": depth,
            "backbone_lr": 1e-3,
            "head_lr": 1e-2,
            "data": f"imagefolder:{make_image_folder(tmp_path / 'imgs', per_class=5)}",
            "weights": "none",
            "image_size": 32,
            "shots": 0,
            "batch_size": 4,
            "max_epochs": 1,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    ((result, state),) = list(run_trial(cfg))
    assert result[metrics.EPOCH] == 1 and result[metrics.TRAIN_LOSS] > 0
    assert state["classes"] == ["blue", "green", "red"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU exists here")
def test_a_cuda_trial_without_a_gpu_says_so() -> None:
    cfg = TrialConfig(freeze_depth=5, head_lr=1e-2, device="cuda", **SMALL)
    with pytest.raises(RuntimeError, match=r"device='cuda', but torch sees no GPU"):
        next(run_trial(cfg))


def test_bf16_autocast_trains_and_evaluates() -> None:
    """The GPU's mixed precision path (bf16 autocast), run on the CPU, which supports it too."""
    cfg = TrialConfig(freeze_depth=3, backbone_lr=1e-2, head_lr=1e-1, **SMALL)
    data = build_data(cfg)
    model = build_trial_model(cfg, len(data.classes))
    optimizer = build_optimizer(model, cfg)
    before = model.fc.weight.detach().clone()
    loss = train_one_epoch(model, optimizer, data.train, 16, torch.Generator().manual_seed(0), True)
    assert math.isfinite(loss) and not torch.equal(model.fc.weight, before)
    full, mixed = evaluate(model, data.val), evaluate(model, data.val, amp=True)
    assert mixed.predicted.dtype == torch.int64
    assert abs(full.acc - mixed.acc) <= 0.05 and mixed.loss == pytest.approx(full.loss, rel=0.05)


def test_patience_stops_a_trial_on_its_plateau_and_a_resume_counts_on(tmp_path: Path) -> None:
    from trainable.checkpoint import load_checkpoint, save_checkpoint

    # A head learning rate of 0 leaves the predictions as they are: val_acc never improves
    # after epoch 1, so patience 2 ends the trial after epoch 3.
    frozen = {**SMALL, "max_epochs": 6, "freeze_depth": 5, "backbone_lr": None, "head_lr": 0.0}
    cfg = TrialConfig(patience=2, **frozen)
    results = []
    for result, state in run_trial(cfg):
        save_checkpoint(tmp_path / f"{result[metrics.EPOCH]}.pt", state)
        results.append(result)
    assert [r[metrics.EPOCH] for r in results] == [1, 2, 3]
    assert [r.get(metrics.PLATEAU) for r in results] == [None, None, 1]
    assert len({r[metrics.VAL_ACC] for r in results}) == 1
    # Resumed from epoch 2, it still counts from its best epoch 1: one more epoch, then stops.
    resumed = [r for r, _ in run_trial(cfg, resume=load_checkpoint(tmp_path / "2.pt"))]
    assert [(r[metrics.EPOCH], r.get(metrics.PLATEAU)) for r in resumed] == [(3, 1)]
    # Resumed from the epoch it stopped after (the driver died before Tune ended it): none.
    assert list(run_trial(cfg, resume=load_checkpoint(tmp_path / "3.pt"))) == []
    # Without patience the same trial runs every epoch.
    unstopped = [r for r, _ in run_trial(TrialConfig(**frozen))]
    assert len(unstopped) == 6 and not any(metrics.PLATEAU in r for r in unstopped)
