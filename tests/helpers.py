"""Helpers shared by the tests that run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# The flags decide W&B's mode and the cluster, not the environment: a local Ray, W&B by --wandb.
LOCAL = {"WANDB_MODE": "", "RAY_ADDRESS": "local"}


def run_cli(
    *flags: str, cwd: Path, env: dict[str, str] | None = None, script: str = "search.py"
) -> subprocess.CompletedProcess:
    """scripts/search.py (or another of scripts/) in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **LOCAL, **(env or {})},
    )


def popen_cli(*flags: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """scripts/search.py started in the background, to signal or kill while it runs."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "search.py"), *flags],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **LOCAL, **(env or {})},
    )


# The mini sweep of tests/test_sweep*.py (fixture `sweep` in conftest.py).
SWEEP_SAMPLES, SWEEP_EPOCHS = 6, 3
# A W&B API key the sweep runs with (offline: never sent), to look for in every file it leaves
CANARY_KEY = "canary" + "0123456789abcdef" * 2 + "wandbkey"


@dataclass(frozen=True)
class Sweep:
    returncode: int
    stdout: str
    stderr: str
    root: Path
    summary: dict
    ray_dir: Path  # Ray's temporary folder of the sweep (its session logs)


def run_sweep(work: Path, cache_dir: Path) -> Sweep:
    """6 trials of up to 3 epochs; ASHA rungs at epochs 1 and 2 (grace 1, reduction 2)."""
    done = run_cli(
        "--space", "resnet_small",
        "--num-samples", str(SWEEP_SAMPLES),
        "--max-epochs", str(SWEEP_EPOCHS),
        "--grace-period", "1",
        "--reduction-factor", "2",
        "--max-concurrent", "1",  # one at a time: ASHA's decisions do not depend on timing
        "--seed", "0",
        "--name", "mini",
        "--storage-path", "runs",
        "--cache-dir", str(cache_dir),
        "--wandb", "offline",
        cwd=work,
        # A short path of its own: Ray's socket paths must stay under 108 characters.
        env={"WANDB_API_KEY": CANARY_KEY, "RAY_TMPDIR": (ray_dir := tempfile.mkdtemp())},
    )  # fmt: skip
    root = work / "runs" / "mini"
    summary_file = root / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return Sweep(done.returncode, done.stdout, done.stderr, root, summary, Path(ray_dir))


# Colours of the generated classes: a sweep can tell them apart in an epoch or two.
CLASS_COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 70, 210)}


def make_image_folder(root: Path, per_class: int = 10, size: int = 24, seed: int = 0) -> Path:
    """ROOT/<class>/<n>.png: small noisy images, a bright square of the class's colour on each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in CLASS_COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            top, left = rng.integers(0, size // 2, 2)
            pixels[top : top + size // 2, left : left + size // 2] = colour
            Image.fromarray(pixels).save(folder / f"{n:03d}.png")
    return root
