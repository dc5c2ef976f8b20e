"""ASHA's rungs stop only trials clearly behind on the validation set (search.run.rungs), with
Ray's real scheduler driven by hand."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from search.results.trust import detectable_difference
from search.run.rungs import ClearlyBehindASHA


def _scheduler(val_images: int) -> ClearlyBehindASHA:
    scheduler = ClearlyBehindASHA(
        time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, val_images=val_images
    )
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def _decisions(scheduler: ClearlyBehindASHA, scores: list[float]) -> list[str]:
    """Each trial's first-rung decision, the trials arriving in order."""
    bracket = scheduler._brackets[0]
    return [
        bracket.on_result(SimpleNamespace(trial_id=f"t{i}"), 1, score)
        for i, score in enumerate(scores)
    ]


def test_a_rung_stops_only_trials_clearly_behind_its_cutoff() -> None:
    # Three trials learn (0.60-0.62); then one within noise of them, one clearly behind.
    scores = [0.60, 0.62, 0.61, 0.58, 0.30]
    plain = _decisions(_scheduler(0), scores)
    assert plain[3] == TrialScheduler.STOP  # Ray's ASHA: 0.02 below the cutoff is enough
    careful = _decisions(_scheduler(250), scores)
    assert careful[3] == TrialScheduler.CONTINUE  # 250 images cannot tell 0.02 apart
    assert careful[4] == TrialScheduler.STOP  # 0.31 behind: clearly worse
    # The margin is what the validation set can tell apart at the cutoff.
    bracket = _scheduler(250)._brackets[0]
    recorded = {"a": 0.60, "b": 0.62, "c": 0.61}
    plain_cut = _scheduler(0)._brackets[0].cutoff(recorded)
    assert bracket.cutoff(recorded) == plain_cut - detectable_difference(plain_cut, 250)


def test_more_validation_images_make_a_finer_rung() -> None:
    scores = [0.60, 0.62, 0.61, 0.58]
    assert _decisions(_scheduler(250), scores)[3] == TrialScheduler.CONTINUE
    assert _decisions(_scheduler(20_000), scores)[3] == TrialScheduler.STOP


def test_the_rung_benchmark_counts_wrong_stops_on_known_curves() -> None:
    from benchmarks.rungs import rung_decisions, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == 1.0  # ties share their rank
    # At epoch 1 the eventual best (index 2) lies a little behind: plain ASHA stops it.
    curves = [{1: 0.50, 2: 0.55}, {1: 0.52, 2: 0.56}, {1: 0.48, 2: 0.90}, {1: 0.20, 2: 0.20}]
    plain = rung_decisions(curves, rung=1, val_images=0)
    assert plain == {"stopped": 2, "top3_stopped": 1, "winner_stopped": True}
    careful = rung_decisions(curves, rung=1, val_images=250)
    assert careful == {"stopped": 1, "top3_stopped": 0, "winner_stopped": False}
