"""What every command line of the harness shares: one-line errors for bad input (exit code 2).

Imported before anything heavy: every command line answers a typo at once.
"""

from __future__ import annotations

import argparse


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2, no traceback."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


class SearchInterrupted(Exception):
    """The search stopped early (Ctrl-C or SIGTERM) with its state saved; says how to resume."""
