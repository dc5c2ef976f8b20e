"""Where an experiment is stored: a local folder, or a cloud URI that Ray supports (`s3://`,
`gs://`, ... anything `pyarrow.fs.FileSystem.from_uri` opens).

With a URI, Ray Tune writes the trials, their checkpoints and its own state straight there. The
files the driver writes itself (settings.json, optuna.db, summary.json, report.html, the
experiment's TensorBoard events, offline W&B runs, the marks of interrupted trials) go to a
local working copy of the experiment under the cache folder, and are uploaded: at the start,
the study when a trial starts or ends, and everything at the end. At the end the experiment is
downloaded into the working copy too, so the summary, the report, TensorBoard and export read
local files: all of it but the checkpoints, of which each trial's best alone (the one its state
resumes from, when another, stays at the URI: search.experiment.retention). A manifest in the
working copy records each file's state on both sides at its last sync: a file is uploaded when
it changed here, and downloaded when it changed there (by Ray, or by a driver elsewhere that
resumed the experiment).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import pyarrow.fs

from search.config.filesystems import storage_filesystem, uri_problems
from search.config.settings import SearchSettings, is_uri, split_uri, working_copy
from search.config.usage import UsageError
from search.experiment.layout import (
    CHECKPOINT_PREFIX,
    DRIVER_FILES,
    EVENTS_PREFIX,
    INTERRUPTED_SUFFIX,
    MANIFEST,
    SETTINGS_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
    UPLOAD_SUFFIX,
    WANDB_FOLDER,
)
from trainable.config import default_cache_dir, error_line
from trainable.files import CHECKPOINT_FILE

Stat = list[int | None]  # [size, mtime_ns] of a file, as JSON keeps it
# Which of a trial's checkpoint folders to download: given the trial's folder in the working
# copy (its other files downloaded) and the names of its checkpoint folders at the URI.
Chooser = Callable[[Path, set[str]], Iterable[str]]


def _stat(path: Path) -> Stat:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def checkpoint_folder(relative: str) -> tuple[str, str] | None:
    """(trial folder, checkpoint folder) of a file in a trial's checkpoint; else None."""
    parts = PurePosixPath(relative).parts
    if len(parts) > 2 and parts[1].startswith(CHECKPOINT_PREFIX):
        return parts[0], parts[1]
    return None


def local_experiment(path: str) -> Path:
    """The experiment folder a script was given: a local folder, or for a URI its working
    copy (under the default cache folder), brought up to date with what is stored there."""
    if not is_uri(path):
        return Path(path).expanduser().resolve()
    problems = uri_problems(path)
    if problems:
        raise UsageError(problems[0])
    storage, name = split_uri(path)
    experiment = RemoteExperiment(path, working_copy(storage, name, default_cache_dir()))
    experiment.fetch_settings(f"no experiment at {path}")
    copied = experiment.download()
    print(f"Downloaded {copied} files of {path} to its working copy {experiment.local}")
    return experiment.local


def driver_owned(relative: str) -> bool:
    """Whether the driver, not Ray, writes this file of the experiment folder."""
    parts = PurePosixPath(relative).parts
    at_root = len(parts) == 1 and (parts[0] in DRIVER_FILES or parts[0].startswith(EVENTS_PREFIX))
    return at_root or parts[0] == WANDB_FOLDER or relative.endswith(INTERRUPTED_SUFFIX)


def remote_experiment(settings: SearchSettings) -> RemoteExperiment | None:
    """The experiment of a URI --storage-path with its working copy; None for a folder."""
    uri = settings.experiment_uri
    return RemoteExperiment(uri, settings.experiment_dir) if uri else None


