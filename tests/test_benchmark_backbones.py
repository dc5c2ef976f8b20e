"""benchmarks/backbones.py's pure parts: the searches it compares, what it reads from a
summary.json, and its tables (no search is run)."""

from __future__ import annotations

from typing import Any

from benchmarks.backbones import MULTI, format_markdown, search_result, variants


def _summary(trials: list[tuple[str | None, int, float]], fixed: str | None = None) -> dict:
    """A summary.json with (backbone, epochs, best_val_acc) trials; `fixed` when one family."""
    rows = [
        {"config": {} if b is None else {"backbone": b}, "epochs": e, "best_val_acc": a}
        for b, e, a in trials
    ]
    best = max(rows, key=lambda row: row["best_val_acc"])
    return {
        "best": {"config": best["config"], "val_acc": best["best_val_acc"], "epoch": 1},
        "trials": rows,
        "fixed": {"backbone": fixed} if fixed else {},
        "budget": {"num_samples": 3, "max_epochs": 2, "trial_epochs_run": 4},
        "prescreen": None,
    }


def test_each_family_alone_uses_its_own_space_and_the_multi_search_names_them_all() -> None:
    runs = variants(["resnet18", "efficientnet_b0"])
    assert runs == {
        MULTI: ["--backbones", "resnet18,efficientnet_b0"],
        "resnet18": ["--space", "resnet_small"],
        "efficientnet_b0": ["--space", "efficientnet"],
    }


def test_a_single_family_search_counts_its_epochs_under_its_fixed_backbone() -> None:
    result = search_result(_summary([(None, 2, 0.5), (None, 2, 0.7)], "resnet18"), 12.3)
    assert result["backbone"] == "resnet18"
    assert result["epochs_per_backbone"] == {"resnet18": 4}
    assert (result["trial_epochs_planned"], result["wall_s"]) == (6, 12.3)


def test_the_tables_show_each_seed_and_the_split_of_the_budget() -> None:
    multi = search_result(_summary([("resnet18", 2, 0.9), ("efficientnet_b0", 1, 0.4)]), 30)
    multi["prescreen"] = {"seconds": 4.0, "kendall_tau": 0.5, "pairs_compared": 4,
                          "kept": ["resnet18"], "dropped": ["efficientnet_b0"]}  # fmt: skip
    alone = {
        f: search_result(_summary([(None, 2, 0.8)], f), 20) for f in ("resnet18", "efficientnet_b0")
    }
    report: dict[str, Any] = {
        "families": ["resnet18", "efficientnet_b0"],
        "pretrain": {"resnet18": {"source_acc": 0.99, "pretrain_s": None}},
        "digits": [{"seed": 0, "searches": {MULTI: multi, **alone}}],
    }
    text = format_markdown(report)
    assert "| 0 | 0.900 (resnet18) | 0.800 | 0.800 | 4.0 | +0.50 (4) | efficientnet |" in text
    assert "| `--backbones` | 6 | 4.0 | 30 | resnet18 2, efficientnet_b0 1 |" in text
    assert "| resnet18 | 0.990 | cached |" in text
