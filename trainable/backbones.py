"""Backbone families: how to build one, its stages counted from the input, and its head.

`freeze_depth = k` freezes the first k stages: their parameters stop training AND their
BatchNorm layers become `FrozenBatchNorm2d`, so `model.train()` cannot move their statistics.
Their dropout and stochastic depth (EfficientNet, ConvNeXt) are turned off too: a frozen stage
is a fixed function of its input, which trainable.features relies on to cache its output.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.vision_transformer import interpolate_embeddings
from torchvision.ops import FrozenBatchNorm2d, StochasticDepth

from trainable.config import lookup


@dataclass(frozen=True)
class BackboneSpec:
    """A torchvision model family: constructor, stage map and the name of its classifier."""

    build: Callable[[int, int], nn.Module]  # num_classes, image_size -> a random model
    # Names of each stage's modules (or bare parameters, as ViT's class token), from the input.
    stages: tuple[tuple[str, ...], ...]
    head: str  # module path of the classifier's last Linear, replaced for the target classes
    min_image_size: int = 16  # smaller inputs shrink to nothing before the head
    image_multiple: int = 1  # the image size must be a multiple of this (ViT's patch size)
    # Fits pretrained weights to the model before loading (ViT: its position embedding to the
    # model's image size); None: loaded as they are.
    adapt: Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    traceable: bool = True  # torch.jit.trace draws its graph for TensorBoard

    @property
    def max_freeze_depth(self) -> int:
        """freeze_depth of a linear probe: every stage frozen."""
        return len(self.stages)


_RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _features(*groups: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    """Stages made of `features.<i>` blocks, one group of block indices each."""
    return tuple(tuple(f"features.{i}" for i in group) for group in groups)


# MobileNetV3-Large: the stem, then the blocks grouped by resolution (/2, /4, /8, /16, /32), then
# the last 1x1 conv with the pretrained 960->1280 layer before the classifier.
_MOBILENET_V3_STAGES = (
    *_features((0,), (1,), (2, 3), (4, 5, 6), tuple(range(7, 13)), (13, 14, 15)),
    ("features.16", "classifier.0"),
)
# EfficientNet-B0: the stem, its seven MBConv stages, the last 1x1 conv.
_EFFICIENTNET_B0_STAGES = _features(*((i,) for i in range(9)))
# ConvNeXt-Tiny: the stem, then each of its four stages with the downsampling layer before it;
# the last one with the LayerNorm before the classifier.
_CONVNEXT_STAGES = (
    *_features((0,), (1,), (2, 3), (4, 5)),
    ("features.6", "features.7", "classifier.0"),
)


def _torchvision(
    name: str, stages: tuple[tuple[str, ...], ...], head: str, min_image_size: int = 16
) -> BackboneSpec:
    """The spec of torchvision's model `name`, built with a `num_classes` head."""
    constructor = getattr(torchvision.models, name)
    return BackboneSpec(
        lambda n, _: constructor(num_classes=n), stages, head, min_image_size=min_image_size
    )


