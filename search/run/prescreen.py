"""The pre-screen of `--backbones`: before the first trial, a cheap probe of every candidate
backbone at every freeze depth the feature cache can hold (trainable.probe), which

- prints the ranking in seconds,
- drops the backbones clearly behind: a backbone whose best probe score trails the best
  backbone's by more than the validation set can tell apart (the margin ASHA's rungs use,
  search.results.trust.detectable_difference) is not searched,
- warm-starts the searcher: its first trials are the best (backbone, freeze_depth) pairs,
  their learning rates sampled as usual.

The probes read frozen features only; a backbone that is weak frozen but strong fine-tuned is
what a probe cannot see, so the drop rule keeps everything within noise of the best, and
the report shows how far the probe's ranking agreed with the trials' (Kendall's tau).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.config.settings import SearchSettings
from search.experiment.layout import PRESCREEN_FILE
from search.experiment.study import study_param
from search.results.trust import detectable_difference
from trainable.catalog import NONE
from trainable.config import TrialConfig
from trainable.data import TransferData
from trainable.files import write_json_atomically

# Trials the pre-screen's best pairs take at the start of the search: a quarter of the budget,
# 1 to 3 (TPE's random start-up trials are the rest of its first third).
MAX_WARM_START = 3


@dataclass
class Prescreen:
    """What the pre-screen found and decided; `prescreen.json` and summary.json's `prescreen`."""

    scores: list[dict[str, Any]]  # per (backbone, freeze_depth): knn_acc, ridge_acc, score
    kept: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # backbone: why
    warm_start: list[dict[str, Any]] = field(default_factory=list)  # backbone, freeze_depth
    seconds: float = 0.0
    rule: str = ""

    def best_scores(self) -> dict[str, float]:
        """Each backbone's best probe score, best first."""
        best: dict[str, float] = {}
        for row in self.scores:
            best[row["backbone"]] = max(best.get(row["backbone"], 0.0), row["score"])
        return dict(sorted(best.items(), key=lambda item: -item[1]))

    def study_params(self) -> list[dict[str, Any]]:
        """The warm-start trials as the study names their parameters."""
        return [
            {
                "backbone": w["backbone"],
                study_param(w["backbone"], "freeze_depth"): w["freeze_depth"],
            }
            for w in self.warm_start
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def warm_start_count(num_samples: int) -> int:
    """Trials the pre-screen's best pairs start the search with."""
    return max(1, min(MAX_WARM_START, num_samples // 4))


def decide(scores: list[dict[str, Any]], val_images: int, num_samples: int) -> Prescreen:
    """Rank, drop the backbones clearly behind, and pick the warm-start pairs."""
    screen = Prescreen(scores, [])
    best = screen.best_scores()
    top_name, top = next(iter(best.items()))
    margin = detectable_difference(top, val_images)
    screen.rule = (
        f"a backbone whose best probe score trails {top_name}'s {top:.3f} by more than "
        f"{margin:.3f} ({val_images} validation images can tell that apart) is not searched"
    )
    for name, score in best.items():
        if top - score > margin:
            screen.dropped[name] = f"probe {score:.3f}, {top - score:.3f} behind {top_name}"
        else:
            screen.kept.append(name)
    ranked = sorted(
        (row for row in scores if row["backbone"] in screen.kept), key=lambda row: -row["score"]
    )
    screen.warm_start = [
        {"backbone": row["backbone"], "freeze_depth": row["freeze_depth"]}
        for row in ranked[: warm_start_count(num_samples)]
    ]
    return screen


def run_prescreen(
    settings: SearchSettings,
    fixed: TrialConfig,
    data: TransferData,
    states: dict[str, dict | None],
) -> Prescreen | None:
    """Probe every candidate, print the ranking and what it decides; None when there is
    nothing to screen (one backbone, --no-prescreen, or random weights: their frozen stages
    are no features to rank)."""
    if not settings.searches_backbone or not settings.prescreen:
        return None
    if settings.weights == NONE:
        print("Pre-screen skipped: with --weights none every stage trains from random weights")
        return None
    from trainable.probe import probe_scores  # torch: after the flags are checked

    began = time.monotonic()
    print(f"Pre-screen: probing {', '.join(settings.candidates)} on frozen features ...")
    scores = []
    for backbone in settings.candidates:
        cfg = dataclasses.replace(fixed, backbone=backbone)
        for score in probe_scores(cfg, data, states.get(backbone)):
            scores.append({
                "backbone": score.backbone, "freeze_depth": score.freeze_depth,
                "knn_acc": round(score.knn_acc, 4), "ridge_acc": round(score.ridge_acc, 4),
                "score": round(score.score, 4), "seconds": round(score.seconds, 2),
            })  # fmt: skip
    if not scores:
        print("Pre-screen: no frozen prefix could be probed; every backbone is searched")
        return None
    screen = decide(scores, len(data.val), settings.num_samples)
    screen.seconds = round(time.monotonic() - began, 1)
    print(format_prescreen(screen))
    return screen


def format_prescreen(screen: Prescreen) -> str:
    """The ranking (each backbone's best depth), what was dropped and why, the warm start."""
    lines = [f"Pre-screen ({screen.seconds:.0f} s): backbone  best depth  kNN  ridge  score"]
    for name, score in screen.best_scores().items():
        row = max((r for r in screen.scores if r["backbone"] == name), key=lambda r: r["score"])
        mark = "  dropped" if name in screen.dropped else ""
        lines.append(
            f"  {name:<20} {row['freeze_depth']:>3}  {row['knn_acc']:.3f}  "
            f"{row['ridge_acc']:.3f}  {score:.3f}{mark}"
        )
    lines.append(f"  Rule: {screen.rule}")
    starts = ", ".join(
        f"{w['backbone']} at freeze_depth {w['freeze_depth']}" for w in screen.warm_start
    )
    lines.append(f"  First trials: {starts}")
    return "\n".join(lines)


def write_prescreen(root: Path, screen: Prescreen) -> None:
    """prescreen.json in the experiment folder."""
    write_json_atomically(root / PRESCREEN_FILE, screen.to_dict())
