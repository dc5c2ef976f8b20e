"""scripts/benchmark.py: its smoke mode end to end, and its bad input (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from benchmarks.suite import format_markdown

pytestmark = pytest.mark.sweep  # it runs real trials and two small searches


@pytest.mark.slow  # about 2 minutes: every figure's code path, with small budgets
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
    # The quick search: 2 trials of up to 2 epochs; ASHA's one rung at epoch 1.
    assert 2 <= report["asha"]["trial_epochs"] <= 4
    assert report["asha_epoch_fraction"] == round(report["asha"]["trial_epochs"] / 4, 3)
    assert report["harness_breakdown"]["search"]["epochs"] > 0
    assert report["full_budget"]["trial_epochs"] == 4  # no early stopping
    # Optuna alone spends the ASHA search's trial-epochs, no more
    assert report["optuna_alone"]["trial_epochs"] == report["asha"]["trial_epochs"]
    for run in ("asha", "full_budget", "optuna_alone"):
        assert 0 < report[run]["best_val_acc"] <= 1
    for key in ("feature_cache", "augmented_cache"):
        speedup = report[f"{key}_speedup"]
        assert speedup and all(ratio > 0 for ratio in speedup.values())
        assert set(report[f"{key}_epoch_seconds"]) == set(speedup)
    # Issue 18's figures: what the harness itself costs
    lean, whole = report["checkpoint_bytes"], report["checkpoint_bytes_whole"]
    assert set(lean) == set(whole) == {str(depth) for depth in range(6)}
    assert lean["5"] < lean["4"] < lean["0"] <= whole["0"]  # the frozen stages are not stored
    assert report["experiment_mb"] > 0
    rates = report["input_pipeline_img_s"]
    assert set(rates) == {"inproc_1cpu", "workers_1cpu", "workers_2cpu"}
    assert all(rate > 0 for rate in rates.values())
    assert report["help_seconds"] > 0
    assert done.stdout.strip() == format_markdown(report)
    assert list(tmp_path.iterdir()) == [tmp_path / "b.json"]  # its runs went to a scratch folder


@pytest.mark.parametrize(
    ("flag", "error"),
    [
        ("--fast", "unrecognized arguments: --fast (see --help)"),
        ("--gpu", "--gpu needs a GPU, but torch sees none on this machine"),  # this machine's
    ],
)
def test_bad_input_is_one_line_and_exit_2(flag: str, error: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), flag],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"benchmark.py: error: {error}"]


def test_the_gpu_runs_measurement_works_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks.gpu's packed trials, tiny and on the CPU: what --gpu runs, minus the GPU."""
    from benchmarks.costs import make_jpeg_folder
    from benchmarks.gpu import measure_packing

    folder = make_jpeg_folder(tmp_path / "photos", 4, 4)
    packed = measure_packing(folder, "resnet18", 4, 2, "cpu", image_size=32, warmup=0, epochs=1,
                             cpus=2)  # fmt: skip
    assert packed["loader_workers"] == 1 and len(packed["per_trial_img_s"]) == 2
    assert packed["img_s"] > 0 and packed["gpu_util"] is None  # no nvidia-smi sampling on a CPU
    memory = measure_packing(folder, "resnet18", 4, 1, "cpu", in_memory=True, image_size=32,
                             warmup=0, epochs=1, cpus=2)  # fmt: skip
    assert memory["loader_workers"] == 0 and memory["img_s"] > 0
