"""The report's parts that need no sweep: ASHA's rungs, the transfer gain, the importance."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from search.importance import EVALUATORS, MIN_TRIALS, param_importance
from search.optuna_bridge import STUDY_FILE, build_storage
from search.report import asha_rungs, transfer_gain


@pytest.mark.parametrize(
    ("grace", "factor", "max_epochs", "rungs"),
    [(1, 3, 9, [1, 3]), (1, 2, 3, [1, 2]), (2, 3, 20, [2, 6, 18]), (3, 3, 3, [])],
)
def test_asha_rungs(grace: int, factor: int, max_epochs: int, rungs: list[int]) -> None:
    assert asha_rungs(grace, factor, max_epochs) == rungs


def _trial(trial_id: str, depth: int, best: float | None) -> dict:
    return {"trial_id": trial_id, "config": {"freeze_depth": depth}, "best_val_acc": best}


def test_transfer_gain_is_measured_against_the_best_linear_probe() -> None:
    trials = [_trial("a", 3, 0.7), _trial("b", 5, 0.6), _trial("c", 5, 0.55), _trial("d", 0, None)]
    summary = {"best": {"trial_id": "a", "val_acc": 0.7}, "trials": trials}
    gain = transfer_gain(summary, full_depth=5)
    assert gain is not None and "b" in gain["reference"] and "a" in gain["ours"]
    assert gain["gain"] == pytest.approx(0.1)
    # The best trial is a linear probe: fine-tuning's gain is negative, not zero.
    probe_first = [_trial("b", 5, 0.8), *trials]
    gain = transfer_gain({"best": {"val_acc": 0.8}, "trials": probe_first}, full_depth=5)
    assert gain is not None and gain["gain"] == pytest.approx(-0.1)
    no_probe = {"best": summary["best"], "trials": [trials[0], trials[3]]}
    assert transfer_gain(no_probe, full_depth=5) is None


def _study(folder: Path, trials: int, flat: bool = False) -> None:
    """A study as the search writes it: freeze_depth and head_lr always, backbone_lr unless
    every stage is frozen (5), each epoch an intermediate value, most trials PRUNED."""
    study = optuna.create_study(
        study_name="exp", storage=build_storage(folder), direction="maximize"
    )
    for n in range(trials):
        depth = n % 6
        params = {"freeze_depth": depth, "head_lr": 10 ** (-3 + n % 4)}
        distributions = {
            "freeze_depth": IntDistribution(0, 5),
            "head_lr": FloatDistribution(1e-4, 1, log=True),
        }
        if depth < 5:
            params["backbone_lr"] = 10 ** (-4 + n % 3)
            distributions["backbone_lr"] = FloatDistribution(1e-5, 1e-1, log=True)
        # accuracy rises with freeze depth only: it should come out as the important one
        curve = {1: 0.3, 2: 0.5} if flat else {1: 0.3 + 0.1 * depth, 2: 0.32 + 0.1 * depth}
        state = optuna.trial.TrialState.COMPLETE if n % 3 == 0 else optuna.trial.TrialState.PRUNED
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=distributions, intermediate_values=curve,
                state=state, value=max(curve.values()) if n % 3 == 0 else None,
            )
        )  # fmt: skip


def test_importance_scores_every_trial_that_reported(tmp_path: Path) -> None:
    _study(tmp_path, trials=12)
    params = ["freeze_depth", "backbone_lr", "head_lr"]
    result = param_importance(tmp_path / STUDY_FILE, "exp", params)
    assert not isinstance(result, str), result
    assert result.trials == 10 and result.left_out == 2  # trials 5 and 11 are linear probes
    assert set(result.by_method) == set(EVALUATORS)
    fanova = next(v for k, v in result.by_method.items() if k.startswith("fANOVA"))
    assert math.isclose(sum(fanova.values()), 1.0, abs_tol=1e-6)
    assert max(fanova, key=fanova.get) == "freeze_depth"


def test_importance_says_why_it_is_missing(tmp_path: Path) -> None:
    assert "no Optuna study" in param_importance(tmp_path / STUDY_FILE, "exp", ["head_lr"])
    _study(tmp_path, trials=MIN_TRIALS - 1)
    reason = param_importance(tmp_path / STUDY_FILE, "exp", ["freeze_depth", "head_lr"])
    assert isinstance(reason, str) and f"at least {MIN_TRIALS}" in reason


def test_an_evaluator_that_finds_no_variance_says_so_instead_of_failing(tmp_path: Path) -> None:
    _study(tmp_path, trials=8, flat=True)  # every trial scores 0.5: nothing to explain
    result = param_importance(tmp_path / STUDY_FILE, "exp", ["freeze_depth", "head_lr"])
    assert not isinstance(result, str)
    fanova = next(v for k, v in result.by_method.items() if k.startswith("fANOVA"))
    assert isinstance(fanova, str) and "variance" in fanova