# ViT-B/16: the patch embedding with the class token and position embedding, then its twelve
# encoder layers in four groups of three, the last with the final LayerNorm.
_VIT_LAYERS = [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
_VIT_STAGES = (
    ("conv_proj", "class_token", "encoder.pos_embedding"),
    tuple(_VIT_LAYERS[0:3]),
    tuple(_VIT_LAYERS[3:6]),
    tuple(_VIT_LAYERS[6:9]),
    (*_VIT_LAYERS[9:12], "encoder.ln"),
)


def _vit_to_image_size(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ViT weights with their position embedding interpolated (bicubic) to the model's patch
    grid, as torchvision does for fine-tuning at another resolution."""
    wanted = model.state_dict()["encoder.pos_embedding"].shape
    given = state.get("encoder.pos_embedding")
    if given is None or given.shape == wanted or not _square_grid(given, wanted[-1]):
        return state  # absent or of another shape: backbone_state_problems names it
    fitted = interpolate_embeddings(model.image_size, model.patch_size, OrderedDict(state))
    return dict(fitted)


def _square_grid(embedding: torch.Tensor, width: int) -> bool:
    """True for a (1, 1 + n*n, width) position embedding: a class token and a square grid."""
    if embedding.ndim != 3 or embedding.shape[0] != 1 or embedding.shape[2] != width:
        return False
    side = math.isqrt(embedding.shape[1] - 1) if embedding.shape[1] > 1 else 0
    return side > 0 and side * side == embedding.shape[1] - 1


def _vit_b_16() -> BackboneSpec:
    def build(num_classes: int, image_size: int) -> nn.Module:
        return torchvision.models.vit_b_16(num_classes=num_classes, image_size=image_size)

    return BackboneSpec(
        build,
        _VIT_STAGES,
        head="heads.head",
        min_image_size=16,  # one patch
        image_multiple=16,  # whole patches
        adapt=_vit_to_image_size,
        traceable=False,  # torch.jit.trace's check finds its graphs differ between runs
    )


# Backbones a space picks by name (its constant "backbone" key). The head is the last Linear,
# replaced for the target classes; every other parameter belongs to exactly one stage.
BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": _torchvision("resnet18", _RESNET_STAGES, "fc"),
    "resnet34": _torchvision("resnet34", _RESNET_STAGES, "fc"),
    "resnet50": _torchvision("resnet50", _RESNET_STAGES, "fc"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large", _MOBILENET_V3_STAGES, "classifier.3"),
    "efficientnet_b0": _torchvision("efficientnet_b0", _EFFICIENTNET_B0_STAGES, "classifier.1"),
    # Unpadded 4x4 then three 2x2 stride-2 convolutions: 32 px is the least that reaches the head.
    "convnext_tiny": _torchvision("convnext_tiny", _CONVNEXT_STAGES, "classifier.2", 32),
    # 16 px patches: the image size is a multiple of 16.
    "vit_b_16": _vit_b_16(),
}


def get_backbone(name: str) -> BackboneSpec:
    """The spec of a registered backbone; unknown names list the choices."""
    return lookup(BACKBONES, "backbone", name)


def build_model(name: str, num_classes: int, image_size: int = 224) -> nn.Module:
    """A randomly initialised model of the family with a `num_classes` head; only ViT's
    shape depends on `image_size` (its position embedding)."""
    return get_backbone(name).build(num_classes, image_size)


def stage_parameters(model: nn.Module, stage: tuple[str, ...]) -> list[tuple[str, nn.Parameter]]:
    """(full name, parameter) of every parameter in `stage`, whose entries name modules or
    bare parameters."""
    found = []
    for name in stage:
        module = _module_or_none(model, name)
        if module is None:
            found.append((name, model.get_parameter(name)))
        else:
            found += [(f"{name}.{key}", p) for key, p in module.named_parameters()]
    return found


def _module_or_none(model: nn.Module, name: str) -> nn.Module | None:
    """The submodule called `name`, or None when `name` is a parameter."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def backbone_state_problems(
    model: nn.Module, name: str, state: dict[str, torch.Tensor]
) -> list[str]:
    """How `state` fails to fit the backbone of `model` (its head ignored): missing and
    unexpected keys, and shapes that differ; [] when it fits."""
    return _fit_problems(model, name, _fit_state(model, name, state))


def _fit_state(
    model: nn.Module, name: str, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`state` adapted to the model as its family allows (ViT: the position embedding)."""
    adapt = get_backbone(name).adapt
    return state if adapt is None else adapt(model, state)


def _fit_problems(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> list[str]:
    head = f"{get_backbone(name).head}."
    wanted = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    given = {k: v for k, v in state.items() if not k.startswith(head)}
    missing, unexpected = sorted(set(wanted) - set(given)), sorted(set(given) - set(wanted))
    shapes = [
        f"{k} {tuple(given[k].shape)} != {tuple(wanted[k].shape)}"
        for k in sorted(set(wanted) & set(given))
        if given[k].shape != wanted[k].shape
    ]
    problems = []
    for title, items in [("missing", missing), ("unexpected", unexpected), ("shapes", shapes)]:
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{title} {', '.join(items[:3])}{more}")
    return problems


def load_backbone_state(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> None:
    """Load every backbone tensor from `state`, keeping the model's own (new) head."""
    state = _fit_state(model, name, state)
    problems = _fit_problems(model, name, state)
    if problems:
        raise ValueError(f"weights do not fit {name}: {'; '.join(problems)}")
    head = f"{get_backbone(name).head}."
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)}, strict=False)


def _frozen_copy(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    """A FrozenBatchNorm2d holding the same affine parameters and running statistics."""
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    frozen.weight.copy_(bn.weight.detach())
    frozen.bias.copy_(bn.bias.detach())
    frozen.running_mean.copy_(bn.running_mean)
    frozen.running_var.copy_(bn.running_var)
    return frozen


def freeze_stages(model: nn.Module, name: str, depth: int) -> None:
    """Freeze the first `depth` stages: no gradients, BatchNorm statistics fixed, no dropout."""
    spec = get_backbone(name)
    if not 0 <= depth <= spec.max_freeze_depth:
        raise ValueError(
            f"`0 <= freeze_depth <= {spec.max_freeze_depth}` must hold for {name}, "
            f"but got freeze_depth={depth}"
        )
    for stage in spec.stages[:depth]:
        for _, param in stage_parameters(model, stage):
            param.requires_grad_(False)
        for module_name in stage:
            module = _module_or_none(model, module_name)
            if module is None:
                continue  # a bare parameter: frozen above
            # named_modules(prefix=...) includes the stage itself (ResNet's stem *is* `bn1`).
            stage_modules = module.named_modules(prefix=module_name)
            for full_name, child in list(stage_modules):
                if isinstance(child, nn.BatchNorm2d):
                    model.set_submodule(full_name, _frozen_copy(child))
                elif isinstance(child, (nn.Dropout, StochasticDepth)):
                    child.p = 0.0
                elif isinstance(child, nn.MultiheadAttention):  # ViT: its attention dropout
                    child.dropout = 0.0


def parameter_groups(
    model: nn.Module, name: str, backbone_lr: float | None, head_lr: float
) -> list[dict[str, Any]]:
    """Two named optimizer groups, head and backbone; frozen parameters are in neither.

    `backbone_lr` may be None only for a linear probe, where no backbone parameter trains.
    """
    head_prefix = f"{get_backbone(name).head}."
    head, backbone = [], []
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            (head if param_name.startswith(head_prefix) else backbone).append(param)
    groups = [{"name": "head", "params": head, "lr": head_lr}]
    if backbone:  # empty for a linear probe (every stage frozen)
        if backbone_lr is None:
            raise ValueError(
                f"`backbone_lr` must be set when a stage of {name} trains, but got backbone_lr=None"
            )
        groups.append({"name": "backbone", "params": backbone, "lr": backbone_lr})
    return groups


def count_trainable(model: nn.Module) -> int:
    """Number of scalar parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
