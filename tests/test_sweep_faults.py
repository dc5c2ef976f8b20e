"""A diverged trial through the real CLI: it fails alone, and the sweep goes on.

A killed worker process is tested during the resumed sweep of test_sweep_resume.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from helpers import popen_cli
from optuna.trial import TrialState

from benchmarks.efficiency import replay, trials_run

pytestmark = pytest.mark.sweep
HOOKS = Path(__file__).resolve().parent / "hooks"


def test_a_diverged_trial_ends_as_error_and_the_sweep_goes_on(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hook = {"PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")])}
    process = popen_cli(
        "--space", "diverging", "--num-samples", "2", "--max-epochs", "1",
        "--max-concurrent", "1", "--name", "nan",  # --max-failures 1: one retry
        "--cache-dir", str(cache_dir), "--wandb", "disabled",
        cwd=tmp_path, env=hook,
    )  # fmt: skip
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "runs" / "nan" / "summary.json").read_text())
    diverged = [t for t in summary["trials"] if t["config"]["head_lr"] > 1]
    healthy = [t for t in summary["trials"] if t["config"]["head_lr"] < 1]
    assert diverged and healthy, "seed 0 draws both head learning rates in its first two trials"
    for trial in diverged:
        assert trial["stop_reason"] == "error" and trial["status"] == "ERROR"
        assert "DivergedError: train_loss is" in trial["error"], trial["error"]
        # Retried once (the default --max-failures), the trial failed at once, untrained.
        assert "(in an earlier attempt; not retrained)" in trial["error"], trial["error"]
    assert all(t["stop_reason"] == "completed" for t in healthy)
    assert summary["best"]["trial_id"] in {t["trial_id"] for t in healthy}
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path}/runs/nan/optuna.db")
    states = {t.user_attrs["tune_trial_id"]: t.state for t in study.trials}
    assert {states[t["trial_id"]] for t in diverged} == {TrialState.FAIL}
    assert "Traceback" not in out + err
    # The benchmark's plain loop replays this search: the diverged trial until it diverges.
    replay(tmp_path / "runs" / "nan", str(cache_dir))
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["epoch_seconds"] > 0
    assert [failed for _, _, failed in trials_run(tmp_path / "runs" / "nan")].count(True) == 1
