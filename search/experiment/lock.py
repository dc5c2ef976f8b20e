"""One writer per experiment: a search, `--resume` or `--extend` holds the experiment's lock
until its process ends; a second one exits 2 naming the holder.

The lock is the operating system's (flock, through filelock) on `<experiment>/.lock`, so it is
released when its process ends in any way, SIGKILL included: a lock whose process is gone is
taken over by the next claim. Who holds it (host, PID, since when, the command) is written
beside it, in `.lock.holder`, for the message. Guarantees: exclusion between processes on one
machine, and between machines on a shared filesystem whose locks work across hosts (NFS v4,
Lustre); for a URI --storage-path the lock is on the local working copy, so two machines
continuing one stored experiment at once are not kept apart.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import filelock

from search.config.usage import UsageError
from search.experiment.layout import (
    EVENTS_PREFIX,
    LOCK_FILE,
    LOCK_HOLDER,
    MANIFEST,
    SETTINGS_FILE,
)
from trainable.files import write_atomically

# Held by this process until it ends, and whether it made the folder
_HELD: dict[Path, tuple[filelock.BaseFileLock, bool]] = {}


def _holder(root: Path) -> str:
    """Who holds the lock, as the holder file says."""
    try:
        holder = json.loads((root / LOCK_HOLDER).read_text())
        return (
            f"PID {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not said which yet)"


def claim(root: Path, create: bool) -> None:
    """Hold the experiment `root` for this process: make it first when `create` (a new
    experiment; one that exists is refused), else it must exist. UsageError (one line)
    naming the holder when another process has it."""
    root = root.resolve()
    if root in _HELD:
        return
    if create:
        try:
            root.mkdir(parents=True)
        except FileExistsError:
            raise UsageError(
                f"experiment {root} already exists and is never overwritten (another search "
                "with this name started at the same moment?); choose another --name"
            ) from None
    # Not per thread: a new search claims while Ray starts, in another thread than main's.
    lock = filelock.FileLock(root / LOCK_FILE, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise UsageError(
            f"experiment {root} is in use by {_holder(root)}; one search, --resume or --extend "
            "at a time: wait for it to end, or stop it (Ctrl-C) and --resume"
        ) from None
    _HELD[root] = (lock, create)
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
    }
    write_atomically(root / LOCK_HOLDER, lambda f: f.write(json.dumps(holder).encode()))


def abandon(root: Path, interrupted: bool = False) -> bool:
    """Release an experiment this process made, refused before any trial started (a problem
    found once its folder existed, such as weights that do not fit): the folder goes, with
    the settings.json and TensorBoard board written first, so the name is free again. An
    experiment this process did not make, or one with trials, is only released.

    `interrupted`: stopped (Ctrl-C, SIGTERM) before its first trial: the folder goes also
    with what Ray Tune and Optuna had begun to write, as long as no trial has a folder in it.
    Returns whether the folder was removed."""
    root = root.resolve()
    lock, made = _HELD.pop(root, (None, False))
    if lock is None:
        return False
    if not root.is_dir():  # removed already (a stored experiment that could not be uploaded)
        lock.release()
        return False
    ours = (LOCK_FILE, LOCK_HOLDER, MANIFEST)  # and a stored experiment's sync record
    entries = [path for path in root.iterdir() if path.name not in ours]
    if interrupted:
        untouched = not any(path.is_dir() for path in entries)
    else:
        untouched = all(
            path.is_file() and (path.name == SETTINGS_FILE or path.name.startswith(EVENTS_PREFIX))
            for path in entries
        )
    lock.release()
    if made and untouched:
        shutil.rmtree(root)
        return True
    return False
