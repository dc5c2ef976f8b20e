"""Stopping a search before its volume is full: a volume that fills up mid-search would fail
trials, writes of the study and Tune's own state in turn, and leave files half-written. A
thread of the driver checks the experiment's volume every second; when it holds less than a
checkpoint of each running trial (plus a margin for the logs and Tune's state), or turns
read-only, it stops the search as Ctrl-C does, saving its state, and says why
(search.run.finish: exit code 1, with the command that resumes once there is room).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from pathlib import Path

# Room for Tune's state, the summary, the report and the logs of a stop.
MARGIN_BYTES = 32 << 20
# Errors of a volume: full, read-only, over quota.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def volume_problem(folder: Path, reserve: int) -> str | None:
    """Why `folder`'s volume cannot take the rest of the search, or None."""
    try:
        stats = os.statvfs(folder)
    except OSError:  # gone, or unreachable: the writes will say why
        return None
    if stats.f_flag & os.ST_RDONLY:
        return f"{folder} is on a read-only volume"
    free = stats.f_bavail * stats.f_frsize
    if free < reserve:
        return (
            f"{folder} has {free / 1e6:.0f} MB free, less than the {reserve / 1e6:.0f} MB its "
            "running trials may write next"
        )
    return None


class StorageWatch:
    """While `watching`, checks the volume of `folder` every `interval_s` seconds; at the first
    problem it keeps the reason in `problem` and interrupts the driver (SIGINT: Tune stops the
    trials and saves its state, as on Ctrl-C)."""

    def __init__(self, folder: Path, reserve: int, interval_s: float = 1.0) -> None:
        self.folder = folder
        self.reserve = reserve + MARGIN_BYTES
        self.interval_s = interval_s
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="storage-watch", daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            problem = volume_problem(self.folder, self.reserve)
            if problem:
                self.problem = problem
                print(f"Stopping the search: {problem}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                return

    def __enter__(self) -> StorageWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
