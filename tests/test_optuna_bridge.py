"""The ASHA-Optuna bridge, driven directly as Tune drives it: suggest, results, completion."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from search.experiment.layout import TRIAL_FOLDER_PREFIX
from search.experiment.study import (
    TRIAL_NUMBER_ATTR,
    TUNE_TRIAL_ID,
    build_storage,
    catch_up,
)
from search.run.optuna_bridge import (
    BudgetAwareOptunaSearch,
    ConditionalSpace,
    build_sampler,
    startup_trials,
)
from spaces import get_space
from trainable.config import TRIAL_NUMBER
from trainable.metrics import EPOCH, VAL_ACC

MAX_T = 3
FULL_DEPTH = 5  # ResNet-18: stem + 4 layers


def _space(**changes: object) -> ConditionalSpace:
    return ConditionalSpace.from_space({**get_space("resnet_small"), **changes}, FULL_DEPTH)


def _searcher(tmp_path: Path, sampler: str = "random") -> BudgetAwareOptunaSearch:
    searcher = BudgetAwareOptunaSearch(
        _space(),
        max_t=MAX_T,
        time_attr=EPOCH,
        sampler=build_sampler(sampler, seed=0, num_samples=16),
        storage=build_storage(tmp_path),
        study_name="exp",
        study_attrs={"space": "resnet_small"},
    )
    assert searcher.set_search_properties(VAL_ACC, "max", {})
    return searcher


def _result(epoch: int, acc: float) -> dict:
    return {EPOCH: epoch, VAL_ACC: acc, "training_iteration": epoch}


def _study_trial(tmp_path: Path, trial_id: str) -> optuna.trial.FrozenTrial:
    """The study trial of Tune trial `trial_id`, read back from optuna.db."""
    study = optuna.load_study(study_name="exp", storage=build_storage(tmp_path))
    (trial,) = [t for t in study.trials if t.user_attrs[TUNE_TRIAL_ID] == trial_id]
    return trial


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_study_takes_metric_and_mode_from_tune_and_records_the_space(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.user_attrs == {"space": "resnet_small"}
    assert not searcher.set_search_properties(VAL_ACC, "max", {}), "set up twice"


def test_each_trial_is_numbered_in_its_config_and_its_study_trial(tmp_path: Path) -> None:
    """One identity everywhere: the number the config carries (to the console, summary.json,
    TensorBoard and W&B) and the Tune id, both on the study trial."""
    searcher = _searcher(tmp_path)
    numbers = [searcher.suggest(trial_id)[TRIAL_NUMBER] for trial_id in ("a", "b", "c")]
    assert numbers == [1, 2, 3]
    assert searcher.suggest("b")[TRIAL_NUMBER] == 2  # asked again: the same trial
    trial = _study_trial(tmp_path, "b")
    assert trial.user_attrs == {TUNE_TRIAL_ID: "b", TRIAL_NUMBER_ATTR: 2}


def test_a_trial_asha_stops_early_is_pruned_with_its_whole_curve(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.on_trial_result("a", _result(1, 0.30))
    # ASHA stops the trial on its epoch-2 result: Ray passes it to on_trial_complete only.
    searcher.on_trial_complete("a", result=_result(2, 0.40))
    trial = _study_trial(tmp_path, "a")
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.30, 2: 0.40}
    assert trial.value == 0.40  # Optuna's convention: a pruned trial's last intermediate value


def test_a_trial_stopped_on_its_last_epoch_is_complete_with_its_best_value(
    tmp_path: Path,
) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("b")
    searcher.on_trial_result("b", _result(1, 0.50))
    searcher.on_trial_result("b", _result(2, 0.70))
    # ASHA stops every trial at max_t, on the result of its last epoch.
    searcher.on_trial_complete("b", result=_result(MAX_T, 0.60))
    trial = _study_trial(tmp_path, "b")
    assert trial.state == TrialState.COMPLETE
    assert trial.intermediate_values == {1: 0.50, 2: 0.70, 3: 0.60}
    assert trial.value == 0.70  # the best epoch: the checkpoint the harness keeps


def test_a_last_result_seen_twice_is_reported_once(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("c")
    for epoch in range(1, MAX_T + 1):
        searcher.on_trial_result("c", _result(epoch, 0.1 * epoch))
    searcher.on_trial_complete("c", result=_result(MAX_T, 0.99))  # a repeat of epoch 3
    trial = _study_trial(tmp_path, "c")
    assert trial.state == TrialState.COMPLETE
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: pytest.approx(0.3)}


def test_an_errored_trial_fails_even_after_reporting(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("d")
    searcher.on_trial_result("d", _result(1, 0.2))
    searcher.on_trial_complete("d", error=True)
    trial = _study_trial(tmp_path, "d")
    assert trial.state == TrialState.FAIL
    assert trial.value is None and trial.intermediate_values == {1: 0.2}


def test_a_trial_stopped_before_any_result_is_pruned_empty(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("e")
    searcher.on_trial_complete("e")  # e.g. a pending trial removed at the end of the search
    trial = _study_trial(tmp_path, "e")
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {}


def test_a_second_completion_changes_nothing(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("f")
    searcher.on_trial_complete("f", result=_result(MAX_T, 0.5))
    searcher.on_trial_complete("f", error=True)
    searcher.on_trial_result("f", _result(MAX_T + 1, 0.9))
    trial = _study_trial(tmp_path, "f")
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {3: 0.5}


def test_stock_optuna_search_calls_an_early_stopped_trial_complete() -> None:
    """Why the bridge exists: Ray's searcher tells Optuna a 1-epoch trial finished."""
    stock = OptunaSearch(
        space={"x": tune.uniform(0, 1)}, metric=VAL_ACC, mode="max", sampler=build_sampler(
            "random", seed=0, num_samples=4
        )
    )  # fmt: skip
    stock.suggest("g")
    stock.on_trial_complete("g", result=_result(1, 0.3))
    (trial,) = stock._ot_study.trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {}


