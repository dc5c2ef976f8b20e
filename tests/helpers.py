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
