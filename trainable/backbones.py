"""Backbone families as models: built, loaded with weights, frozen by stage (their stages and
head are facts of trainable.catalog).

`freeze_depth = k` freezes the first k stages: their parameters stop training AND their
BatchNorm layers become `FrozenBatchNorm2d`, so `model.train()` cannot move their statistics.
Their dropout and stochastic depth (EfficientNet, ConvNeXt) are turned off too: a frozen stage
is a fixed function of its input, which trainable.features relies on to cache its output.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.vision_transformer import interpolate_embeddings
from torchvision.ops import FrozenBatchNorm2d, StochasticDepth

from trainable.catalog import BACKBONES, get_backbone


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


def _torchvision(name: str) -> Callable[[int, int], nn.Module]:
    """torchvision's model `name` with a `num_classes` head (its shape ignores the image size)."""
    constructor = getattr(torchvision.models, name)
    return lambda num_classes, _: constructor(num_classes=num_classes)


def _vit_b_16(num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.vit_b_16(num_classes=num_classes, image_size=image_size)


# How each family of trainable.catalog.BACKBONES is built: (num_classes, image_size) -> model
BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    **{name: _torchvision(name) for name in BACKBONES if name != "vit_b_16"},
    "vit_b_16": _vit_b_16,
}
# Fits pretrained weights to the model before loading (ViT: its position embedding to the
# model's image size); families not named load weights as they are.
ADAPTERS: dict[str, Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
    "vit_b_16": _vit_to_image_size,
}


def build_model(name: str, num_classes: int, image_size: int = 224) -> nn.Module:
    """A randomly initialised model of the family with a `num_classes` head; only ViT's
    shape depends on `image_size` (its position embedding)."""
    get_backbone(name)  # an unknown name lists the choices
    return BUILDERS[name](num_classes, image_size)


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
    adapt = ADAPTERS.get(name)
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


def frozen_state_keys(model: nn.Module, name: str, depth: int) -> set[str]:
    """State-dict keys (parameters and buffers) of the first `depth` stages of the backbone."""
    entries = [entry for stage in get_backbone(name).stages[:depth] for entry in stage]
    return {
        key
        for key in model.state_dict()
        if any(key == entry or key.startswith(f"{entry}.") for entry in entries)
    }


def count_trainable(model: nn.Module) -> int:
    """Number of scalar parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
