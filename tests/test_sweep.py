"""A local-CPU mini sweep through the real CLI: Ray Tune, Optuna, ASHA, TensorBoard, W&B offline.

The sweep runs once per session (fixture `sweep`); each test asserts on its experiment folder.
What TensorBoard and W&B show of it is tested in test_sweep_browse.py.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from helpers import CANARY_KEY, SWEEP_EPOCHS, SWEEP_SAMPLES, Sweep, run_cli
from optuna.trial import TrialState

from trainable.checkpoint import CHECKPOINT_FILE
from trainable.config import TRIAL_NUMBER, TrialConfig

pytestmark = pytest.mark.sweep


def test_the_sweep_succeeds_and_reports_the_best_trial(sweep: Sweep) -> None:
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    out = sweep.stdout
    assert "Best: trial" in out and "checkpoint: runs/mini/" in out
    assert "python scripts/board.py runs/mini" in out
    assert "wandb sync runs/mini/wandb/offline-run-*" in out
    assert "optuna-dashboard sqlite:///runs/mini/optuna.db" in out
    assert "Traceback" not in out + sweep.stderr
    assert (
        "ASHA compares trials at epoch 1, 2 (6 optimizer steps per epoch); a rung stops a trial "
        "only when it trails the best 1/2 by more than 250 validation images can tell apart "
        "(about 0.09 in val_acc at 0.5)"
    ) in out
    assert len(out.splitlines()) < 60, "the console output should stay concise"


def test_summary_lists_every_trial_with_why_it_stopped(sweep: Sweep) -> None:
    s = sweep.summary
    assert (s["experiment"], s["space"], s["metric"], s["mode"]) == (
        "mini", "resnet_small", "val_acc", "max",
    )  # fmt: skip
    assert len(s["trials"]) == SWEEP_SAMPLES
    assert len({t["trial_id"] for t in s["trials"]}) == SWEEP_SAMPLES
    for t in s["trials"]:
        assert set(t["config"]) == {"freeze_depth", "backbone_lr", "head_lr"}
        assert t["stop_reason"] in ("completed", "asha", "error")
        if t["stop_reason"] == "completed":
            assert t["epochs"] == SWEEP_EPOCHS and t["status"] == "TERMINATED"
        if t["stop_reason"] == "asha":
            assert 1 <= t["epochs"] < SWEEP_EPOCHS and t["status"] == "TERMINATED"
    ranked = [t["best_val_acc"] or 0 for t in s["trials"]]
    assert ranked == sorted(ranked, reverse=True)
    assert s["best"]["trial_id"] == s["trials"][0]["trial_id"]
    assert s["best"]["val_acc"] == max(ranked)
    assert s["budget"]["trial_epochs_run"] == sum(t["epochs"] for t in s["trials"])


def test_asha_stopped_trials_that_trailed_at_a_rung(sweep: Sweep) -> None:
    stopped = [t for t in sweep.summary["trials"] if t["stop_reason"] == "asha"]
    assert stopped, "with 6 trials and reduction factor 2, ASHA should stop some"
    for trial in stopped:
        rung = trial["epochs"]  # ASHA stops a trial right after the result of a rung epoch
        own = _val_acc_at(sweep.root / trial["path"], rung)
        others = [
            _val_acc_at(sweep.root / t["path"], rung)
            for t in sweep.summary["trials"]
            if t["trial_id"] != trial["trial_id"] and t["epochs"] >= rung
        ]
        assert others and own < max(others), f"{trial['trial_id']} led rung {rung} yet stopped"


def _val_acc_at(trial_dir: Path, epoch: int) -> float:
    for line in (trial_dir / "result.json").read_text().splitlines():
        row = json.loads(line)
        if row["epoch"] == epoch:
            return row["val_acc"]
    raise AssertionError(f"no epoch {epoch} in {trial_dir}")


def test_best_checkpoint_loads_with_weights_only(sweep: Sweep) -> None:
    best = sweep.summary["best"]
    checkpoint = torch.load(sweep.root / best["checkpoint"] / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["epoch"] == best["epoch"]
    for key, value in best["config"].items():  # backbone_lr is None in a linear probe
        assert checkpoint["config"][key] == (value if value is None else pytest.approx(value))
    assert "fc.weight" in checkpoint["model"]


def test_trials_are_numbered_one_to_n_in_the_order_they_were_made(sweep: Sweep) -> None:
    numbers = [t["number"] for t in sweep.summary["trials"]]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert sweep.summary["best"]["number"] in numbers


def test_every_trial_params_json_is_a_complete_recipe(sweep: Sweep) -> None:
    for trial in sweep.summary["trials"]:
        if trial["epochs"] == 0:  # failed before reporting: no metric says either way
            continue
        params = json.loads((sweep.root / trial["path"] / "params.json").read_text())
        cfg = TrialConfig.from_dict(params)  # unknown or missing keys would raise / default
        # the recipe, and the trial's number (search.run.optuna_bridge), which names it
        assert set(params) == {*cfg.to_dict(), TRIAL_NUMBER}
        assert params[TRIAL_NUMBER] == trial["number"]
        assert cfg.max_epochs == SWEEP_EPOCHS and cfg.data == "digits" and cfg.seed == 0


def test_an_existing_experiment_is_refused_and_left_intact(sweep: Sweep) -> None:
    before = (sweep.root / "summary.json").read_text()
    done = run_cli("--name", "mini", "--storage-path", "runs", cwd=sweep.root.parents[1])
    assert done.returncode == 2
    assert "already exists and is never overwritten" in done.stderr
    assert (sweep.root / "summary.json").read_text() == before


def test_the_optuna_study_holds_each_trial_as_asha_left_it(sweep: Sweep) -> None:
    study = optuna.load_study(study_name="mini", storage=f"sqlite:///{sweep.root / 'optuna.db'}")
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert len(study.trials) == SWEEP_SAMPLES
    assert set(by_id) == {t["trial_id"] for t in sweep.summary["trials"]}
    state = {"completed": TrialState.COMPLETE, "asha": TrialState.PRUNED, "error": TrialState.FAIL}
    for trial in sweep.summary["trials"]:
        told = by_id[trial["trial_id"]]
        assert told.state == state[trial["stop_reason"]], trial
        # One intermediate value per epoch run, the epoch ASHA stopped the trial on included.
        assert sorted(told.intermediate_values) == list(range(1, trial["epochs"] + 1))
        assert max(told.intermediate_values.values()) == pytest.approx(trial["best_val_acc"])
        if told.state == TrialState.COMPLETE:
            assert told.value == pytest.approx(trial["best_val_acc"])
        assert told.params == {k: v for k, v in trial["config"].items() if v is not None}
    assert {t.state for t in study.trials} >= {TrialState.COMPLETE, TrialState.PRUNED}


def test_the_optuna_cli_opens_the_study(sweep: Sweep) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "trials", "--study-name", "mini",
         "--storage", f"sqlite:///{sweep.root / 'optuna.db'}", "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == SWEEP_SAMPLES
    assert {row["state"] for row in rows} <= {"COMPLETE", "PRUNED", "FAIL"}


def test_each_trial_says_whether_it_trained_on_cached_features(sweep: Sweep) -> None:
    cached = 0
    for trial in sweep.summary["trials"]:
        if trial["epochs"] == 0:  # failed before reporting: no metric says either way
            continue
        params = json.loads((sweep.root / trial["path"] / "params.json").read_text())
        log = (sweep.root / trial["path"] / "trial.log").read_text()
        # Digits are never augmented: every trial with a frozen stage trains on cached features.
        assert trial["cached_features"] == (params["freeze_depth"] > 0), trial
        note = next(line for line in log.splitlines() if line.startswith("frozen-feature"))
        assert note.startswith("frozen-feature cache: " if trial["cached_features"] else
                               "frozen-feature cache not used: no stage is frozen")  # fmt: skip
        assert log.startswith("node ")  # where the trial ran, first
        cached += trial["cached_features"]
    assert 0 < cached < SWEEP_SAMPLES  # seed 0 draws frozen and unfrozen trials
    assert f"{cached} of {SWEEP_SAMPLES} trials trained on cached frozen features" in sweep.stdout


def test_no_file_the_search_leaves_holds_the_wandb_api_key(sweep: Sweep) -> None:
    """The key reaches the W&B actor as a call's argument: Ray's runtime_env would write it
    into its logs (mode 0644, in /tmp). Every file of Ray's temporary folder and of the
    experiment is read."""
    assert any(sweep.ray_dir.rglob("*.log")), "Ray's logs went elsewhere"
    files = [p for d in (sweep.ray_dir, sweep.root) for p in d.rglob("*") if p.is_file()]
    leaks = [str(p) for p in files if not p.is_symlink() and CANARY_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_a_tampered_state_file_is_refused_and_runs_nothing(sweep: Sweep, tmp_path: Path) -> None:
    """A searcher state that would run a command when unpickled: --resume refuses it in one
    line, before anything loads it."""
    copy = tmp_path / "runs" / "mini"
    shutil.copytree(sweep.root, copy, ignore=shutil.ignore_patterns("checkpoint_*", "wandb"))
    marker = tmp_path / "ran"
    newest = sorted(copy.glob("searcher-state-*.pkl"))[-1]
    newest.write_bytes(
        pickle.dumps({"_ot_trials": {}, "x": _Command(f"touch {marker}")})  # its __reduce__
    )
    done = run_cli("--resume", "--name", "mini", "--storage-path", "runs", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert newest.name in line and "refused unread" in line, line
    assert not marker.exists()


class _Command:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))
