"""Mini sweeps on the user's own images through the real CLI: from scratch (with a corrupt
image among them), and from a state-dict file the test saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import make_image_folder, run_cli

from trainable.backbones import build_model
from trainable.config import TrialConfig
from trainable.loop import trained_model

pytestmark = pytest.mark.sweep


def _sweep(
    work: Path, name: str, *flags: str, env: dict[str, str] | None = None
) -> tuple[object, Path]:
    done = run_cli(
        "--data", "imagefolder:photos",
        "--image-size", "32",
        "--num-samples", "3",
        "--max-epochs", "2",
        "--max-concurrent", "2",
        "--name", name,
        "--storage-path", "runs",
        "--cache-dir", str(work / "cache"),
        "--wandb", "disabled",
        *flags,
        cwd=work,
        env=env,
    )  # fmt: skip
    return done, work / "runs" / name


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("images")
    make_image_folder(work / "photos", per_class=10, size=40)
    (work / "photos" / "red" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return work


def test_a_sweep_on_an_image_folder_from_scratch(work: Path) -> None:
    done, root = _sweep(work, "scratch", "--weights", "none")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning: 1 unreadable image skipped: " in done.stdout
    assert "photos/red/corrupt.jpg (" in done.stdout
    assert "3 classes (blue, green, red), 24 train / 6 val / 0 test images" in done.stdout
    summary = json.loads((root / "summary.json").read_text())
    assert len(summary["trials"]) == 3
    assert all(t["status"] == "TERMINATED" for t in summary["trials"])
    assert summary["best"]["val_acc"] > 1 / 3  # better than chance on 3 colour classes
    params = json.loads(next(root.glob("train_transfer_*/params.json")).read_text())
    assert params["data"] == f"imagefolder:{work / 'photos'}"  # absolute: re-runnable anywhere
    assert (params["weights"], params["image_size"], params["augment"]) == ("none", 32, True)


def test_a_sweep_from_a_state_dict_file(work: Path) -> None:
    torch.manual_seed(0)
    torch.save(build_model("resnet18", 7).state_dict(), work / "mine.pt")  # any head size
    done, root = _sweep(work, "from-file", "--weights", "mine.pt", "--no-augment")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((root / "summary.json").read_text())
    assert len(summary["trials"]) == 3
    params = json.loads(next(root.glob("train_transfer_*/params.json")).read_text())
    assert params["weights"] == str(work / "mine.pt") and params["augment"] is False
    # The trials started from the file: where the stem was frozen, the checkpoint restores on
    # the file's weights and its stem is the file's.
    given = torch.load(work / "mine.pt", weights_only=True)
    frozen_stems = 0
    for path in root.glob("train_transfer_*/checkpoint_*/checkpoint.pt"):
        state = torch.load(path, weights_only=True)
        assert state["model"]["fc.weight"].shape == (3, 512)  # the head fits the 3 classes
        if state["config"]["freeze_depth"] >= 1:
            assert "conv1.weight" not in state["model"]  # frozen: rebuilt, not stored
            model = trained_model(TrialConfig.from_dict(state["config"]), state, given)
            assert torch.equal(model.state_dict()["conv1.weight"], given["conv1.weight"])
            frozen_stems += 1
    assert frozen_stems  # seed 0: TPE's first suggestions freeze 3 stages
    # Its weights file moved away: --extend is refused in one line, and nothing is recorded
    (work / "mine.pt").rename(work / "moved.pt")
    extend = run_cli("--extend", "1", "--name", "from-file", "--storage-path", "runs",
                     "--cache-dir", str(work / "cache"), cwd=work)  # fmt: skip
    (work / "moved.pt").rename(work / "mine.pt")
    assert extend.returncode == 2, extend.stderr[-3000:]
    assert extend.stderr.strip().splitlines()[-1].startswith("search.py: error: weights file ")
    assert "Traceback" not in extend.stderr
    assert json.loads((root / "settings.json").read_text())["num_samples"] == 3


def test_a_sweep_from_imagenet_weights_in_torchs_hub_cache(work: Path) -> None:
    """The real torchvision loading path, in every trial's process, from a file the test puts
    where torchvision keeps ImageNet weights ($TORCH_HOME/hub/checkpoints)."""
    hub = work / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(1)
    given = build_model("resnet18", 1000).state_dict()
    torch.save(given, hub / "resnet18-f37072fd.pth")
    done, root = _sweep(work, "imagenet", env={"TORCH_HOME": str(work / "torch")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights 'imagenet'" in done.stdout  # the default for a user's images
    checkpoints = list(root.glob("train_transfer_*/checkpoint_*/checkpoint.pt"))
    states = [torch.load(path, weights_only=True) for path in checkpoints]
    frozen = [s for s in states if s["config"]["freeze_depth"] >= 1]
    assert frozen
    for state in frozen:  # they restore on the hub's file, whose stem they kept frozen
        model = trained_model(TrialConfig.from_dict(state["config"]), state, given)
        assert torch.equal(model.state_dict()["conv1.weight"], given["conv1.weight"])
