"""The report's parts that need no sweep: ASHA's rungs, the transfer gain, the importance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from search.config.settings import asha_rungs
from search.config.usage import UsageError
from search.experiment.layout import STUDY_FILE
from search.experiment.study import build_storage
from search.results.gain import reference_gain, transfer_gain
from search.results.importance import METHOD, MIN_TRIALS, param_importance


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
    groups = param_importance(
        tmp_path / STUDY_FILE, "exp", ["freeze_depth", "backbone_lr", "head_lr"]
    )
    assert not isinstance(groups, str), groups
    every, tuned = groups
    # all 12 trials over the parameters all of them have; the 10 with backbone_lr over all three
    assert (every.trials, every.params) == (12, ["freeze_depth", "head_lr"])
    assert (tuned.trials, tuned.params) == (10, ["freeze_depth", "backbone_lr", "head_lr"])
    for group in groups:
        values = group.importances
        assert isinstance(values, dict) and group.note is None, (group.label, group.note)
        assert math.isclose(sum(values.values()), 1.0, abs_tol=1e-6)
        assert max(values, key=values.get) == "freeze_depth", (group.label, values)
        # The one method shown is Optuna's default: its own call gives the same ranking.
        assert METHOD == "PED-ANOVA"


def test_importance_without_signal_says_so_in_words(tmp_path: Path) -> None:
    _study(tmp_path, trials=MIN_TRIALS, flat=True)  # every trial scores 0.5: nothing to explain
    groups = param_importance(tmp_path / STUDY_FILE, "exp", ["freeze_depth", "head_lr"])
    assert not isinstance(groups, str) and len(groups) == 1
    (group,) = groups
    assert group.importances is None
    assert group.note == "every trial scored the same: no parameter explains a difference"


def test_importance_below_the_minimum_of_trials_is_not_shown_and_says_why(
    tmp_path: Path,
) -> None:
    assert "no Optuna study" in param_importance(tmp_path / STUDY_FILE, "exp", ["head_lr"])
    _study(tmp_path, trials=MIN_TRIALS - 1)
    (group,) = param_importance(tmp_path / STUDY_FILE, "exp", ["freeze_depth", "head_lr"])
    assert group.importances is None and group.trials == MIN_TRIALS - 1
    assert group.note == (
        f"{MIN_TRIALS - 1} trials are too few for a reliable importance (it needs {MIN_TRIALS})"
    )


def _summary_at(folder: Path, best: float, **fixed: object) -> None:
    folder.mkdir()
    summary = {
        "experiment": folder.name,
        "best": {"trial_id": "t1", "val_acc": best},
        "trials": [],
        "fixed": {"data": "digits", "backbone": "resnet18", "seed": 0, **fixed},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def test_a_reference_experiment_gives_the_transfer_gain_and_names_what_differs(
    tmp_path: Path,
) -> None:
    _summary_at(tmp_path / "scratch", 0.35, weights="none")
    fixed = {"data": "digits", "backbone": "resnet18", "seed": 0, "weights": "source"}
    ours = {"best": {"trial_id": "a", "val_acc": 0.6}, "trials": [], "fixed": fixed}
    gain = reference_gain(ours, tmp_path / "scratch")
    assert gain["title"] == "Transfer gain" and gain["gain"] == pytest.approx(0.25)
    assert "scratch" in gain["reference"] and "'none'" in gain["reference"]
    assert gain["differences"] == []  # only the weights differ: a fair reference
    _summary_at(tmp_path / "other", 0.5, weights="none", seed=3)
    assert gain_differences(ours, tmp_path / "other") == ["seed 3 vs 0"]
    with pytest.raises(UsageError, match=r"no summary\.json"):
        reference_gain(ours, tmp_path / "missing")


def gain_differences(ours: dict, other: Path) -> list[str]:
    return reference_gain(ours, other)["differences"]


def test_the_page_escapes_what_it_shows(tmp_path: Path) -> None:
    """report.html is rendered by an autoescaping template: text from a trial's error or
    another experiment's settings cannot become markup."""
    from search.results.report import render_report

    (tmp_path / "summary.json").write_text("{}")  # the page's date is this file's
    trial = {
        "trial_id": "a1", "number": 1, "path": "t1", "status": "ERROR", "stop_reason": "error",
        "epochs": 1, "val_acc": 0.2, "best_val_acc": 0.2, "config": {"head_lr": 0.01},
        "error": "ValueError: <script>alert(1)</script>",
    }  # fmt: skip
    summary = {
        "experiment": "x", "space": "resnet_small", "fixed": {"data": "<b>digits</b>"},
        "budget": {"num_samples": 1, "max_epochs": 3, "trial_epochs_run": 1},
        "trials": [trial], "best": None,
    }  # fmt: skip
    gain = {
        "title": "Transfer gain", "gain": 0.1, "ours": "ours", "ours_value": 0.3,
        "reference": "theirs", "reference_value": 0.2, "is_linear_probe": False,
        "differences": ["data '<i>cifar10</i>' vs 'digits'"],
    }  # fmt: skip
    page = render_report(tmp_path, summary, {}, gain, "no <study>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>digits</b>" not in page and "<i>cifar10</i>" not in page
    assert "<b>not comparable:</b> data &#39;&lt;i&gt;cifar10&lt;/i&gt;&#39;" in page
    assert "Not computed: no &lt;study&gt;." in page
    assert "<td" in page and page.count("<tr") == 2  # the head and the one trial