def test_the_searcher_resumes_from_its_saved_state_without_new_study_trials(
    tmp_path: Path,
) -> None:
    searcher = _searcher(tmp_path)
    config = searcher.suggest("h")
    searcher.on_trial_result("h", _result(1, 0.4))
    searcher.save(str(tmp_path / "searcher.pkl"))

    restored = BudgetAwareOptunaSearch(
        _space(), max_t=MAX_T, time_attr=EPOCH, sampler=build_sampler("random", 0, 16)
    )
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("h") == config  # the same study trial, not a new one
    restored.on_trial_result("h", _result(1, 0.4))  # a resumed trial may repeat an epoch
    restored.on_trial_complete("h", result=_result(2, 0.5))
    study = optuna.load_study(study_name="exp", storage=build_storage(tmp_path))
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.4, 2: 0.5}


def test_a_last_epoch_logged_but_never_told_completes_the_trial_after_a_resume(
    tmp_path: Path,
) -> None:
    """Tune tells the searcher of a trial's last epoch only as it stops the trial, after the
    epoch is logged. Stopped in between (Ctrl-C, a kill), the study is an epoch behind; on
    --resume the trial has nothing left to run and Tune completes it with the last result its
    state saved. The study catches up with the trial's result.json first: COMPLETE, not PRUNED."""
    searcher = _searcher(tmp_path)
    searcher.suggest("z")
    for epoch in range(1, MAX_T):
        searcher.on_trial_result("z", _result(epoch, 0.1 * epoch))
    searcher.save(str(tmp_path / "searcher-state.json"))
    folder = tmp_path / f"{TRIAL_FOLDER_PREFIX}z"  # what the driver logged, the last epoch too
    folder.mkdir()
    (folder / "result.json").write_text(
        "".join(f'{{"epoch": {e}, "val_acc": {0.1 * e}}}\n' for e in range(1, MAX_T + 1))
    )

    assert catch_up(tmp_path, "exp") == 1
    assert catch_up(tmp_path, "exp") == 0  # once
    restored = BudgetAwareOptunaSearch(
        _space(), max_t=MAX_T, time_attr=EPOCH, sampler=build_sampler("random", 0, 16)
    )
    restored.restore(str(tmp_path / "searcher-state.json"))
    restored.on_trial_complete("z", result=_result(MAX_T - 1, 0.1 * (MAX_T - 1)))
    trial = _study_trial(tmp_path, "z")
    assert trial.state == TrialState.COMPLETE
    assert trial.value == pytest.approx(0.1 * MAX_T)


