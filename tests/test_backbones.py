import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from trainable.backbones import (
    BACKBONES,
    build_model,
    count_trainable,
    freeze_stages,
    load_backbone_state,
    parameter_groups,
    stage_parameters,
)

SPEC = BACKBONES["resnet18"]


def _stage_params(model: nn.Module, stage: tuple[str, ...]) -> list[nn.Parameter]:
    return [p for name in stage for p in model.get_submodule(name).parameters()]


@pytest.mark.parametrize("depth", range(SPEC.max_freeze_depth + 1))
def test_exactly_the_first_k_stages_are_frozen(depth: int) -> None:
    model = build_model("resnet18", 5)
    freeze_stages(model, "resnet18", depth)
    for index, stage in enumerate(SPEC.stages):
        frozen = index < depth
        assert all(p.requires_grad != frozen for p in _stage_params(model, stage)), stage
        norms = [m for name in stage for m in model.get_submodule(name).modules()]
        assert any(isinstance(m, FrozenBatchNorm2d) for m in norms) == frozen
        assert any(isinstance(m, nn.BatchNorm2d) for m in norms) != frozen
    assert all(p.requires_grad for p in model.fc.parameters())  # the head always trains


def test_frozen_batchnorm_statistics_do_not_move_in_a_training_step() -> None:
    model = build_model("resnet18", 5)
    freeze_stages(model, "resnet18", 2)  # stem and layer1
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    optimizer = torch.optim.SGD(parameter_groups(model, "resnet18", 0.1, 0.1), momentum=0.9)
    model.train()
    loss = F.cross_entropy(model(torch.randn(8, 3, 32, 32) * 3 + 1), torch.arange(8) % 5)
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("bn1.", "layer1."))]
    trained = [k for k in before if k.startswith("layer2.")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_a_training_step_changes_trainable_and_only_trainable_weights() -> None:
    model = build_model("resnet18", 5)
    freeze_stages(model, "resnet18", 3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(parameter_groups(model, "resnet18", 0.1, 0.1))
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        assert changed == param.requires_grad or not param.requires_grad, name
        if name.startswith(("conv1", "bn1", "layer1", "layer2")):
            assert not changed, name
    assert not torch.equal(before["fc.weight"], model.fc.weight)


def test_parameter_groups_are_named_and_exclude_frozen_parameters() -> None:
    model = build_model("resnet18", 5)
    freeze_stages(model, "resnet18", 4)
    groups = parameter_groups(model, "resnet18", backbone_lr=1e-3, head_lr=1e-1)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"head", "backbone"}
    assert by_name["head"]["lr"] == 1e-1 and by_name["backbone"]["lr"] == 1e-3
    head_ids = {id(p) for p in model.fc.parameters()}
    layer4_ids = {id(p) for p in model.layer4.parameters()}
    assert {id(p) for p in by_name["head"]["params"]} == head_ids
    assert {id(p) for p in by_name["backbone"]["params"]} == layer4_ids
    grouped = sum(p.numel() for g in groups for p in g["params"])
    assert grouped == count_trainable(model)


def test_a_linear_probe_has_only_the_head_group() -> None:
    model = build_model("resnet18", 5)
    freeze_stages(model, "resnet18", SPEC.max_freeze_depth)
    groups = parameter_groups(model, "resnet18", None, 1e-2)  # no backbone_lr: none needed
    assert [g["name"] for g in groups] == ["head"]
    assert count_trainable(model) == 512 * 5 + 5


def test_a_training_stage_needs_a_backbone_lr() -> None:
    model = build_model("resnet18", 5)
    freeze_stages(model, "resnet18", SPEC.max_freeze_depth - 1)
    with pytest.raises(ValueError, match=r"`backbone_lr` must be set when a stage of resnet18"):
        parameter_groups(model, "resnet18", None, 1e-2)


def test_freeze_depth_beyond_the_stages_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"`0 <= freeze_depth <= 5` must hold for resnet18"):
        freeze_stages(build_model("resnet18", 5), "resnet18", 6)


