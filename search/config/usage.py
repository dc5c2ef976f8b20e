"""What every command line of the harness shares: one-line errors for bad input (exit code 2).

Imported before anything heavy: every command line answers a typo at once.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2, no traceback."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


class SearchInterrupted(Exception):
    """The search stopped early (Ctrl-C or SIGTERM) with its state saved; says how to resume."""

    exit_code = 130


class StorageStopped(SearchInterrupted):
    """The search stopped early because its volume filled up or turned read-only, with its
    state saved; says how to resume once there is room."""

    exit_code = 1


# The positional argument of scripts/board.py, export.py and report.py
EXPERIMENT_HELP = (
    "the experiment folder, e.g. runs/NAME, or its URI (s3://bucket/runs/NAME), downloaded "
    "first into its working copy under the cache folder"
)


def check_out(path: Path, what: str, folder: bool = False) -> None:
    """Nothing is overwritten, and a path that cannot be written fails now, not after a
    retraining: refuse an existing file (or, for a folder, anything but an empty folder), and
    a place that is not a writable folder."""
    taken = not (path.is_dir() and not any(path.iterdir())) if folder else path.exists()
    if path.exists() and taken:
        raise UsageError(f"{what} {path} exists; nothing was written (choose another path)")
    parent = path.parent if not path.exists() else path
    while not parent.exists():  # the nearest folder that exists must let us create the rest
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: cannot write in {parent}")


def exit_now(code: int) -> NoReturn:
    """End a command that has done its work with `code`: the exit handlers run (Ray's, W&B's,
    logging's, temporary folders'), but the interpreter does not then tear down every module
    it imported, which takes torch and torchvision over a second (measured: 1.2 s of 1.3 s
    of a search's exit). Threads still running are waited for, as by a normal exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    run_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's; absent: a normal exit
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if run_handlers is None or any(not t.daemon for t in others):
        sys.exit(code)
    run_handlers()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
