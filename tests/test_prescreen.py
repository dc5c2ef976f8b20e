"""The pre-screen's decisions (search.run.prescreen.decide): which backbones it keeps, why it
drops one, and the pairs the search starts with."""

from __future__ import annotations

from search.run.prescreen import decide, format_prescreen


def _row(backbone: str, depth: int, score: float) -> dict:
    return {"backbone": backbone, "freeze_depth": depth, "knn_acc": score, "ridge_acc": score,
            "score": score, "seconds": 0.1}  # fmt: skip


def test_a_backbone_clearly_behind_is_dropped_and_the_best_pairs_start_the_search() -> None:
    scores = [_row("a", 1, 0.80), _row("a", 2, 0.90), _row("b", 1, 0.87), _row("c", 3, 0.60)]
    screen = decide(scores, val_images=250, num_samples=16)
    # 250 images tell apart about 0.07 near 0.9: b (0.03 behind) stays, c (0.30) goes
    assert screen.kept == ["a", "b"]
    assert list(screen.dropped) == ["c"] and "0.300 behind a" in screen.dropped["c"]
    assert screen.warm_start == [
        {"backbone": "a", "freeze_depth": 2},
        {"backbone": "b", "freeze_depth": 1},
        {"backbone": "a", "freeze_depth": 1},
    ]
    assert screen.study_params()[0] == {"backbone": "a", "a:freeze_depth": 2}
    text = format_prescreen(screen)
    assert "dropped" in text.splitlines()[3] and text.count("\n") == 5


def test_few_validation_images_drop_nothing() -> None:
    scores = [_row("a", 1, 0.9), _row("b", 1, 0.6)]
    screen = decide(scores, val_images=6, num_samples=4)  # 6 images: about 0.3 is noise
    assert screen.kept == ["a", "b"] and not screen.dropped
    assert len(screen.warm_start) == 1  # a quarter of 4 trials
