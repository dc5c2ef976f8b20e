"""How far a search's numbers can be trusted: Wilson intervals, ties with the best, and the
warnings a finished search gives (search.results.trust), on summaries built by hand."""

from __future__ import annotations

import pytest

from search.results.trust import add_intervals, detectable_difference, trust_warnings, wilson


def _trial(best: float, last: float | None = None, epochs: int = 4, missed: int = 0) -> dict:
    return {
        "best_val_acc": best,
        "val_acc": best if last is None else last,
        "best_epoch": 2,
        "epochs": epochs,
        "classes_missed": missed,
    }


def _summary(*trials: dict) -> dict:
    ranked = sorted(trials, key=lambda t: -t["best_val_acc"])
    return {"best": {"val_acc": ranked[0]["best_val_acc"]}, "trials": ranked}


def test_wilson_matches_known_intervals() -> None:
    # Wilson's score interval at 95 %: 50 of 100, and 0 of 10 (the textbook values).
    assert wilson(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(1.0, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    low, high = wilson(0.8, 1000)
    assert 0.77 < low < 0.8 < high < 0.83  # narrows with more images
    assert wilson(0.5, 0) == (0.0, 1.0)  # nothing measured: nothing known


def test_detectable_difference_shrinks_with_the_validation_set() -> None:
    small, large = detectable_difference(0.6, 25), detectable_difference(0.6, 2500)
    assert small == pytest.approx(10 * large, rel=1e-6)
    assert 0.25 < small < 0.3


def test_trials_overlapping_the_best_are_ties() -> None:
    summary = _summary(_trial(0.90), _trial(0.86), _trial(0.50))
    add_intervals(summary, [50, 50])
    assert summary["val_images"] == 100
    best, runner_up, last = summary["trials"]
    assert summary["best"]["val_acc_interval"] == best["val_acc_interval"]
    low, high = best["val_acc_interval"]
    assert low < 0.9 < high
    assert best["tie_with_best"] and runner_up["tie_with_best"] and not last["tie_with_best"]


def test_a_sound_result_gets_no_warning() -> None:
    summary = _summary(_trial(0.95), _trial(0.70), _trial(0.40))
    add_intervals(summary, [200, 200, 200])
    assert trust_warnings(summary, [200, 200, 200]) == []


def test_a_best_within_noise_of_chance_is_told() -> None:
    # 3 balanced classes, 9 validation images: 4 right (0.44) is not clearly above 1/3.
    summary = _summary(_trial(4 / 9), _trial(3 / 9))
    add_intervals(summary, [3, 3, 3])
    warnings = trust_warnings(summary, [3, 3, 3])
    assert any("within noise of chance (0.333" in w for w in warnings), warnings
    # Chance is the largest class's share: 0.6 of 10 images is no better than always "a".
    summary = _summary(_trial(0.6), _trial(0.5))
    add_intervals(summary, [6, 2, 2])
    assert any("chance (0.600" in w for w in trust_warnings(summary, [6, 2, 2]))


def test_too_few_images_to_rank_the_trials_is_told_with_the_detectable_difference() -> None:
    summary = _summary(_trial(0.80), _trial(0.75), _trial(0.30))
    add_intervals(summary, [20, 20])
    (warning,) = [w for w in trust_warnings(summary, [20, 20]) if "separate only" in w]
    assert f"about {detectable_difference(0.8, 40):.2f}" in warning
    assert "runner-up is 0.050 behind and 1 trial ties" in warning


def test_a_collapse_after_the_best_epoch_and_a_class_never_predicted_are_told() -> None:
    summary = _summary(_trial(0.90, last=0.40, missed=2), _trial(0.50))
    add_intervals(summary, [100, 100, 100])
    warnings = trust_warnings(summary, [100, 100, 100])
    assert any("fell from 0.900 (epoch 2) to 0.400 (epoch 4)" in w for w in warnings), warnings
    assert any("predicts 2 of the 3 classes for no validation image" in w for w in warnings)


def test_a_search_without_results_has_no_intervals_and_no_warnings() -> None:
    summary = {"best": None, "trials": [{"best_val_acc": None}]}
    add_intervals(summary, [5, 5])
    assert summary["trials"][0]["val_acc_interval"] is None
    assert trust_warnings(summary, [5, 5]) == []
