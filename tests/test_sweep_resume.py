"""Ctrl-C and --resume through the real CLI: nothing lost, nothing run twice, nothing overwritten.

One sweep per session is interrupted with SIGINT while its second trial trains, then resumed;
the tests assert on its folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from helpers import popen_cli, run_cli
from optuna.trial import TrialState

NUM_SAMPLES, MAX_EPOCHS = 3, 3
pytestmark = pytest.mark.sweep


@dataclass(frozen=True)
class Interrupted:
    work: Path
    root: Path
    stopped: subprocess.CompletedProcess
    resumed: subprocess.CompletedProcess
    summary_after_stop: dict


def _epochs_done(root: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in root.glob("train_transfer_*/result.json"))


@pytest.fixture(scope="session")
def interrupted(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Interrupted:
    """3 trials of 3 epochs, one at a time: SIGINT 3 s into trial 2; then --resume, during
    which the trial's worker process is killed (SIGKILL) once after its next epoch."""
    work = tmp_path_factory.mktemp("resume")
    process = popen_cli(
        "--num-samples", str(NUM_SAMPLES), "--max-epochs", str(MAX_EPOCHS),
        "--grace-period", "1", "--reduction-factor", "2", "--max-concurrent", "1",
        "--name", "r", "--storage-path", "runs", "--cache-dir", str(cache_dir),
        "--wandb", "disabled",
        cwd=work,
    )  # fmt: skip
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if f"trial  2/{NUM_SAMPLES}" in line and "started" in line:
            break
    time.sleep(3)  # into the trial's first epochs
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    stopped = subprocess.CompletedProcess(
        process.args, process.returncode, "".join(seen) + out, err
    )
    root = work / "runs" / "r"
    summary_after_stop = json.loads((root / "summary.json").read_text())

    before = _epochs_done(root)
    process = popen_cli("--resume", "--name", "r", "--storage-path", "runs", cwd=work)
    deadline = time.monotonic() + 300
    while _epochs_done(root) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["pkill", "-KILL", "-f", "ray::ImplicitFunc"], check=False)
    out, err = process.communicate(timeout=600)
    resumed = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return Interrupted(work, root, stopped, resumed, summary_after_stop)


def test_ctrl_c_stops_with_exit_130_and_the_resume_command(interrupted: Interrupted) -> None:
    stopped = interrupted.stopped
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Resume with:  python scripts/search.py --resume --name r --storage-path runs" in (
        stopped.stderr
    )
    assert "Traceback" not in stopped.stdout + stopped.stderr
    reasons = [t["stop_reason"] for t in interrupted.summary_after_stop["trials"]]
    assert "interrupted" in reasons and len(reasons) < NUM_SAMPLES + 1


def test_resume_finishes_exactly_the_planned_trials(interrupted: Interrupted) -> None:
    resumed = interrupted.resumed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming experiment runs/r:" in resumed.stdout
    # The worker killed mid-resume: the trial restarted from its checkpoint and finished.
    assert "retrying from its last checkpoint" in resumed.stdout
    summary = json.loads((interrupted.root / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == NUM_SAMPLES
    assert len({t["trial_id"] for t in trials}) == NUM_SAMPLES
    assert len({json.dumps(t["config"], sort_keys=True) for t in trials}) == NUM_SAMPLES
    assert all(t["stop_reason"] in ("completed", "asha") for t in trials), trials
    for trial in trials:  # interrupted, then killed: resumed from checkpoints, no epoch twice
        rows = (interrupted.root / trial["path"] / "result.json").read_text().splitlines()
        epochs = [json.loads(row)["epoch"] for row in rows]
        assert epochs == list(range(1, trial["epochs"] + 1)), (trial["trial_id"], epochs)


def test_the_study_holds_each_trial_once(interrupted: Interrupted) -> None:
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{interrupted.root / 'optuna.db'}")
    summary = json.loads((interrupted.root / "summary.json").read_text())
    assert len(study.trials) == NUM_SAMPLES
    assert {t.user_attrs["tune_trial_id"] for t in study.trials} == {
        t["trial_id"] for t in summary["trials"]
    }
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def test_resuming_a_finished_experiment_only_rebuilds_its_summary(
    interrupted: Interrupted,
) -> None:
    trial_dirs = sorted(p.name for p in interrupted.root.glob("train_transfer_*"))
    again = run_cli("--resume", "--name", "r", "--storage-path", "runs", cwd=interrupted.work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"0 of {NUM_SAMPLES} trials to finish" in again.stdout
    assert sorted(p.name for p in interrupted.root.glob("train_transfer_*")) == trial_dirs
    summary = json.loads((interrupted.root / "summary.json").read_text())
    assert len(summary["trials"]) == NUM_SAMPLES


def test_a_truncated_state_file_stops_resume_and_nothing_is_overwritten(
    interrupted: Interrupted,
) -> None:
    copy = interrupted.work / "elsewhere" / "r"
    shutil.copytree(interrupted.root, copy)
    newest = sorted(copy.glob("experiment_state-*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    done = run_cli("--resume", "--name", "r", "--storage-path", "elsewhere", cwd=interrupted.work)
    assert done.returncode == 2
    assert f"the newest experiment state {newest.name} is damaged" in done.stderr
    assert "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
