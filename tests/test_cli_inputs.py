"""Every bad input a user is likely to give, through the CLI's `main` as scripts/search.py calls
it: exit code 2, one line that says what to fix, no traceback, nothing written. The cases run in
this process, once per module (a Python start and torch import each would cost ~60 s of the
suite); test_settings.py runs the script itself, in a process of its own, for the exit code.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import LOCAL, make_image_folder
from PIL import Image

from search.cli.search import main
from search.config.usage import UsageError
from trainable.backbones import build_model

# name: (flags, the message the one line must match)
CASES: dict[str, tuple[list[str], str]] = {
    "missing folder": (
        ["--data", "imagefolder:nowhere", "--weights", "none"],
        r"image folder \S+/nowhere does not exist$",
    ),
    "file, not a folder": (
        ["--data", "imagefolder:notes.txt", "--weights", "none"],
        r"image folder \S+notes.txt is a file; --data imagefolder:PATH needs a folder$",
    ),
    "one class": (
        ["--data", "imagefolder:one_class", "--weights", "none"],
        r"`classes >= 2` must hold, but \S+one_class has 1 class folder\(s\): cats; put each",
    ),
    "class too small to split": (
        ["--data", "imagefolder:tiny_class", "--weights", "none"],
        r"class 'green' has 1 image\(s\) in \S+tiny_class, but each class needs at least 2",
    ),
    "symlink out of the root": (
        ["--data", "imagefolder:linked", "--weights", "none"],
        r"image \S+escape.png resolves to \S+outside.png, outside the data folder \S+linked;",
    ),
    "unknown data set": (
        ["--data", "mnist", "--weights", "none"],
        r"unknown data set 'mnist'; choose one of: digits, imagefolder:PATH, cifar10\[:ROOT\], "
        r"cifar100\[:ROOT\], flowers102\[:ROOT\], oxford_iiit_pet\[:ROOT\]$",
    ),
    "torchvision files missing": (
        ["--data", "flowers102:flowers", "--weights", "none"],
        r"flowers102 is not in \S+flowers: missing flowers-102/jpg/, flowers-102/imagelabels.mat"
        r", flowers-102/setid.mat; put its files there \(from https://\S+\) or add --download",
    ),
    "unknown backbone": (
        ["--backbone", "resnet101"],
        r"unknown backbone 'resnet101'; choose one of: convnext_tiny, efficientnet_b0, "
        r"mobilenet_v3_large, resnet18, resnet34, resnet50, vit_b_16$",
    ),
    "freeze_depth beyond the backbone": (
        ["--space", "efficientnet", "--backbone", "resnet18"],
        r"`freeze_depth <= 5` must hold for resnet18, but space 'efficientnet' reaches "
        r"freeze_depth=9$",
    ),
    "weights file missing": (
        ["--weights", "nope.pt"],
        r"weights file \S+nope.pt does not exist; --weights takes source, imagenet, none, or a",
    ),
    "weights file not a state dict": (
        ["--weights", "notes.txt"],
        r"weights file \S+notes.txt is not a state dict torch.load reads with weights_only=True",
    ),
    "weights of another backbone": (
        ["--weights", "mobilenet.pt"],
        r"weights file \S+mobilenet.pt does not fit resnet18: missing bn1.bias, .+ and 117 more; "
        r"unexpected classifier.0.bias, .+ and 309 more$",
    ),
    "imagenet weights not cached": (
        ["--data", "imagefolder:three", "--backbone", "resnet34"],
        r"ImageNet weights of resnet34 are not in torch's hub cache: put https://download.pytorch"
        r".org/models/resnet34-b627a593.pth at \S+/resnet34-b627a593.pth, or add --download",
    ),
    "image too small for the backbone": (
        ["--space", "convnext", "--image-size", "24"],
        r"`32 <= --image-size <= 2048` must hold for convnext_tiny, but got 24$",
    ),
    "image size off ViT's patch grid": (
        ["--space", "vit", "--image-size", "40"],
        r"`--image-size % 16 == 0` must hold for vit_b_16 \(its patch size\), but got 40$",
    ),
    "grace period beyond the epochs": (
        ["--grace-period", "5", "--max-epochs", "3"],
        r"`--grace-period <= --max-epochs` must hold, but got \(grace_period=5, max_epochs=3\)$",
    ),
    "no trials": (["--num-samples", "0"], r"`--num-samples >= 1` must hold, but got 0$"),
    "negative shots": (["--shots", "-4"], r"`--shots >= 0` must hold, but got -4$"),
    "all the digits": (["--shots", "0"], r"`1 <= --shots <= 123` must hold for digits \(.*got 0$"),
    "an empty name": (["--name", ""], r"--name must be a folder name of .*, but got ''$"),
    "no CPUs": (["--cpus-per-trial", "0"], r"`0 < --cpus-per-trial <= \d+` .*but got 0$"),
    "val fraction": (["--val-fraction", "1.5"], r"`0 < --val-fraction < 1` must hold, but got 1.5"),
    "unknown flag": (["--learning-rate", "3"], r"unrecognized arguments: --learning-rate 3"),
    "no cluster at the address": (
        ["--address", "127.0.0.1:1"],
        r"cannot reach the Ray cluster at '127.0.0.1:1' \(ConnectionRefusedError: .*\): is it",
    ),
    "not an address": (
        ["--address", "headnode"],
        r"--address must be HOST:PORT or auto, but got 'headnode'$",
    ),
    "Ray Client address": (
        ["--address", "ray://head:10001"],
        r"--address ray://head:10001: Ray Client \(ray://\) is not supported; run the command",
    ),
}
if not torch.cuda.is_available():  # where a GPU exists the flag is valid
    CASES["GPU without a GPU"] = (
        ["--gpus-per-trial", "1"],
        r"--gpus-per-trial 1 needs a GPU, but torch sees none on this machine; leave it at 0",
    )


def _make_inputs(work: Path) -> None:
    """The user's files the cases point at, each wrong in one way."""
    (work / "notes.txt").write_text("not a folder, not weights")
    make_image_folder(work / "three", per_class=3)
    (work / "one_class" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(work / "one_class" / "cats" / "a.png")
    make_image_folder(work / "tiny_class", per_class=3)
    for extra in sorted((work / "tiny_class" / "green").iterdir())[1:]:
        extra.unlink()
    make_image_folder(work / "linked", per_class=2)
    Image.new("RGB", (8, 8)).save(work / "outside.png")
    (work / "linked" / "red" / "escape.png").symlink_to(work / "outside.png")
    torch.save(build_model("mobilenet_v3_large", 3).state_dict(), work / "mobilenet.pt")


def _run_main(*flags: str) -> subprocess.CompletedProcess:
    """search.cli.main with `flags`, its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(flags))
    return subprocess.CompletedProcess(flags, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("inputs")
    _make_inputs(work)
    common = ["--storage-path", "runs", "--cache-dir", str(work / "cache"), "--wandb", "disabled"]
    with pytest.MonkeyPatch.context() as env:
        env.chdir(work)  # the cases' relative paths
        env.setenv("TORCH_HOME", str(work / "torch"))  # an empty hub cache: no ImageNet weights
        for name, value in LOCAL.items():
            env.setenv(name, value)
        done = {name: _run_main(*flags, *common) for name, (flags, _) in CASES.items()}
    assert not (work / "runs").exists(), "a rejected search wrote an experiment"
    return done


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_is_one_line_and_exit_code_2(
    runs: dict[str, subprocess.CompletedProcess], case: str
) -> None:
    done, (_, message) = runs[case], CASES[case]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("search.py: error: ")
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize(("free_mb", "refused"), [(20, True), (600, False)])
def test_a_volume_short_of_room_is_refused_or_warned_of_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_mb: int, refused: bool
) -> None:
    """ResNet-18's checkpoints are up to 90 MB (weights and momentum): 20 MB free cannot hold
    one per running trial (refused); 600 MB holds those but not the 16 x 2 the search may keep
    (a warning, which the checks do not print: the search says it once nothing can refuse it,
    so that a refusal stays one line)."""
    from search.config import preflight

    def disk_usage(path: object) -> SimpleNamespace:
        return SimpleNamespace(total=1 << 40, used=(1 << 40) - (free_mb << 20), free=free_mb << 20)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    flags = ["--name", "r", "--storage-path", "runs", "--wandb", "disabled"]
    err = io.StringIO()
    with redirect_stderr(err):
        if refused:
            with pytest.raises(
                UsageError,
                match=r"^--storage-path runs has 21 MB free, less "
                r"than one checkpoint \(90 MB\) and the logs of each of 2 trials",
            ):
                preflight.checked_settings([*flags, "--max-concurrent", "2"])
        else:
            settings = preflight.checked_settings(flags)
    assert err.getvalue() == ""
    if not refused:
        warning = preflight.free_space_warning(settings)
        assert re.fullmatch(r"Warning: \S+ has 0\.63 GB free; this search may write up to "
                            r"2\.\d+ GB \(16 trials x 2 checkpoints of up to 90 MB, and logs\)"
                            r"\. .*", warning or "")  # fmt: skip
    assert not (tmp_path / "runs").exists()
