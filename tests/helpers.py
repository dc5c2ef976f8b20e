"""Helpers shared by the tests that run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
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
