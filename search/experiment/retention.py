"""Which checkpoints an experiment keeps, while its trials run and once they have ended.

While a trial runs, it keeps its best checkpoint by `val_acc` (to export), the one the
experiment's stored state names (to resume from) and any newer one: `SupersededCheckpoints`
removes the others, but only once a stored state names a newer checkpoint, so that a driver
killed at any moment leaves the checkpoint its state will resume from (Ray's own
`num_to_keep` removes a checkpoint as soon as a newer one reports, seconds before the state
that names the newer one reaches the experiment). Once a trial has ended (completed, or
stopped by ASHA) it is never resumed, and once the search ends only the best trials' weights
are worth their disk: the experiment keeps the best checkpoint of its `keep` best trials (by
best `val_acc`, the order of summary.json) and removes every other checkpoint of an ended
trial. Trials that have not ended
(interrupted, or failed and retried by `--resume`) keep theirs. Pruning runs after Ray has
saved its final state, at the end of every search, resume and extension; a trial's rank can
only fall as more trials end, so a later end never wants back what an earlier one removed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray import tune

from search.config.filesystems import storage_filesystem
from search.config.settings import METRIC, SearchSettings
from search.experiment.layout import CHECKPOINT_PREFIX
from search.experiment.storage import remote_experiment
from trainable import metrics
from trainable.metrics import RESULT_FILE

CHECKPOINT_DIR = "checkpoint_dir_name"  # the field of a Tune result naming its checkpoint

TERMINATED = "TERMINATED"  # Tune's status of a trial that ended without an error


@dataclass(frozen=True)
class Pruned:
    """What pruning removed: checkpoint folders, their bytes, and the trials they were of."""

    folders: int
    bytes: int
    trials: int


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def prune_checkpoints(settings: SearchSettings, summary: dict) -> Pruned:
    """Remove the checkpoints that the rule above does not keep; set each trial's
    `checkpoint` in `summary` to the one it keeps (None when it keeps none). With a URI, the
    folders stored there count too (the working copy holds each trial's best alone)."""
    root = settings.experiment_dir
    remote = remote_experiment(settings)
    stored = remote.checkpoint_bytes() if remote is not None else {}
    keep = settings.keep_checkpoints
    folders = size = trials = 0
    for rank, trial in enumerate(summary["trials"]):
        if trial["status"] != TERMINATED:
            continue
        kept = trial.get("checkpoint") if keep == 0 or rank < keep else None
        here = {
            folder.name: folder
            for folder in (root / trial["path"]).glob(f"{CHECKPOINT_PREFIX}*")
            if folder.is_dir()
        }
        there = stored.get(trial["path"], {})
        removed = [
            name for name in sorted(set(here) | set(there)) if f"{trial['path']}/{name}" != kept
        ]
        for name in removed:
            size += there[name] if name in there else _folder_bytes(here[name])
            if remote is not None:
                remote.delete(f"{trial['path']}/{name}")
            else:
                shutil.rmtree(here[name])
        folders += len(removed)
        trials += bool(removed)
        trial["checkpoint"] = kept
    return Pruned(folders, size, trials)


def best_only(trial: Path, names: Iterable[str]) -> list[str]:
    """Of a trial's checkpoint folders `names` at a URI, those its working copy `trial` needs:
    the best (the summary's and export's), by the result rows downloaded into `trial`."""
    best = best_checkpoint(metrics.result_rows(trial), names)
    return [best] if best else []


def best_checkpoint(rows: Iterable[dict[str, Any]], existing: Iterable[str]) -> str | None:
    """The name of the best of the `existing` checkpoint folders of a trial whose result rows
    are `rows`: the highest `val_acc`, the later of ties (as Ray ranks them); None when no
    existing folder has a scored row."""
    present = set(existing)
    scored = [
        (float(row[METRIC]), row[CHECKPOINT_DIR])
        for row in rows
        if row.get(CHECKPOINT_DIR) in present
        and isinstance(row.get(METRIC), (int, float))
        and math.isfinite(row[METRIC])
    ]
    return max(scored)[1] if scored else None


class Store:
    """The files of an experiment where Ray stores it, a local folder or a URI, through
    pyarrow's filesystems (as Ray writes them). Pickled (in Tune's saved callbacks) as its
    location alone: the filesystem is opened again where it is loaded."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._opened: tuple[pyarrow.fs.FileSystem, str] | None = None

    @classmethod
    def of(cls, settings: SearchSettings) -> Store:
        return cls(settings.experiment_uri or str(settings.experiment_dir))

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"])  # type: ignore[misc]

    def _path(self, relative: str = "") -> tuple[pyarrow.fs.FileSystem, str]:
        if self._opened is None:  # an s3:// URI without ?region= asks AWS at every opening
            self._opened = storage_filesystem(self.location)
        fs, base = self._opened
        return fs, f"{base}/{relative}" if relative else base

    def listing(self, folder: str = "") -> list[pyarrow.fs.FileInfo]:
        """The entries of `folder` (relative; the experiment's own by default)."""
        fs, path = self._path(folder)
        return fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))

    def read(self, relative: str) -> str:
        fs, path = self._path(relative)
        with fs.open_input_stream(path) as stream:
            return stream.read().decode()

    def remove(self, relative: str) -> None:
        fs, path = self._path(relative)
        fs.delete_dir(path)