@dataclass(frozen=True)
class RemoteExperiment:
    """An experiment stored at `uri` and its local working copy `local`."""

    uri: str
    local: Path

    @cached_property
    def _filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """Opened once: an s3:// URI without ?region= asks AWS for it at every opening."""
        return storage_filesystem(self.uri)

    def exists(self) -> bool:
        """Whether anything is stored at the experiment's URI (OSError if it can't be read)."""
        fs, path = self._filesystem
        return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def fetch_settings(self, missing: str) -> None:
        """Download the stored settings.json alone (the cheap checks need it first);
        UsageError `missing` when there is none, or one line when the URI can't be read."""
        try:
            fs, path = self._filesystem
            info = fs.get_file_info(f"{path}/{SETTINGS_FILE}")
            if info.type != pyarrow.fs.FileType.File:
                raise UsageError(missing)
            manifest = self._manifest()
            self._get(SETTINGS_FILE, [info.size, info.mtime_ns], manifest)
            self._save(manifest)
        except OSError as error:
            raise UsageError(f"{self.uri} cannot be read: {error_line(error)}") from None

    def _remote_files(self) -> dict[str, Stat]:
        """Each stored file's path relative to the experiment, with its size and mtime."""
        fs, path = self._filesystem
        selector = pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True)
        return {
            PurePosixPath(info.path).relative_to(path).as_posix(): [info.size, info.mtime_ns]
            for info in fs.get_file_info(selector)
            if info.type == pyarrow.fs.FileType.File
        }

    def _local_files(self) -> dict[str, Stat]:
        """Each file of the working copy (but the sync's own) with its size and mtime."""
        return {
            path.relative_to(self.local).as_posix(): _stat(path)
            for path in self.local.rglob("*")
            if path.is_file() and path.name != MANIFEST and not path.name.endswith(UPLOAD_SUFFIX)
        }

    def _manifest(self) -> dict[str, dict[str, Stat]]:
        """Each file's state at its last sync: `stored` (at the URI) and `local` (here)."""
        try:
            saved = json.loads((self.local / MANIFEST).read_text())
        except (OSError, ValueError):  # none yet (or damaged): every file counts as changed
            saved = {}
        return {"stored": saved.get("stored", {}), "local": saved.get("local", {})}

    def _save(self, manifest: dict[str, dict[str, Stat]]) -> None:
        self.local.mkdir(parents=True, exist_ok=True)
        (self.local / MANIFEST).write_text(json.dumps(manifest))

    def _get(self, relative: str, stored: Stat, manifest: dict[str, dict[str, Stat]]) -> None:
        """Copy one stored file here and record both sides in `manifest`."""
        fs, path = self._filesystem
        target = self.local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(
            f"{path}/{relative}", str(target), source_filesystem=fs,
            destination_filesystem=pyarrow.fs.LocalFileSystem(),
        )  # fmt: skip
        manifest["stored"][relative], manifest["local"][relative] = stored, _stat(target)

    def download(self, choose: Chooser | None = None) -> int:
        """Copy the stored files that changed since their last sync (or are missing here)
        into the working copy; return the files copied. With `choose`, the checkpoints come
        last, and of each trial only the folders `choose` names. OSError if the URI can't be
        read."""
        here, manifest = self._local_files(), self._manifest()
        stored = self._remote_files()
        changed = {
            relative: stat
            for relative, stat in stored.items()
            if relative not in here or manifest["stored"].get(relative) != stat
        }
        later = {r for r in changed if choose and checkpoint_folder(r)}
        copied = 0
        try:
            for relative in [r for r in changed if r not in later]:
                self._get(relative, changed[relative], manifest)
                copied += 1
            if choose is not None and later:
                folders: dict[str, set[str]] = defaultdict(set)
                for trial, name in filter(None, map(checkpoint_folder, stored)):
                    folders[trial].add(name)
                wanted = {
                    (trial, name)
                    for trial, names in folders.items()
                    for name in choose(self.local / trial, names)
                }
                for relative in [r for r in later if checkpoint_folder(r) in wanted]:
                    self._get(relative, changed[relative], manifest)
                    copied += 1
        finally:  # what was copied before a failure is not copied again
            self._save(manifest)
        return copied

    def checkpoint_bytes(self) -> dict[str, dict[str, int]]:
        """Each trial folder's checkpoint folders at the URI, with the bytes of each."""
        sizes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for relative, (size, _) in self._remote_files().items():
            folder = checkpoint_folder(relative)
            if folder:
                sizes[folder[0]][folder[1]] += size or 0
        return {trial: dict(names) for trial, names in sizes.items()}

    def upload(self, files: list[str] | None = None) -> int:
        """Copy the driver's files that changed here since their last sync (or `files`,
        relative paths) to the URI; return the files copied. OSError if it can't be written."""
        here, manifest = self._local_files(), self._manifest()
        if files is None:
            # The study always: small, and the one file a resume cannot do without
            chosen = [f for f, stat in here.items() if driver_owned(f) and (
                f == STUDY_FILE or manifest["local"].get(f) != stat)]  # fmt: skip
        else:
            chosen = [f for f in files if f in here]
        try:
            for relative in chosen:
                if relative == STUDY_FILE:
                    self._put_study(manifest)
                else:
                    self._put(relative, here[relative], manifest)
        finally:  # what was sent before a failure is not sent again
            self._save(manifest)
        return len(chosen)

    def delete(self, folder: str) -> None:
        """Remove `folder` (relative to the experiment) at the URI and in the working copy."""
        fs, path = self._filesystem
        if fs.get_file_info(f"{path}/{folder}").type != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(f"{path}/{folder}")  # gone already: Ray removed it since the download
        shutil.rmtree(self.local / folder, ignore_errors=True)
        manifest = self._manifest()
        for side in manifest.values():
            for relative in [r for r in side if r.startswith(f"{folder}/")]:
                del side[relative]
        self._save(manifest)

    def upload_study(self) -> None:
        """Upload a consistent snapshot of optuna.db, which the searcher may be writing."""
        manifest = self._manifest()
        self._put_study(manifest)
        self._save(manifest)

    def _put_study(self, manifest: dict[str, dict[str, Stat]]) -> None:
        study = self.local / STUDY_FILE
        if not study.is_file():  # sqlite3.connect would create an empty one
            return
        before = _stat(study)  # a write during the copy leaves it newer: uploaded again later
        snapshot = study.with_name(STUDY_FILE + UPLOAD_SUFFIX)
        source, copy = sqlite3.connect(study), sqlite3.connect(snapshot)
        try:
            source.backup(copy)
        finally:
            source.close()
            copy.close()
        try:
            self._put(STUDY_FILE, before, manifest, source=snapshot)
        finally:
            snapshot.unlink()

    def _put(
        self,
        relative: str,
        local: Stat,
        manifest: dict[str, dict[str, Stat]],
        source: Path | None = None,
    ) -> None:
        """Copy one file (or `source` in its place) to the URI; record both sides in
        `manifest`."""
        fs, path = self._filesystem
        target = f"{path}/{relative}"
        fs.create_dir(str(PurePosixPath(target).parent), recursive=True)
        pyarrow.fs.copy_files(
            str(source or self.local / relative), target,
            source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs,
        )  # fmt: skip
        info = fs.get_file_info(target)
        manifest["stored"][relative] = [info.size, info.mtime_ns]
        manifest["local"][relative] = local


def read_summary(root: Path) -> dict:
    """The experiment's summary.json; {} when it is missing or unreadable (it is rebuilt)."""
    try:
        return json.loads((root / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}


def best_checkpoint(root: Path) -> tuple[dict, Path]:
    """The experiment's summary and its best trial's checkpoint file, checked."""
    if not root.is_dir():
        raise UsageError(f"no experiment folder at {root}")
    summary = read_summary(root)
    if not summary:
        raise UsageError(
            f"{root} has no readable {SUMMARY_FILE}: give the folder of a search that ran "
            "(runs/NAME), or finish it with --resume"
        )
    best = summary.get("best")
    if not best or not best.get("checkpoint"):
        raise UsageError(f"{root / SUMMARY_FILE} names no best checkpoint: no trial reported")
    path = root / best["checkpoint"] / CHECKPOINT_FILE
    if not path.is_file():
        raise UsageError(f"the best trial's checkpoint {path} is missing")
    return summary, path
