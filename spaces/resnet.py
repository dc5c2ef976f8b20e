"""Search spaces for torchvision ResNets (their backbones: spaces.registry).

Each space imports `ray.tune` when it is built, not at the top: the registry is read before
Ray is imported, so `--help` and a typo answer at once.
"""

from __future__ import annotations

from typing import Any


def resnet_small() -> dict[str, Any]:
    """ResNet-18 fine-tuning: how deep to freeze, and the two learning rates (SGD, momentum 0.9)."""
    from ray import tune

    return {
        # 0 trains everything; 1 freezes the stem; 2..4 also layer1..layer3; 5 is a linear probe.
        "freeze_depth": tune.randint(0, 6),
        # Both ranges span good values and ones too small to move or large enough to diverge.
        "backbone_lr": tune.loguniform(1e-5, 1e-1),
        "head_lr": tune.loguniform(1e-4, 1e0),
    }


def resnet_large() -> dict[str, Any]:
    """ResNet-50 from ImageNet weights: more capacity for larger or less ImageNet-like data sets.

    Its bottleneck stages have four times the channels of ResNet-18's, so a step moves more
    weights: the backbone's range stops at 3e-2 (SGD, momentum 0.9, batch 32).
    """
    from ray import tune

    return {
        "freeze_depth": tune.randint(0, 6),  # stem, layer1..layer4; 5 is a linear probe
        "backbone_lr": tune.loguniform(1e-5, 3e-2),
        "head_lr": tune.loguniform(1e-4, 1e0),
        "batch_size": 32,
    }