def stored_state(store: Store) -> tuple[str, int, int] | None:
    """The experiment's newest stored Tune state file, with its mtime and size."""
    found = [
        (info.mtime_ns or 0, info.size or 0, info.base_name)
        for info in store.listing()
        if info.type == pyarrow.fs.FileType.File
        and fnmatch.fnmatch(info.base_name, "experiment_state-*.json")
    ]
    if not found:
        return None
    mtime, size, name = max(found)
    return name, mtime, size


def stored_checkpoints(state: str) -> dict[str, str]:
    """Tune trial id -> the checkpoint folder a stored state (its text `state`) resumes it
    from; {} when it is unreadable (being copied, say)."""
    named: dict[str, str] = {}
    with contextlib.suppress(ValueError, KeyError, TypeError):
        for trial_state, run_state in json.loads(state)["trial_data"]:
            trial_id = json.loads(trial_state)["trial_id"]
            folder = (json.loads(run_state).get("last_result") or {}).get(CHECKPOINT_DIR)
            if folder:
                named[trial_id] = folder
        return named
    return {}


class SupersededCheckpoints(tune.Callback):
    """Removes each trial's checkpoints that no resume and no export can want (see above):
    those older than the one the stored state names, but its best. In a folder or at a URI:
    a few listings per checkpoint the stored state newly names."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rows: dict[str, list[dict[str, Any]]] = {}  # results seen, per trial
        self._state: tuple[str, int, int] | None = None  # the stored state last read
        self._named: dict[str, str] = {}  # and what it names
        self._pruned: dict[str, str] = {}  # per trial, the named checkpoint last pruned to

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restored from Tune's saved callbacks; one saved before the URI support held the
        experiment folder as `root` (and read the stored state by its path)."""
        store = state.get("store") or Store(str(state["root"]))
        self.__init__(store)  # type: ignore[misc]
        self._rows = state.get("_rows", {})

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._rows.setdefault(trial.trial_id, []).append(
            {CHECKPOINT_DIR: result.get(CHECKPOINT_DIR), METRIC: result.get(METRIC)}
        )
        try:
            state = stored_state(self.store)
            if state is not None and state != self._state:
                self._state, self._named = state, stored_checkpoints(self.store.read(state[0]))
            for each in trials:
                named = self._named.get(each.trial_id)
                if not named or each.trial_id not in self._rows:
                    continue
                if self._pruned.get(each.trial_id) != named:  # else nothing older came since
                    self._prune(Path(each.path).name, named, self._rows[each.trial_id])
                    self._pruned[each.trial_id] = named
        except (OSError, pyarrow.lib.ArrowException, UnicodeDecodeError):
            return  # the storage's (a network, a file being replaced): the end prunes again

    def _prune(self, folder: str, named: str, seen: list[dict[str, Any]]) -> None:
        entries = self.store.listing(folder)
        older = sorted(
            info.base_name
            for info in entries
            if info.type == pyarrow.fs.FileType.Directory
            and info.base_name.startswith(CHECKPOINT_PREFIX)
            and info.base_name < named
        )
        if not older:
            return
        # Its best so far: rows logged in an earlier run of the experiment, and those seen here.
        logged = ""
        if any(info.base_name == RESULT_FILE for info in entries):
            logged = self.store.read(f"{folder}/{RESULT_FILE}")
        best = best_checkpoint([*metrics.parse_rows(logged), *seen], [*older, named])
        for name in older:
            if name != best:
                self.store.remove(f"{folder}/{name}")
