"""The frozen-feature cache: the same results as recomputing, and a new entry when anything
it depends on changes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from helpers import make_image_folder
from PIL import Image

from trainable import features as feats
from trainable import metrics
from trainable.backbones import build_model, freeze_stages
from trainable.catalog import BACKBONES, get_backbone
from trainable.config import TrialConfig
from trainable.datasets import build_data
from trainable.engine import evaluate
from trainable.features import (
    FORWARD_STEPS,
    cached_features,
    prefix_length,
    split_model,
    why_uncached,
)
from trainable.loop import build_trial_model, run_trial, trained_model

# The smallest image each family accepts whole (ConvNeXt needs 32 px).
SIZES = {name: max(32, spec.min_image_size) for name, spec in BACKBONES.items()}


def test_every_backbone_has_a_forward_step_map() -> None:
    assert set(FORWARD_STEPS) == set(BACKBONES)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_prefix_and_suffix_compute_the_model_at_every_depth(backbone: str) -> None:
    torch.manual_seed(0)
    size = SIZES[backbone]
    model = build_model(backbone, 5, size).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        for depth in range(1, get_backbone(backbone).max_freeze_depth + 1):
            prefix, suffix = split_model(model, backbone, depth)
            assert torch.allclose(suffix(prefix(x)), expected, atol=1e-5), depth


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_the_prefix_holds_the_frozen_stages_and_nothing_trainable(backbone: str) -> None:
    model = build_model(backbone, 5, SIZES[backbone])
    spec = get_backbone(backbone)
    steps = FORWARD_STEPS[backbone]
    for depth in range(1, spec.max_freeze_depth + 1):
        prefix = steps[: prefix_length(model, backbone, depth)]
        for step in steps:
            stages = {feats._stage_of(backbone, name) for name in feats.uses(step)}
            if stages and all(stage is not None and stage < depth for stage in stages):
                assert step in prefix, (depth, step)
            if any(stage is not None and stage >= depth for stage in stages) or (
                spec.head in feats.uses(step)
            ):
                assert step not in prefix, (depth, step)


def test_frozen_stages_drop_nothing_in_training_mode() -> None:
    """EfficientNet's stochastic depth is off in frozen stages: their output is cacheable."""
    torch.manual_seed(0)
    model = build_model("efficientnet_b0", 5, 32)
    freeze_stages(model, "efficientnet_b0", 9)
    prefix, _ = split_model(model, "efficientnet_b0", 9)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(prefix(x), prefix(x))


