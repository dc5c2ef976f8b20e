"""--resume without Ray: finding the experiment, refusing changed settings and damaged state."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from search.config.settings import SearchSettings
from search.config.usage import UsageError
from search.experiment.layout import LOCK_FILE, LOCK_HOLDER, SETTINGS_FILE
from search.experiment.saved_state import grow_search_state, state_problems
from search.experiment.study import build_storage
from search.run.optuna_bridge import (
    BudgetAwareOptunaSearch,
    ConditionalSpace,
    build_sampler,
)
from search.run.resume import parse_resume, record_extension
from spaces import get_space


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


def test_a_relative_data_path_that_is_the_same_folder_is_no_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photos").mkdir()
    _experiment(tmp_path, data=f"imagefolder:{tmp_path / 'photos'}", weights="none")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as error:
        _resume(tmp_path, "--name", "exp", "--data", "imagefolder:photos", "--weights", "none")
    assert "incomplete or damaged" in str(error.value)  # past the settings check: it matched
    with pytest.raises(UsageError, match=r"--data 'imagefolder:\S+/other' \(the experiment has"):
        _resume(tmp_path, "--name", "exp", "--data", "imagefolder:other")


def test_missing_state_is_reported_file_by_file_and_nothing_is_written(tmp_path: Path) -> None:
    settings = _experiment(tmp_path)
    before = sorted(p.name for p in settings.experiment_dir.iterdir())
    with pytest.raises(UsageError, match=r"incomplete or damaged, so nothing was resumed") as error:
        _resume(tmp_path, "--name", "exp")
    for missing in ("tuner.pkl is missing", "no experiment state", "optuna.db is missing"):
        assert missing in str(error.value)
    # nothing but the lock a resume holds while it checks (search.experiment.lock)
    after = sorted(p.name for p in settings.experiment_dir.iterdir())
    assert [name for name in after if name not in (LOCK_FILE, LOCK_HOLDER)] == before


def test_a_truncated_state_file_is_named(tmp_path: Path) -> None:
    settings = _experiment(tmp_path)
    (settings.experiment_dir / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (settings.experiment_dir / "experiment_state-2026-01-02_00-00-00.json").write_text('{"tri')
    problems = state_problems(settings)
    assert any(
        p.startswith("the newest experiment state experiment_state-2026-01-02") and "damaged" in p
        for p in problems
    ), problems


def _saved_experiment(tmp_path: Path, num_samples: int = 3, suggested: int = 0) -> SearchSettings:
    """An experiment with every state file a restore reads; the searcher's is real, and has
    suggested `suggested` trials."""
    settings = _experiment(tmp_path, num_samples=num_samples)
    root = settings.experiment_dir
    searcher = BudgetAwareOptunaSearch(
        ConditionalSpace.from_space(get_space("resnet_small"), full_depth=5),
        max_t=3,
        time_attr="epoch",
        sampler=build_sampler("random", 0, num_samples),
        storage=build_storage(root),
        study_name="exp",
        study_attrs={"space": "resnet_small"},
    )
    searcher.set_search_properties("val_acc", "max", {})
    for number in range(suggested):
        searcher.suggest(f"trial{number}")
    searcher.save(str(root / "searcher-state-2026-01-01_00-00-00.pkl"))
    (root / "tuner.pkl").write_bytes(pickle.dumps({}))
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    search_state = {"counter": num_samples, "total_samples": num_samples, "finished": True}
    (root / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(pickle.dumps(search_state))
    return settings


def test_extend_adds_its_trials_to_the_saved_number(tmp_path: Path) -> None:
    _saved_experiment(tmp_path, num_samples=3)
    assert _resume(tmp_path, "--name", "exp").num_samples == 3
    settings = parse_resume(["--extend", "2", "--storage-path", str(tmp_path), "--name", "exp"])
    assert settings.num_samples == 5


def test_extend_refuses_a_number_of_samples_and_needs_a_name(tmp_path: Path) -> None:
    _saved_experiment(tmp_path)
    with pytest.raises(UsageError, match=r"^--extend needs --name NAME"):
        parse_resume(["--extend", "2", "--storage-path", str(tmp_path)])
    with pytest.raises(UsageError, match=r"--extend 2 adds 2 trials .* leave --num-samples out"):
        parse_resume(["--extend", "2", "--name", "exp", "--num-samples", "5"])
    with pytest.raises(UsageError, match=r"--extend: must be a whole number of at least 1"):
        parse_resume(["--extend", "0", "--name", "exp"])


def test_a_moved_experiment_is_refused_and_its_old_place_left_alone(tmp_path: Path) -> None:
    settings = _saved_experiment(tmp_path / "old")
    (tmp_path / "new").mkdir()
    settings.experiment_dir.rename(tmp_path / "new" / "exp")
    with pytest.raises(UsageError, match=r"moved or copied from .*old/exp, and its saved search"):
        _resume(tmp_path / "new", "--name", "exp")
    assert not (tmp_path / "old" / "exp").exists()  # the check opened no study there


def test_a_study_older_than_the_search_state_is_named(tmp_path: Path) -> None:
    empty = _saved_experiment(tmp_path / "a")  # its study holds no trial yet
    settings = _saved_experiment(tmp_path / "b", suggested=2)
    shutil.copy(empty.experiment_dir / "optuna.db", settings.experiment_dir / "optuna.db")
    problems = state_problems(settings)
    assert any("holds 0 trials, fewer than the 2 the saved search state names" in p
               for p in problems), problems  # fmt: skip
    assert state_problems(_saved_experiment(tmp_path / "c", suggested=2)) == []


def test_growing_the_search_state_raises_its_budget_once(tmp_path: Path) -> None:
    root = _saved_experiment(tmp_path, num_samples=3).experiment_dir
    state_file = root / "search_gen_state-2026-01-01_00-00-00.json"
    grow_search_state(root, 5)
    assert pickle.loads(state_file.read_bytes()) == {
        "counter": 3, "total_samples": 5, "finished": False
    }  # fmt: skip
    grown = state_file.read_bytes()
    grow_search_state(root, 5)  # an interrupted extension, resumed
    assert state_file.read_bytes() == grown
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []  # no temporary file left behind


def test_an_extension_is_saved_in_the_settings_once(tmp_path: Path) -> None:
    _saved_experiment(tmp_path, num_samples=3)
    path = tmp_path / "exp" / SETTINGS_FILE
    saved = json.loads(path.read_text())
    settings = parse_resume(["--extend", "2", "--storage-path", str(tmp_path), "--name", "exp"])
    assert record_extension(settings) == 2
    assert json.loads(path.read_text()) == {**saved, "num_samples": 5}
    assert record_extension(settings) == 0  # the interrupted extension, resumed
    assert _resume(tmp_path, "--name", "exp").num_samples == 5


def test_how_many_checkpoints_a_resume_keeps_is_its_own_choice(tmp_path: Path) -> None:
    _saved_experiment(tmp_path, num_samples=3)
    assert _resume(tmp_path, "--name", "exp").keep_checkpoints == 3  # the experiment's
    assert _resume(tmp_path, "--name", "exp", "--keep-checkpoints", "0").keep_checkpoints == 0
    with pytest.raises(UsageError, match=r"`--keep-checkpoints >= 0` must hold, but got -1"):
        _resume(tmp_path, "--name", "exp", "--keep-checkpoints", "-1")
    settings = json.loads((tmp_path / "exp" / SETTINGS_FILE).read_text())
    del settings["keep_checkpoints"]  # an experiment made before the flag kept every one
    (tmp_path / "exp" / SETTINGS_FILE).write_text(json.dumps(settings))
    assert _resume(tmp_path, "--name", "exp").keep_checkpoints == 0
