"""Atomic file writes, shared by checkpoints, caches, exports and the experiment's own files;
and the names of a checkpoint's and a model's file (read by the search before torch is
imported)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

CHECKPOINT_FILE = "checkpoint.pt"  # a trial checkpoint (trainable.checkpoint), in its folder
MODEL_FILE = "model.pt"  # a search's best model (trainable.exported), beside its checkpoint


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Create or replace `path` with what `write` writes to a binary file, atomically.

    It goes to a temporary file in the same folder, renamed over `path` when complete: a crash
    mid-write leaves any previous file intact, and a reader never sees half a file. An exception
    in `write` removes the temporary. A replaced file keeps its permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        try:
            write(tmp)
        except BaseException:  # Ctrl-C included: leave no half-written temporary behind
            os.unlink(tmp.name)
            raise
    if path.exists():
        os.chmod(tmp.name, path.stat().st_mode)
    os.replace(tmp.name, path)


def write_json_atomically(path: Path, value: Any) -> None:
    """`value` as indented JSON with a final newline, written atomically (`write_atomically`)."""
    text = json.dumps(value, indent=2) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))


# lockf locks belong to a process: threads of one process take turns on one of these per file.
_THREAD_LOCKS: dict[Path, threading.Lock] = {}


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold `path`'s lock file (`path` with suffix .lock) exclusively: one process at a time,
    one thread of it at a time. A POSIX record lock (lockf), which a forked child does not
    inherit: with flock, worker processes forked while it is held (an image loader's, kept
    between trials) would hold it for as long as they live."""
    with (
        _THREAD_LOCKS.setdefault(path, threading.Lock()),
        open(path.with_suffix(".lock"), "w") as lock,
    ):
        fcntl.lockf(lock, fcntl.LOCK_EX)
        yield