def _digits(tmp_path: Path, **changes: object) -> TrialConfig:
    base = {"backbone_lr": 3e-3, "head_lr": 3e-2, "weights": "none", "max_epochs": 2,
            "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    return TrialConfig(**{**base, **changes})


@pytest.mark.parametrize("depth", [2, 4, 5])
def test_cached_training_matches_recomputing(tmp_path: Path, depth: int) -> None:
    cfg = _digits(tmp_path, freeze_depth=depth, backbone_lr=None if depth == 5 else 3e-3)
    data = build_data(cfg)
    cached = [r for r, _ in run_trial(cfg, data=data)]
    plain = [r for r, _ in run_trial(TrialConfig(**{**cfg.to_dict(), "feature_cache": False}),
                                     data=data)]  # fmt: skip
    assert [r[metrics.CACHED_FEATURES] for r in cached] == [1, 1]
    assert [r[metrics.CACHED_FEATURES] for r in plain] == [0, 0]
    for a, b in zip(cached, plain, strict=True):
        assert a[metrics.TRAIN_LOSS] == pytest.approx(b[metrics.TRAIN_LOSS], rel=1e-4)
        assert a[metrics.VAL_LOSS] == pytest.approx(b[metrics.VAL_LOSS], rel=1e-4)
        assert a[metrics.VAL_ACC] == pytest.approx(b[metrics.VAL_ACC], abs=0.005)  # 1 image


def test_the_checkpoint_of_a_cached_trial_restores_the_whole_model(tmp_path: Path) -> None:
    cfg = _digits(tmp_path, freeze_depth=5, backbone_lr=None, max_epochs=1)
    ((result, state),) = list(run_trial(cfg))
    assert result[metrics.CACHED_FEATURES] == 1 and set(state["model"]) == {"fc.weight", "fc.bias"}
    model = trained_model(cfg, state)
    assert evaluate(model, build_data(cfg).val).acc == pytest.approx(result[metrics.VAL_ACC])


def test_the_trial_log_says_whether_features_were_cached(tmp_path: Path) -> None:
    lines: list[str] = []
    for depth in (3, 0):
        cfg = _digits(tmp_path, freeze_depth=depth, max_epochs=1)
        list(run_trial(cfg, log=lines.append))
    assert lines[0].startswith("frozen-feature cache: 100+250 images as 128x4x4 features, built")
    assert lines[1] == "frozen-feature cache not used: no stage is frozen"


def _entry(cfg: TrialConfig) -> feats.CachedFeatures:
    data = build_data(cfg)
    found = cached_features(cfg, build_trial_model(cfg, len(data.classes)), data)
    assert isinstance(found, feats.CachedFeatures), found
    return found


def test_an_entry_is_reused_and_rebuilt_when_its_inputs_change(tmp_path: Path) -> None:
    first = _entry(_digits(tmp_path, freeze_depth=3, head_lr=0.5))
    again = _entry(_digits(tmp_path, freeze_depth=3, head_lr=0.1, backbone_lr=1e-5))
    assert first.built_seconds > 0 and again.built_seconds == 0  # learning rates don't matter
    assert again.path == first.path
    others = [
        _entry(_digits(tmp_path, freeze_depth=2)),  # another cut
        _entry(_digits(tmp_path, freeze_depth=3, seed=1)),  # other weights and split
        _entry(_digits(tmp_path, freeze_depth=3, shots=10)),  # other training images
        _entry(_digits(tmp_path, freeze_depth=3, image_size=40)),  # other pixels
    ]
    paths = {first.path, *(entry.path for entry in others)}
    assert len(paths) == 5
    assert all(entry.built_seconds > 0 for entry in others)


def test_an_entry_is_rebuilt_when_its_weights_file_changes(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.manual_seed(1)
    torch.save(build_model("resnet18", 10).state_dict(), weights)
    first = _entry(_digits(tmp_path, freeze_depth=4, weights=str(weights)))
    torch.manual_seed(2)
    torch.save(build_model("resnet18", 10).state_dict(), weights)
    second = _entry(_digits(tmp_path, freeze_depth=4, weights=str(weights)))
    assert second.path != first.path and second.built_seconds > 0


def test_an_entry_is_rebuilt_when_an_image_file_changes(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "imgs", per_class=4)
    cfg = _digits(tmp_path, freeze_depth=4, data=f"imagefolder:{folder}", shots=0,
                  augment=False, batch_size=4)  # fmt: skip
    first = _entry(cfg)
    assert (first.train(1).images.shape[0], first.val.images.shape[0]) == (9, 3)
    image = next(folder.glob("red/*"))
    Image.new("RGB", (24, 24), (0, 0, 0)).save(image)
    second = _entry(cfg)
    assert second.path != first.path and second.built_seconds > 0


def _photos(tmp_path: Path, **changes: object) -> TrialConfig:
    """Augmented training images from a folder: crops and flips drawn per epoch."""
    folder = make_image_folder(tmp_path / "imgs", per_class=6, size=40)
    base = {"data": f"imagefolder:{folder}", "image_size": 32, "shots": 0, "batch_size": 4,
            "max_epochs": 3, "augment": True}  # fmt: skip
    return _digits(tmp_path, **{**base, **changes})


@pytest.mark.parametrize("depth", [3, 5])
def test_cached_augmented_training_sees_the_views_uncached_training_sees(
    tmp_path: Path, depth: int
) -> None:
    cfg = _photos(tmp_path, freeze_depth=depth, backbone_lr=None if depth == 5 else 3e-3)
    data = build_data(cfg)
    lines: list[str] = []
    cached = [r for r, _ in run_trial(cfg, data=data, log=lines.append)]
    plain = [r for r, _ in run_trial(TrialConfig(**{**cfg.to_dict(), "feature_cache": False}),
                                     data=data)]  # fmt: skip
    assert "a view per epoch of augmented training images" in lines[0]
    assert [r[metrics.CACHED_FEATURES] for r in cached] == [1, 1, 1]
    for a, b in zip(cached, plain, strict=True):
        assert a[metrics.TRAIN_LOSS] == pytest.approx(b[metrics.TRAIN_LOSS], rel=1e-4)
        assert a[metrics.VAL_LOSS] == pytest.approx(b[metrics.VAL_LOSS], rel=1e-4)
    # each epoch its own view, one file each, shared by the next trial
    entry = _entry(cfg)
    assert sorted(p.name for p in entry.path.glob("train-*.pt")) == [
        "train-epoch1.pt", "train-epoch2.pt", "train-epoch3.pt"
    ]  # fmt: skip
    assert not torch.equal(entry.train(1).images, entry.train(2).images)
    assert entry.built_seconds == 0


def test_the_augmentation_is_part_of_the_key(tmp_path: Path) -> None:
    views = _entry(_photos(tmp_path, freeze_depth=4))
    other_seed = _entry(_photos(tmp_path, freeze_depth=4, seed=1))
    unaugmented = _entry(_photos(tmp_path, freeze_depth=4, augment=False))
    assert len({views.path, other_seed.path, unaugmented.path}) == 3
    assert views.augmented and not unaugmented.augmented
    assert torch.equal(unaugmented.train(1).images, unaugmented.train(3).images)


def test_why_a_trial_trains_uncached(tmp_path: Path) -> None:
    assert why_uncached(_photos(tmp_path, freeze_depth=4)) is None  # augmented: views cached
    assert why_uncached(_digits(tmp_path, freeze_depth=0)) == "no stage is frozen"
    off = _digits(tmp_path, freeze_depth=4, feature_cache=False)
    assert why_uncached(off) == "turned off (--no-feature-cache)"


def test_features_over_the_size_limit_are_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feats, "MAX_CACHE_BYTES", 1_000_000)
    cfg = _digits(tmp_path, freeze_depth=1)
    data = build_data(cfg)
    reason = cached_features(cfg, build_trial_model(cfg, 5), data)
    # 350 images x 64x8x8 float32 features
    assert reason == "its features would take 6 MB, over the 1 MB limit"
    assert not list((tmp_path / "cache").glob("features/*.pt"))


def test_trials_at_once_build_an_entry_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _digits(tmp_path, freeze_depth=4)
    data = build_data(cfg)
    models = [build_trial_model(cfg, 5) for _ in range(2)]
    built: list[int] = []
    compute = feats._compute
    monkeypatch.setattr(feats, "_compute", lambda *a: built.append(1) or compute(*a))
    found: list[feats.CachedFeatures] = []
    threads = [
        threading.Thread(target=lambda m=m: found.append(cached_features(cfg, m, data)))
        for m in models
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 2  # the validation features and the one training view, once each
    assert any(entry.built_seconds > 0 for entry in found)
    assert torch.equal(found[0].train(1).images, found[1].train(1).images)


def test_the_key_holds_the_device_and_its_precision(tmp_path: Path) -> None:
    cfg = _digits(tmp_path, freeze_depth=4)
    data = build_data(cfg)
    prefix, _ = split_model(build_trial_model(cfg, 5), "resnet18", 4)
    cpu, gpu = (feats.cache_key(prefix, data, 32, torch.device(d)) for d in ("cpu", "cuda"))
    assert cpu != gpu  # a GPU computes the prefix in bf16: its features are other numbers


def test_an_unusable_cache_folder_trains_uncached(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    cfg = _digits(tmp_path, freeze_depth=4, max_epochs=1)
    lines: list[str] = []
    ((result, _),) = list(run_trial(cfg, log=lines.append))
    assert result[metrics.CACHED_FEATURES] == 0
    assert lines[0].startswith("frozen-feature cache not used: the cache in ")
    assert "cannot be used (NotADirectoryError" in lines[0]


def test_vit_dropout_outside_the_stages_ends_the_prefix() -> None:
    model = build_model("vit_b_16", 5, 32)
    full = prefix_length(model, "vit_b_16", 5)
    assert FORWARD_STEPS["vit_b_16"][:full][-1] == "vit_class_token"
    model.encoder.dropout.p = 0.1  # a ViT built with dropout: random after the patch embedding
    assert prefix_length(model, "vit_b_16", 5) == 1


def test_frozen_vit_stages_drop_no_attention() -> None:
    model = build_model("vit_b_16", 5, 32)
    for layer in model.encoder.layers:
        layer.self_attention.dropout = 0.1
    freeze_stages(model, "vit_b_16", 2)  # the patch embedding and encoder layers 0-2
    dropouts = [layer.self_attention.dropout for layer in model.encoder.layers]
    assert dropouts == [0.0] * 3 + [0.1] * 9


def test_a_loader_worker_forked_while_building_does_not_keep_the_entry_locked(
    tmp_path: Path,
) -> None:
    """The image loader's workers are forked while the features are built, under the entry's
    lock, and live on for the next trial: the lock must not live on with them, or every
    later trial needing the entry waits forever (a search once hung so)."""
    import json
    import subprocess
    import sys

    from trainable.loop import trial_pipeline

    folder = make_image_folder(tmp_path / "imgs", per_class=4)
    cfg = _digits(tmp_path, freeze_depth=4, data=f"imagefolder:{folder}", shots=0,
                  augment=False, batch_size=4, loader_workers=1)  # fmt: skip
    data = build_data(cfg)
    pipeline = trial_pipeline(cfg, data)  # its workers persist, as between a process's trials
    try:
        entry = cached_features(cfg, build_trial_model(cfg, 3), data, pipeline)
        assert not isinstance(entry, str) and entry.built_seconds > 0
        # Another trial's process, meanwhile, reads the same entry.
        other = (
            "import json, sys\n"
            "from trainable.config import TrialConfig\n"
            "from trainable.datasets import build_data\n"
            "from trainable.features import cached_features\n"
            "from trainable.loop import build_trial_model\n"
            "cfg = TrialConfig.from_dict(json.loads(sys.argv[1]))\n"
            "entry = cached_features(cfg, build_trial_model(cfg, 3), build_data(cfg))\n"
            "print(entry.built_seconds)\n"
        )
        read = subprocess.run(
            [sys.executable, "-c", other, json.dumps({**cfg.to_dict(), "loader_workers": 0})],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert read.returncode == 0, read.stderr[-2000:]
        assert float(read.stdout) == 0.0  # read, not built again
    finally:
        pipeline.close()
