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
    # Every stage trains from random weights: 5 epochs of 2 steps to beat chance.
    done, root = _sweep(work, "scratch", "--weights", "none", "--max-epochs", "5")
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
    # From random weights freeze_depth is no transfer choice: fixed to 0, and said so.
    assert "Note: freeze_depth is fixed to 0, not searched" in done.stdout
    # 6 validation images tell apart only huge differences: the rungs say so.
    assert "ASHA compares trials at epoch 1, 3 (1 optimizer step per epoch); a rung " in done.stdout
    assert "by more than 6 validation images can tell apart (about 0.57 in val_acc" in done.stdout
    assert summary["fixed"]["freeze_depth"] == 0 and params["freeze_depth"] == 0
    assert "freeze_depth" not in summary["trials"][0]["config"]
    # Each val_acc has its 95 % interval from the 6 validation images.
    assert summary["val_images"] == 6
    for trial in summary["trials"]:
        low, high = trial["val_acc_interval"]
        assert low <= trial["best_val_acc"] <= high and high - low > 0.3  # 6 images: wide
    assert summary["best"]["val_acc_interval"] == summary["trials"][0]["val_acc_interval"]
    assert f"on 6 validation images) at epoch {summary['best']['epoch']}" in done.stdout


def test_a_search_that_learns_nothing_says_so_and_export_and_predict_repeat_it(
    tmp_path: Path,
) -> None:
    """Noise images, the same for every class: no configuration can beat chance, and the
    console, summary.json, the report, export and predict all say so."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        (tmp_path / "noise" / name).mkdir(parents=True)
        for n in range(12):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "noise" / name / f"{n}.png")
    done = run_cli(
        "--data", "imagefolder:noise", "--weights", "none", "--image-size", "24",
        "--num-samples", "1", "--max-epochs", "1", "--name", "noise", "--storage-path", "runs",
        "--cache-dir", str(tmp_path / "cache"), "--wandb", "disabled", "--no-augment",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "runs" / "noise"
    summary = json.loads((root / "summary.json").read_text())
    (chance,) = [w for w in summary["warnings"] if "within noise of chance" in w]
    assert f"on {summary['val_images']} validation images" in chance
    assert isinstance(summary["trials"][0]["classes_missed"], int)
    printed = " ".join(done.stdout.split())  # the console wraps warnings
    for warning in summary["warnings"]:
        assert f"Warning: {warning}" in printed
    page = (root / "report.html").read_text()
    assert "How far to trust this" in page and "within noise of chance" in page
    exported = run_cli("runs/noise", "--out", "model.pt", cwd=tmp_path, script="export.py")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "Warning (from the search): " + chance[:60] in exported.stdout
    predicted = run_cli("model.pt", "noise/a/0.png", cwd=tmp_path, script="predict.py")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "warning (from the search): " + chance[:60] in predicted.stderr
    assert predicted.stdout.count("\t") == 2  # one image's tab-separated line, nothing else


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
