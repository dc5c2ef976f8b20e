"""--resume without Ray: finding the experiment, refusing changed settings and damaged state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.resume import parse_resume, state_problems
from search.settings import SETTINGS_FILE, SearchSettings, UsageError


def _experiment(tmp_path: Path, **changes: object) -> SearchSettings:
    """An experiment folder holding only settings.json, as if Ray never saved its state."""
    settings = SearchSettings(name="exp", storage_path=str(tmp_path), **changes)
    settings.experiment_dir.mkdir(parents=True)
    (settings.experiment_dir / SETTINGS_FILE).write_text(json.dumps(settings.to_dict()))
    return settings


def _resume(tmp_path: Path, *flags: str) -> SearchSettings:
    return parse_resume(["--resume", "--storage-path", str(tmp_path), *flags])


def test_resume_needs_the_experiment_name(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--resume needs --name NAME"):
        _resume(tmp_path)


def test_a_missing_experiment_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no experiment at .*nope; check --name"):
        _resume(tmp_path, "--name", "nope")


def test_a_folder_without_harness_settings_is_refused(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / SETTINGS_FILE).write_text('{"lr": 1}')
    with pytest.raises(UsageError, match=r"does not hold transfer-tune settings \(got \['lr'\]\)"):
        _resume(tmp_path, "--name", "exp")


def test_a_renamed_experiment_is_refused(tmp_path: Path) -> None:
    settings = _experiment(tmp_path)
    settings.experiment_dir.rename(tmp_path / "copy")
    with pytest.raises(UsageError, match=r"holds experiment 'exp', renamed or copied"):
        _resume(tmp_path, "--name", "copy")


def test_changed_settings_are_refused_naming_each(tmp_path: Path) -> None:
    _experiment(tmp_path, num_samples=4)
    with pytest.raises(UsageError) as error:
        _resume(tmp_path, "--name", "exp", "--num-samples", "8", "--space", "resnet_small")
    message = str(error.value)
    assert "--num-samples 8 (the experiment has 4)" in message
    assert "--space" not in message  # the same value as saved is no difference


def test_missing_state_is_reported_file_by_file_and_nothing_is_written(tmp_path: Path) -> None:
    settings = _experiment(tmp_path)
    before = sorted(p.name for p in settings.experiment_dir.iterdir())
    with pytest.raises(UsageError, match=r"incomplete or damaged, so nothing was resumed") as error:
        _resume(tmp_path, "--name", "exp")
    for missing in ("tuner.pkl is missing", "no experiment state", "optuna.db is missing"):
        assert missing in str(error.value)
    assert sorted(p.name for p in settings.experiment_dir.iterdir()) == before


def test_a_truncated_state_file_is_named(tmp_path: Path) -> None:
    settings = _experiment(tmp_path)
    (settings.experiment_dir / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (settings.experiment_dir / "experiment_state-2026-01-02_00-00-00.json").write_text('{"tri')
    problems = state_problems(settings)
    assert any(
        p.startswith("the newest experiment state experiment_state-2026-01-02") and "damaged" in p
        for p in problems
    ), problems
