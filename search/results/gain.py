"""The transfer gain a report shows: the best fine-tuned trial against the best linear probe
of the same search, or against another experiment's best (`scripts/report.py --reference`,
e.g. a search from scratch), naming every setting that makes the two not comparable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.config.settings import METRIC
from search.config.usage import UsageError
from search.experiment.outcomes import trial_label
from search.experiment.storage import read_summary

# Settings two experiments must share for one's best val_acc to be a reference for the other's
COMPARABLE = ("data", "backbone", "image_size", "shots", "val_fraction", "seed", "max_epochs")


def transfer_gain(summary: dict, full_depth: int | None) -> dict[str, Any] | None:
    """Fine-tuning against the linear probe: the best trial that trained some backbone stage
    against the best with every stage frozen. When the best trial fine-tunes, that is the best
    trial against the best linear probe. None without both kinds of trial in the sweep."""
    reported = [t for t in summary["trials"] if t["best_val_acc"] is not None]
    probes = [t for t in reported if t["config"].get("freeze_depth") == full_depth]
    tuned = [t for t in reported if t["config"].get("freeze_depth") != full_depth]
    if full_depth is None or not probes or not tuned:
        return None
    probe = max(probes, key=lambda t: t["best_val_acc"])
    best = max(tuned, key=lambda t: t["best_val_acc"])
    return {
        "ours": f"best fine-tuned trial {trial_label(best.get('number'), best['trial_id'])}",
        "ours_value": best["best_val_acc"],
        "reference": f"best linear probe {trial_label(probe.get('number'), probe['trial_id'])}",
        "reference_value": probe["best_val_acc"],
        "gain": best["best_val_acc"] - probe["best_val_acc"],
        "is_linear_probe": True,  # the reference is in this sweep: drawn on its scatter plots
        "title": "Fine-tuning vs linear probe",
        "differences": [],
    }


def reference_gain(summary: dict, other: Path) -> dict[str, Any]:
    """The best trial against the best of another experiment (e.g. one run with --weights
    none: training from scratch)."""
    theirs = read_summary(other)
    if not theirs or not theirs.get("best"):
        raise UsageError(f"--reference {other} has no summary.json with a best trial")
    if summary.get("best") is None:
        raise UsageError("this experiment has no best trial to compare")
    ours_fixed, their_fixed = summary.get("fixed", {}), theirs.get("fixed", {})
    weights = their_fixed.get("weights", "?")
    differences = [
        f"{key} {their_fixed.get(key)!r} vs {ours_fixed.get(key)!r}"
        for key in COMPARABLE
        if their_fixed.get(key) != ours_fixed.get(key)
    ]
    return {
        "ours": "best trial "
        + trial_label(summary["best"].get("number"), summary["best"]["trial_id"]),
        "ours_value": summary["best"][METRIC],
        "reference": f"experiment {theirs['experiment']}'s best (weights {weights!r})",
        "reference_value": theirs["best"][METRIC],
        "gain": summary["best"][METRIC] - theirs["best"][METRIC],
        "is_linear_probe": False,
        "title": "Transfer gain",
        # what else differs between the two searches besides the weights, named on the page
        "differences": differences,
    }
