from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trainable import weights
from trainable.backbones import build_model
from trainable.weights import WeightsError, load_weights, read_state_dict, weights_file_problems


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Path]:
    """torch's hub cache pointed at an empty folder for one test."""
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(before)


def test_imagenet_weights_load_from_torchs_hub_cache(hub: Path) -> None:
    path = weights.imagenet_file("resnet18")
    assert path == hub / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's file name
    original = build_model("resnet18", 1000).state_dict()
    path.parent.mkdir(parents=True)
    torch.save(original, path)
    weights.prepare_imagenet("resnet18", download=False)  # present: nothing to do
    state = load_weights("imagenet", "resnet18", "digits", 32, "/nonexistent")
    assert state is not None and torch.equal(
        state["layer4.1.bn2.weight"], original["layer4.1.bn2.weight"]
    )


def test_missing_imagenet_weights_name_the_file_and_where_it_goes(hub: Path) -> None:
    with pytest.raises(WeightsError) as error:
        load_weights("imagenet", "efficientnet_b0", "digits", 32, "/nonexistent")
    message = str(error.value)
    url = "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth"
    assert f"put {url} at {hub}/checkpoints/efficientnet_b0_rwightman-7f5810bc.pth" in message
    assert "--download" in message


def test_none_trains_from_scratch() -> None:
    assert load_weights("none", "resnet18", "digits", 16, "/nonexistent") is None


def test_a_state_dict_file_loads_from_plain_wrapped_and_dataparallel_forms(tmp_path: Path) -> None:
    state = build_model("resnet18", 3).state_dict()
    for name, payload in [
        ("plain.pt", state),
        ("ours.pt", {"model": state, "epoch": 3}),  # a transfer-tune checkpoint
        ("lightning.ckpt", {"state_dict": state}),
        ("parallel.pt", {f"module.{k}": v for k, v in state.items()}),
    ]:
        torch.save(payload, tmp_path / name)
        loaded = read_state_dict(tmp_path / name)
        assert loaded.keys() == state.keys(), name
        assert weights_file_problems(tmp_path / name, "resnet18") == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], r"is not a state dict: it holds a list, not a dict of tensors"),
        ({"lr": 0.1}, r"is not a state dict: it holds a dict"),
    ],
)
def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path, payload, message) -> None:
    torch.save(payload, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=message):
        read_state_dict(tmp_path / "w.pt")


def test_a_file_torch_cannot_load_safely_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_text("hello")
    with pytest.raises(
        WeightsError, match=r"is not a state dict torch.load reads with weights_only"
    ):
        read_state_dict(tmp_path / "w.pt")
    with pytest.raises(
        WeightsError, match=r"weights file \S+nope.pt does not exist; --weights takes"
    ):
        read_state_dict(tmp_path / "nope.pt")


def test_a_state_dict_of_another_backbone_names_the_mismatches(tmp_path: Path) -> None:
    torch.save(build_model("resnet50", 3).state_dict(), tmp_path / "r50.pt")
    (problem,) = weights_file_problems(tmp_path / "r50.pt", "resnet18")
    assert problem.startswith(f"weights file {tmp_path / 'r50.pt'} does not fit resnet18: ")
    assert "unexpected layer1.0.bn3.bias" in problem
    assert "shapes layer1.0.conv1.weight (64, 64, 1, 1) != (64, 64, 3, 3)" in problem


def test_a_damaged_imagenet_file_in_the_cache_is_named(hub: Path) -> None:
    path = weights.imagenet_file("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download")
    with pytest.raises(WeightsError, match=r"ImageNet weights file \S+-f37072fd.pth cannot"):
        weights.check_imagenet("resnet18")
    torch.save(build_model("resnet34", 1000).state_dict(), path)
    with pytest.raises(WeightsError, match=r"\S+resnet18-f37072fd.pth does not fit resnet18: "):
        weights.check_imagenet("resnet18")


def test_a_vit_file_with_a_malformed_position_embedding_is_named_not_raised(tmp_path) -> None:
    state = build_model("vit_b_16", 3, 32).state_dict()
    state["encoder.pos_embedding"] = torch.zeros(1, 200, 768)  # 199 patches: no square grid
    torch.save(state, tmp_path / "vit.pt")
    (problem,) = weights_file_problems(tmp_path / "vit.pt", "vit_b_16")
    assert "shapes encoder.pos_embedding (1, 200, 768) != (1, 197, 768)" in problem