def test_backbone_weights_load_and_the_new_head_is_kept() -> None:
    source = build_model("resnet18", 7)  # a different head shape, as in transfer
    target = build_model("resnet18", 5)
    head_before = target.fc.weight.detach().clone()
    load_backbone_state(target, "resnet18", source.state_dict())
    assert torch.equal(target.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert torch.equal(target.fc.weight, head_before)


def test_weights_that_do_not_fit_name_the_keys() -> None:
    state = build_model("resnet18", 5).state_dict()
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    state["layer2.0.bn1.weight"] = torch.zeros(3)
    with pytest.raises(
        ValueError,
        match=r"missing layer1.0.conv1.weight; unexpected extra.weight; "
        r"shapes layer2.0.bn1.weight \(3,\) != \(128,\)",
    ):
        load_backbone_state(build_model("resnet18", 5), "resnet18", state)


# Every registered family: the properties `freeze_depth` relies on.
FAMILIES = sorted(BACKBONES)
SIZE = 32  # tiny inputs: ViT's position embedding is built for them


def _stage_tensors(model: nn.Module, stage: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics) of a stage, by full name."""
    tensors = {}
    for name in stage:
        try:
            items = model.get_submodule(name).state_dict().items()
        except AttributeError:  # a bare parameter (ViT's class token)
            items = [("", model.get_parameter(name))]
        tensors.update({f"{name}.{key}": t.detach().clone() for key, t in items})
    return tensors


@pytest.mark.parametrize("name", FAMILIES)
def test_the_stage_map_covers_every_parameter_but_the_head_once(name: str) -> None:
    spec, model = BACKBONES[name], build_model(name, 5, SIZE)
    staged = [key for stage in spec.stages for key, _ in stage_parameters(model, stage)]
    head = [key for key, _ in model.named_parameters() if key.startswith(f"{spec.head}.")]
    assert len(staged) == len(set(staged)), "a parameter is in two stages"
    assert sorted(staged + head) == sorted(key for key, _ in model.named_parameters())
    assert model.get_submodule(spec.head).out_features == 5  # the head fits the classes


@pytest.mark.parametrize("name", FAMILIES)
def test_trainable_parameters_fall_with_each_frozen_stage(name: str) -> None:
    model = build_model(name, 5, SIZE)
    counts = []
    for depth in range(BACKBONES[name].max_freeze_depth + 1):
        freeze_stages(model, name, depth)  # freezing deeper keeps the earlier stages frozen
        counts.append(count_trainable(model))
    assert all(a > b for a, b in itertools.pairwise(counts)), counts
    head = BACKBONES[name].head
    assert counts[-1] == sum(p.numel() for p in model.get_submodule(head).parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_one_training_step_moves_no_frozen_weight_or_statistic(name: str) -> None:
    spec = BACKBONES[name]
    depth = spec.max_freeze_depth // 2
    model = build_model(name, 3, SIZE)
    # ViT starts its head at zero, which sends no gradient into the backbone on a first step.
    nn.init.normal_(model.get_submodule(spec.head).weight, std=0.1)
    freeze_stages(model, name, depth)
    frozen = {
        k: v for stage in spec.stages[:depth] for k, v in _stage_tensors(model, stage).items()
    }
    trained = _stage_tensors(model, spec.stages[-1])
    optimizer = torch.optim.SGD(parameter_groups(model, name, 0.1, 0.1), momentum=0.9)
    model.train()
    logits = model(torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (4, 3)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    after = {**_stage_tensors(model, spec.stages[-1])}
    for stage in spec.stages[:depth]:
        after.update(_stage_tensors(model, stage))
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # BatchNorm stats included
    assert any(not torch.equal(after[k], v) for k, v in trained.items())


def test_vit_weights_of_another_image_size_are_interpolated_to_the_model() -> None:
    """ImageNet ViT weights are for 224 px (14 x 14 patches); a 64 px model has 4 x 4."""
    pretrained = build_model("vit_b_16", 1000, 224).state_dict()
    model = build_model("vit_b_16", 3, 64)
    load_backbone_state(model, "vit_b_16", pretrained)
    assert model.encoder.pos_embedding.shape == (1, 17, 768)
    assert torch.equal(model.class_token, pretrained["class_token"])
    # The class token's embedding is kept, the patch grid's resampled.
    assert torch.equal(
        model.encoder.pos_embedding[:, :1], pretrained["encoder.pos_embedding"][:, :1]
    )
