"""What every command line of the harness shares: one-line errors for bad input (exit code 2).

Kept apart from search.settings, which imports Ray and Optuna: scripts/predict.py starts
without them (a second less per call).
"""

from __future__ import annotations

import argparse


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2, no traceback."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")
