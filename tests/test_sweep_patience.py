"""--patience through the real CLI: trials stop on their plateau alongside ASHA, and the
console, summary.json, the Optuna study, TensorBoard, W&B (offline) and the report agree."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from helpers import run_cli
from readers import read_board, read_wandb_run

from search.tracking.tensorboard import STOP_CODES
from trainable import metrics

pytestmark = pytest.mark.sweep


def test_patience_stops_trials_on_their_plateau_and_every_view_says_so(
    tmp_path: Path, cache_dir: Path
) -> None:
    # ASHA's first rung at the last epoch: only --patience can stop a trial early here.
    done = run_cli(
        "--num-samples", "3", "--max-epochs", "6", "--grace-period", "6", "--patience", "1",
        "--max-concurrent", "2", "--name", "calm", "--storage-path", "runs",
        "--cache-dir", str(cache_dir), "--wandb", "offline",  # the session's pretrained backbone
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "runs" / "calm"
    summary = json.loads((root / "summary.json").read_text())
    stopped = [t for t in summary["trials"] if t["stop_reason"] == "plateau"]
    assert stopped, [t["stop_reason"] for t in summary["trials"]]
    study = optuna.load_study(study_name="calm", storage=f"sqlite:///{root / 'optuna.db'}")
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    board = read_board(root)
    runs = {r.run_id: r for r in map(read_wandb_run, root.glob("wandb/offline-run-*"))}
    for trial in stopped:
        rows = metrics.result_rows(root / trial["path"])
        scores = [row[metrics.VAL_ACC] for row in rows]
        # One epoch without a better val_acc than the best before it, then no more.
        assert trial["epochs"] == len(rows) < 6 and scores[-1] <= max(scores[:-1])
        assert [row.get(metrics.PLATEAU) for row in rows][-1] == 1
        assert f"({trial['trial_id']}) stopped on a plateau (--patience) after {len(rows)}/6" in (
            done.stdout
        )
        # The study: COMPLETE with its best value, its curve kept, the reason recorded.
        study_trial = by_id[trial["trial_id"]]
        assert study_trial.state == optuna.trial.TrialState.COMPLETE
        assert study_trial.value == pytest.approx(trial["best_val_acc"])
        assert study_trial.user_attrs["stop_reason"] == "plateau"
        assert sorted(study_trial.intermediate_values) == list(range(1, len(rows) + 1))
        assert board.sessions[trial["path"]].last["stop_reason"] == STOP_CODES["plateau"]
        assert runs[trial["trial_id"]].summary["stop_reason"] == "plateau"
    assert "(--patience stopped the rest)" in done.stdout or "and --patience stopped" in done.stdout
    assert "plateau" in (root / "report.html").read_text()
