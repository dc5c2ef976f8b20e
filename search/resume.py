"""Continuing an experiment: its saved settings, and a check that its state on disk is whole.

Ray Tune restores from the newest `experiment_state-*.json` and silently starts over when that
file is damaged, hiding past trials. `--resume` checks every file a restore reads, before Ray
starts, and stops with one line naming what is wrong instead.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import optuna

from search.optuna_bridge import STUDY_FILE, study_url
from search.settings import SETTINGS_FILE, SearchSettings, UsageError, given_flags

TUNER_FILE = "tuner.pkl"
# Written by Ray Tune at every experiment snapshot; a restore reads the newest of each.
STATE_PATTERNS = {
    "experiment state": ("experiment_state-*.json", "json"),
    "search state": ("search_gen_state-*.json", "pickle"),  # a pickle, despite its name
    "searcher state": ("searcher-state-*.pkl", "pickle"),
}


def load_settings(root: Path) -> SearchSettings:
    """The settings an experiment was created with, from its settings.json."""
    if not root.is_dir():
        raise UsageError(f"--resume: no experiment at {root}; check --name and --storage-path")
    path = root / SETTINGS_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(
            f"--resume: {path} is missing or damaged ({error}); {root} was not made by this "
            "harness or its state is broken, so nothing was resumed"
        ) from None
    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    # Settings added since the experiment was made take their defaults; unknown ones refuse.
    if not isinstance(saved, dict) or not {"name", "space"} <= set(saved) <= fields:
        keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise UsageError(f"--resume: {path} does not hold transfer-tune settings (got {keys})")
    return SearchSettings(**saved)


def _newest(root: Path, pattern: str) -> Path | None:
    """The newest file matching `pattern` (Ray names them by timestamp, so by name)."""
    matches = sorted(root.glob(pattern))
    return matches[-1] if matches else None


def _unreadable(path: Path, kind: str) -> str | None:
    """Why `path` cannot be read as `kind` ('json' or 'pickle'); None when it can."""
    try:
        if kind == "json":
            json.loads(path.read_text())
        else:
            with path.open("rb") as f:
                pickle.load(f)
    except Exception as error:  # any failure to load means a restore would fail or start over
        return f"{type(error).__name__}: {error}"
    return None


def state_problems(settings: SearchSettings) -> list[str]:
    """What is missing or damaged in the experiment's saved state (empty when it is whole)."""
    root = settings.experiment_dir
    problems = []
    tuner = root / TUNER_FILE
    if not tuner.is_file():
        problems.append(f"{tuner} is missing")
    elif reason := _unreadable(tuner, "pickle"):
        problems.append(f"{tuner} is damaged ({reason})")
    for what, (pattern, kind) in STATE_PATTERNS.items():
        newest = _newest(root, pattern)
        if newest is None:
            problems.append(f"no {what} ({pattern}) in {root}")
        elif reason := _unreadable(newest, kind):
            problems.append(f"the newest {what} {newest.name} is damaged ({reason})")
    problems += _study_problems(settings)
    return problems


def _study_problems(settings: SearchSettings) -> list[str]:
    """Problems of the experiment's Optuna study: missing, or made for another space."""
    path = settings.experiment_dir / STUDY_FILE
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        study = optuna.load_study(study_name=settings.name, storage=study_url(path.parent))
    except Exception as error:
        return [f"{path} holds no readable study {settings.name!r} ({type(error).__name__})"]
    space = study.user_attrs.get("space")
    if space != settings.space:
        return [f"{path} belongs to space {space!r}, but the experiment's is {settings.space!r}"]
    return []


def setting_differences(saved: SearchSettings, given: dict[str, Any]) -> list[str]:
    """Flags given with --resume whose values differ from the experiment's settings."""
    return [
        f"--{key.replace('_', '-')} {value!r} (the experiment has {getattr(saved, key)!r})"
        for key, value in given.items()
        if key not in ("name", "storage_path") and value != getattr(saved, key)
    ]


def parse_resume(argv: list[str] | None) -> SearchSettings:
    """The settings of the experiment `--resume` names, after checking its state is whole."""
    given = given_flags(argv)
    given.pop("resume", None)
    if "name" not in given:
        raise UsageError("--resume needs --name NAME, the experiment to continue")
    root = Path(given.get("storage_path", SearchSettings.storage_path)).expanduser().resolve()
    root = root / given["name"]
    saved = load_settings(root)
    if saved.name != root.name:  # its Ray and Optuna state still point at the original
        raise UsageError(
            f"--resume: {root} holds experiment {saved.name!r}, renamed or copied; resume it "
            "under its own name"
        )
    if "cache_dir" in given:  # compared as a new search would store it
        given["cache_dir"] = str(Path(given["cache_dir"]).expanduser().resolve())
    differences = setting_differences(saved, given)
    if differences:
        raise UsageError(
            "--resume continues an experiment with the settings it was created with, "
            f"but these flags differ: {'; '.join(differences)}"
        )
    settings = dataclasses.replace(saved, storage_path=str(root.parent))
    problems = state_problems(settings)
    if problems:
        raise UsageError(
            f"--resume: the saved state of {root} is incomplete or damaged, so nothing was "
            f"resumed or overwritten: {'; '.join(problems)}"
        )
    return settings
