"""scripts/compare_searchers.py: the budget cut on synthetic results, and its smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.searchers import budget_curve, summarise

ROOT = Path(__file__).resolve().parents[1]


def _write_results(trial_dir: Path, rows: list[tuple[int, float, int, float]]) -> None:
    trial_dir.mkdir(parents=True)
    lines = [
        json.dumps({"timestamp": ts, "time_total_s": total, "epoch": epoch, "val_acc": acc})
        for ts, total, epoch, acc in rows
    ]
    (trial_dir / "result.json").write_text("\n".join(lines) + "\n")


def test_budget_curve_is_the_best_so_far_in_arrival_order(tmp_path: Path) -> None:
    # Two trials running side by side; rows interleave by time, not by trial.
    _write_results(tmp_path / "a", [(100, 1.0, 1, 0.3), (102, 3.0, 2, 0.6), (105, 6.0, 3, 0.5)])
    _write_results(tmp_path / "b", [(101, 1.5, 1, 0.4), (102, 2.5, 2, 0.2)])
    summary = {"trials": [{"path": "a"}, {"path": "b"}]}
    # Arrival: a1 .3, b1 .4, b2 .2 (same second as a2, earlier on its clock), a2 .6, a3 .5
    assert budget_curve(tmp_path, summary) == [0.3, 0.4, 0.4, 0.6, 0.6]


def test_summarise_gives_mean_spread_and_range() -> None:
    stats = summarise([0.5, 0.7, 0.6])
    assert stats["mean"] == pytest.approx(0.6) and stats["std"] == pytest.approx(0.1)
    assert (stats["min"], stats["max"]) == (0.5, 0.7)


# Slow (over a minute: three searches): the script's smoke run, left out of the default run.
@pytest.mark.slow
@pytest.mark.sweep
def test_the_quick_comparison_runs_all_three_searchers(tmp_path: Path, cache_dir: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "compare_searchers.py")]
    flags = ["--quick", "--out", "cmp", "--cache-dir", str(cache_dir)]
    done = subprocess.run(
        [*script, *flags], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(report["methods"]) == {"bridge", "stock", "random"}
    budget = report["budget_trial_epochs"]
    assert budget == min(run["trial_epochs"] for run in report["runs"]) == 2  # 2 trials x 1
    for run in report["runs"]:
        assert 0 < run["best_at_budget"] <= run["best_overall"] <= 1
    assert "| bridge |" in done.stdout and "bridge - stock:" in done.stdout
    # The harness's bridge keeps its study; Ray's stock searcher keeps it in memory only.
    assert (tmp_path / "cmp" / "bridge-seed0" / "optuna.db").exists()
    assert not (tmp_path / "cmp" / "stock-seed0" / "optuna.db").exists()

    again = subprocess.run([*script, *flags], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
