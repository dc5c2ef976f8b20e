"""Helpers shared by the tests that run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*flags: str, cwd: Path) -> subprocess.CompletedProcess:
    """scripts/search.py in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "search.py"), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": ""},  # the flag decides, not the environment
    )


def popen_cli(*flags: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """scripts/search.py started in the background, to signal or kill while it runs."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "search.py"), *flags],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WANDB_MODE": "", **(env or {})},
    )


# The mini sweep of tests/test_sweep*.py (fixture `sweep` in conftest.py).
SWEEP_SAMPLES, SWEEP_EPOCHS = 6, 3


@dataclass(frozen=True)
class Sweep:
    returncode: int
    stdout: str
    stderr: str
    root: Path
    summary: dict


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
    )  # fmt: skip
    root = work / "runs" / "mini"
    summary_file = root / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return Sweep(done.returncode, done.stdout, done.stderr, root, summary)
