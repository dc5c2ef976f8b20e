"""A driver killed outright (SIGKILL: no Ctrl-C, no clean-up) between checkpoints, then
--resume through the real CLI: every logged epoch once, the study in step with Tune. The fast
member of the fault matrix (scripts/chaos.py runs it at eleven moments, and more faults)."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import popen_cli, run_cli

pytestmark = pytest.mark.sweep
NUM_SAMPLES, MAX_EPOCHS = 3, 3
EXPERIMENT = ("--name", "k", "--storage-path", "runs")


def _epochs(root: Path) -> dict[str, list[int]]:
    return {
        folder.name: [json.loads(line)["epoch"] for line in folder.joinpath("result.json")
                      .read_text().splitlines()] if (folder / "result.json").is_file() else []
        for folder in root.glob("train_transfer_*")
    }  # fmt: skip


def test_a_killed_driver_resumes_with_every_logged_epoch_once(
    tmp_path: Path, cache_dir: Path
) -> None:
    root = tmp_path / "runs" / "k"
    process = popen_cli(
        "--num-samples", str(NUM_SAMPLES), "--max-epochs", str(MAX_EPOCHS),
        "--grace-period", str(MAX_EPOCHS), "--max-concurrent", "2", "--seed", "3",
        *EXPERIMENT, "--cache-dir", str(cache_dir), "--wandb", "disabled",
        cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(list(root.glob("*/checkpoint_*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # as a third checkpoint is being copied in
    process.communicate(timeout=60)
    before = _epochs(root)

    resumed = run_cli("--resume", *EXPERIMENT, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr
    summary = json.loads((root / "summary.json").read_text())
    after = _epochs(root)
    assert sorted(after) == sorted(t["path"] for t in summary["trials"])  # no stray folder
    for trial in summary["trials"]:
        epochs = after[trial["path"]]
        assert epochs == list(range(1, MAX_EPOCHS + 1)), (trial["trial_id"], epochs)
        assert set(before.get(trial["path"], [])) <= set(epochs)  # nothing logged was lost
    with sqlite3.connect(root / "optuna.db") as db:
        study = db.execute(
            "SELECT t.state, a.value_json FROM trials t JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id AND a.key = 'tune_trial_id'"
        ).fetchall()
    assert sorted(json.loads(tid) for _, tid in study) == sorted(
        t["trial_id"] for t in summary["trials"]
    )
    assert {state for state, _ in study} == {"COMPLETE"}
