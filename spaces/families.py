"""Search spaces for the mobile and modern torchvision families, each from ImageNet weights.

Their ranges are wide on purpose (three or more decades, log scale): TPE narrows them, and ASHA
stops the diverging and the stalling ends after an epoch. SGD with momentum 0.9 throughout.
Their backbones are named in spaces.registry; each imports `ray.tune` when it is built (see
spaces.resnet).
"""

from __future__ import annotations

from typing import Any


def mobilenet() -> dict[str, Any]:
    """MobileNetV3-Large: the fastest family on a CPU or at the edge (5.5 M parameters)."""
    from ray import tune

    return {
        # stem, 5 groups of inverted-residual blocks by resolution, the last conv: 7 is a probe
        "freeze_depth": tune.randint(0, 8),
        # depthwise convolutions and hard-swish tolerate large steps: up to 0.1 for the backbone
        "backbone_lr": tune.loguniform(1e-5, 1e-1),
        "head_lr": tune.loguniform(1e-4, 1e0),
        "batch_size": 32,
    }


def efficientnet() -> dict[str, Any]:
    """EfficientNet-B0: the best ImageNet accuracy per FLOP of these families (5.3 M params)."""
    from ray import tune

    return {
        "freeze_depth": tune.randint(0, 10),  # stem, 7 MBConv stages, the last conv: 9 a probe
        "backbone_lr": tune.loguniform(1e-5, 5e-2),
        "head_lr": tune.loguniform(1e-4, 1e0),
        "batch_size": 32,
    }


def vit() -> dict[str, Any]:
    """ViT-B/16: a transformer (86 M params) whose features transfer best with enough data; a
    GPU search. Images are cut in 16 px patches: --image-size must be a multiple of 16."""
    from ray import tune

    return {
        # patch embedding, 4 groups of 3 encoder layers (the last with the final LayerNorm)
        "freeze_depth": tune.randint(0, 6),
        # ViT's own fine-tuning recipe is SGD (momentum 0.9) at 1e-3..3e-2 for batch 512
        "backbone_lr": tune.loguniform(1e-6, 1e-2),
        "head_lr": tune.loguniform(1e-4, 3e-1),
        "batch_size": 32,
    }


def convnext() -> dict[str, Any]:
    """ConvNeXt-Tiny: the strongest features here (28 M params), for data far from ImageNet.

    LayerNorm and its large-kernel blocks diverge under SGD steps a ResNet takes: the backbone's
    range stops at 1e-2 and the head's at 0.3.
    """
    from ray import tune

    return {
        "freeze_depth": tune.randint(0, 6),  # stem, 4 stages (with their downsampling): 5 a probe
        "backbone_lr": tune.loguniform(1e-6, 1e-2),
        "head_lr": tune.loguniform(1e-4, 3e-1),
        "batch_size": 32,
    }
