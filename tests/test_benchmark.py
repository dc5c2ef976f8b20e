"""scripts/benchmark.py: its smoke mode end to end, and its bad input (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from search.benchmark import format_markdown

pytestmark = pytest.mark.sweep  # it runs real trials and two small searches


def test_the_quick_benchmark_writes_every_figure(tmp_path: Path, cache_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick",
         "--json", str(tmp_path / "b.json"), "--cache-dir", str(cache_dir)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "b.json").read_text())
    for name, variants in (("trial_logging", {"summaries", "none"}),
                           ("wandb_sweep", {"offline", "disabled"}),
                           ("harness", {"search", "plain_loop"})):  # fmt: skip
        assert report[f"{name}_overhead_ratio"] > 0
        assert set(report[f"{name}_seconds"]) == variants
    # The quick search: 3 trials of up to 2 epochs; ASHA's one rung at epoch 1.
    assert 3 <= report["asha"]["trial_epochs"] <= 6
    assert report["asha_epoch_fraction"] == round(report["asha"]["trial_epochs"] / 6, 3)
    assert report["harness_breakdown"]["search"]["epochs"] > 0
    assert report["full_budget"]["trial_epochs"] == 6  # no early stopping
    # Optuna alone spends the ASHA search's trial-epochs, no more
    assert report["optuna_alone"]["trial_epochs"] == report["asha"]["trial_epochs"]
    for run in ("asha", "full_budget", "optuna_alone"):
        assert 0 < report[run]["best_val_acc"] <= 1
    for key in ("feature_cache", "image_feature_cache"):
        speedup = report[f"{key}_speedup"]
        assert speedup and all(ratio > 0 for ratio in speedup.values())
        assert set(report[f"{key}_epoch_seconds"]) == set(speedup)
    assert done.stdout.strip() == format_markdown(report)
    assert list(tmp_path.iterdir()) == [tmp_path / "b.json"]  # its runs went to a scratch folder


def test_an_unknown_flag_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--fast"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "benchmark.py: error: unrecognized arguments: --fast (see --help)"
    ]