@pytest.mark.parametrize(("num_samples", "expected"), [(4, 3), (16, 5), (30, 10), (100, 10)])
def test_tpe_starts_with_a_third_of_the_budget_at_random(num_samples: int, expected: int) -> None:
    assert startup_trials(num_samples) == expected


def _sample(space: ConditionalSpace, n: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [space(study.ask()) for _ in range(n)]


def test_backbone_lr_is_absent_exactly_when_the_whole_backbone_is_frozen() -> None:
    params = _sample(_space(), 60)
    assert {p["freeze_depth"] for p in params} == set(range(FULL_DEPTH + 1))
    for p in params:
        assert ("backbone_lr" in p) == (p["freeze_depth"] < FULL_DEPTH), p
        assert "head_lr" in p


def test_a_space_fixing_a_linear_probe_never_samples_backbone_lr() -> None:
    space = _space(freeze_depth=FULL_DEPTH)
    assert "freeze_depth" not in space.distributions
    assert all(set(p) == {"head_lr"} for p in _sample(space, 5))


def test_a_restored_searcher_catches_up_with_a_study_ahead_of_its_snapshot(
    tmp_path: Path,
) -> None:
    """After a crash optuna.db holds what happened since Tune's last searcher snapshot, and a
    trial suggested after it runs again under the next new Tune trial (the study holds it once)."""
    searcher = _searcher(tmp_path)
    searcher.suggest("done")
    searcher.suggest("running")
    searcher.on_trial_result("running", _result(1, 0.4))
    searcher.save(str(tmp_path / "searcher.pkl"))  # the snapshot
    searcher.on_trial_complete("done", result=_result(1, 0.3))  # told after it
    searcher.on_trial_result("running", _result(2, 0.5))
    searcher.suggest("lost")  # suggested after the snapshot; Tune will not run it

    restored = BudgetAwareOptunaSearch(
        _space(), max_t=MAX_T, time_attr=EPOCH, sampler=build_sampler("random", 0, 16)
    )
    restored.restore(str(tmp_path / "searcher.pkl"))
    lost = _study_trial(tmp_path, "lost")
    assert lost.state == TrialState.RUNNING
    again = restored.suggest("new")  # Tune's trial in its place
    adopted = _study_trial(tmp_path, "new")
    assert adopted.number == lost.number and adopted.params == lost.params
    assert again["trial_number"] == lost.user_attrs["trial_number"] == 3
    assert len(restored.study.trials) == 3
    restored.on_trial_complete("done", result=_result(1, 0.3))  # rerun by Tune: not told again
    assert _study_trial(tmp_path, "done").state == TrialState.PRUNED
    restored.on_trial_result("running", _result(2, 0.5))  # already in the study
    restored.on_trial_complete("running", result=_result(3, 0.6))
    running = _study_trial(tmp_path, "running")
    assert running.state == TrialState.COMPLETE and running.value == 0.6
    assert running.intermediate_values == {1: 0.4, 2: 0.5, 3: 0.6}


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_the_saved_state_is_json_and_the_restored_searcher_goes_on_as_if_never_stopped(
    tmp_path: Path, sampler: str
) -> None:
    """No pickle, so a tampered state file cannot run code; the samplers' random states come
    back, so a resumed search suggests what the search would have suggested next."""
    first, copy = tmp_path / "first", tmp_path / "copy"
    first.mkdir()
    searcher = _searcher(first, sampler)
    for index, acc in enumerate([0.3, 0.5, 0.4, 0.6, 0.45, 0.55, 0.5]):  # TPE leaves start-up
        searcher.suggest(f"t{index}")
        searcher.on_trial_complete(f"t{index}", result=_result(MAX_T, acc))
    searcher.suggest("running")
    searcher.save(str(first / "searcher-state.pkl"))
    assert (first / "searcher-state.pkl").read_text().startswith('{"format": ')
    shutil.copytree(first, copy)
    expected = [searcher.suggest(trial_id) for trial_id in ("next1", "next2")]

    restored = BudgetAwareOptunaSearch(  # as tuner.pkl holds it: a fresh sampler, no study
        _space(), max_t=MAX_T, time_attr=EPOCH, sampler=build_sampler(sampler, 0, 16),
        storage=build_storage(copy), study_name="exp",
    )  # fmt: skip
    restored.restore(str(copy / "searcher-state.pkl"))
    assert restored.suggest("running") == searcher.suggest("running")  # the same study trial
    assert [restored.suggest(trial_id) for trial_id in ("next1", "next2")] == expected


def _across(
    tmp_path: Path, warm_start: list[dict] | None = None, kept: list[str] | None = None
) -> BudgetAwareOptunaSearch:
    from search.config.settings import SearchSettings, resolve
    from search.run.tuner import build_space

    settings = resolve(SearchSettings(backbones="resnet18,mobilenet_v3_large"))
    searcher = BudgetAwareOptunaSearch(
        build_space(settings, kept),
        max_t=MAX_T,
        time_attr=EPOCH,
        sampler=build_sampler("tpe", seed=0, num_samples=16),
        storage=build_storage(tmp_path),
        study_name="exp",
        warm_start=warm_start,
    )
    assert searcher.set_search_properties(VAL_ACC, "max", {})
    return searcher


def test_a_searched_backbone_samples_its_own_depths_and_ranges(tmp_path: Path) -> None:
    warm = [{"backbone": "mobilenet_v3_large", "mobilenet_v3_large:freeze_depth": 6}]
    searcher = _across(tmp_path, warm)
    configs = [searcher.suggest(f"t{i}") for i in range(24)]
    assert configs[0]["backbone"] == "mobilenet_v3_large" and configs[0]["freeze_depth"] == 6
    depths = {"resnet18": 5, "mobilenet_v3_large": 7}  # stages of each family
    for config in configs:
        assert ":" not in "".join(config)  # the trial gets plain names
        assert 0 <= config["freeze_depth"] <= depths[config["backbone"]]
        assert ("backbone_lr" in config) == (config["freeze_depth"] < depths[config["backbone"]])
    assert {c["backbone"] for c in configs} == set(depths)
    study = optuna.load_study(study_name="exp", storage=build_storage(tmp_path))
    names = {name for trial in study.trials for name in trial.params}
    assert "freeze_depth" not in names and "resnet18:freeze_depth" in names


def test_the_searcher_starts_no_trial_the_time_budget_cannot_finish(tmp_path: Path) -> None:
    from ray.tune.search import Searcher

    from search.experiment import budget

    searcher = _across(tmp_path)
    budget.start(60)
    try:
        first = searcher.suggest("t0")
        assert isinstance(first, dict)  # nothing measured yet: it starts
        for epoch in (1, 2):
            searcher.on_trial_result("t0", {**_result(epoch, 0.5), "epoch_seconds": 25.0})
        # 3 epochs of 25 s do not fit in the minute left
        assert searcher.suggest("t1") == Searcher.FINISHED
        assert budget.ended_search() and not budget.spent()
        budget.start(600)
        assert isinstance(searcher.suggest("t2"), dict)
    finally:
        budget.start(0)


def test_a_prescreen_that_keeps_one_backbone_still_starts_with_its_best_pair(
    tmp_path: Path,
) -> None:
    warm = [{"backbone": "mobilenet_v3_large", "mobilenet_v3_large:freeze_depth": 6}]
    searcher = _across(tmp_path, warm, kept=["mobilenet_v3_large"])
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert configs[0]["freeze_depth"] == 6  # the warm start, under the names it was given
    assert {c["backbone"] for c in configs} == {"mobilenet_v3_large"}  # not the first candidate
    assert all(0 <= c["freeze_depth"] <= 7 for c in configs)
