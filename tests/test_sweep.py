"""A local-CPU mini sweep through the real CLI: Ray Tune, Optuna, ASHA, TensorBoard, W&B offline.

The sweep runs once per session; each test asserts on its experiment folder.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from helpers import ROOT, run_cli
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainable.checkpoint import CHECKPOINT_FILE
from trainable.config import TrialConfig

NUM_SAMPLES, MAX_EPOCHS = 6, 3
pytestmark = pytest.mark.sweep


@dataclass(frozen=True)
class Sweep:
    returncode: int
    stdout: str
    stderr: str
    root: Path
    summary: dict


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Sweep:
    """6 trials of up to 3 epochs; ASHA rungs at epochs 1 and 2 (grace 1, reduction 2)."""
    work = tmp_path_factory.mktemp("sweep")
    done = run_cli(
        "--space", "resnet_small",
        "--num-samples", str(NUM_SAMPLES),
        "--max-epochs", str(MAX_EPOCHS),
        "--grace-period", "1",
        "--reduction-factor", "2",
        "--max-concurrent", "1",  # one at a time: ASHA's decisions do not depend on timing
        "--seed", "0",
        "--name", "mini",
        "--storage-path", "runs",
        "--cache-dir", str(cache_dir),
        "--wandb", "offline",
        cwd=work,
    )  # fmt: skip
    root = work / "runs" / "mini"
    summary_file = root / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return Sweep(done.returncode, done.stdout, done.stderr, root, summary)


def test_the_sweep_succeeds_and_reports_the_best_trial(sweep: Sweep) -> None:
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    out = sweep.stdout
    assert "Best: trial" in out and "checkpoint: runs/mini/" in out
    assert "python scripts/board.py runs/mini" in out
    assert "wandb sync runs/mini/wandb/offline-run-*" in out
    assert "optuna-dashboard sqlite:///runs/mini/optuna.db" in out
    assert "Traceback" not in out + sweep.stderr
    assert len(out.splitlines()) < 60, "the console output should stay concise"


def test_summary_lists_every_trial_with_why_it_stopped(sweep: Sweep) -> None:
    s = sweep.summary
    assert (s["experiment"], s["space"], s["metric"], s["mode"]) == (
        "mini", "resnet_small", "val_acc", "max",
    )  # fmt: skip
    assert len(s["trials"]) == NUM_SAMPLES
    assert len({t["trial_id"] for t in s["trials"]}) == NUM_SAMPLES
    for t in s["trials"]:
        assert set(t["config"]) == {"freeze_depth", "backbone_lr", "head_lr"}
        assert t["stop_reason"] in ("completed", "asha", "error")
        if t["stop_reason"] == "completed":
            assert t["epochs"] == MAX_EPOCHS and t["status"] == "TERMINATED"
        if t["stop_reason"] == "asha":
            assert 1 <= t["epochs"] < MAX_EPOCHS and t["status"] == "TERMINATED"
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


def test_every_trial_params_json_is_a_complete_recipe(sweep: Sweep) -> None:
    for trial in sweep.summary["trials"]:
        params = json.loads((sweep.root / trial["path"] / "params.json").read_text())
        cfg = TrialConfig.from_dict(params)  # unknown or missing keys would raise / default
        assert set(params) == set(cfg.to_dict())
        assert cfg.max_epochs == MAX_EPOCHS and cfg.data == "digits" and cfg.seed == 0


def test_tensorboard_event_files_hold_val_acc_per_epoch(sweep: Sweep) -> None:
    for trial in sweep.summary["trials"]:
        events = list((sweep.root / trial["path"]).glob("events.out.tfevents.*"))
        assert events, f"no TensorBoard events for {trial['trial_id']}"
        accumulator = EventAccumulator(str(events[0].parent)).Reload()
        tags = [t for t in accumulator.Tags()["scalars"] if t.endswith("/val_acc")]
        assert tags, accumulator.Tags()["scalars"]
        values = [e.value for e in accumulator.Scalars(tags[0])]
        assert len(values) == trial["epochs"]
        assert max(values) == pytest.approx(trial["best_val_acc"])


def test_wandb_wrote_one_offline_run_per_trial(sweep: Sweep) -> None:
    runs = sorted((sweep.root / "wandb").glob("offline-run-*"))
    ids = {run.name.rsplit("-", 1)[-1] for run in runs}
    assert ids == {t["trial_id"] for t in sweep.summary["trials"]}
    for run in runs:
        data = list(run.glob("run-*.wandb"))
        assert data and data[0].stat().st_size > 0, run


def test_an_existing_experiment_is_refused_and_left_intact(sweep: Sweep) -> None:
    before = (sweep.root / "summary.json").read_text()
    done = run_cli("--name", "mini", "--storage-path", "runs", cwd=sweep.root.parents[1])
    assert done.returncode == 2
    assert "already exists and is never overwritten" in done.stderr
    assert (sweep.root / "summary.json").read_text() == before


def test_the_optuna_study_holds_each_trial_as_asha_left_it(sweep: Sweep) -> None:
    study = optuna.load_study(study_name="mini", storage=f"sqlite:///{sweep.root / 'optuna.db'}")
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert len(study.trials) == NUM_SAMPLES
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
    assert len(rows) == NUM_SAMPLES
    assert {row["state"] for row in rows} <= {"COMPLETE", "PRUNED", "FAIL"}


def test_the_board_serves_the_trials_on_this_machine_only(sweep: Sweep) -> None:
    board = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "board.py"), str(sweep.root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert board.stdout is not None
        line = board.stdout.readline()
        url = re.search(r"http://\S+/", line)
        assert url, (line, board.poll())
        assert url.group(0).startswith("http://127.0.0.1:")  # not every interface
        trials = {p.name for p in sweep.root.glob("train_transfer_*")}
        runs: set[str] = set()
        deadline = time.monotonic() + 60
        while not trials <= runs and time.monotonic() < deadline:  # TensorBoard loads lazily
            time.sleep(1)
            with urllib.request.urlopen(url.group(0) + "data/runs", timeout=30) as response:
                runs = set(json.loads(response.read()))
        assert trials <= runs, (trials, runs)
    finally:
        board.terminate()
        board.wait(timeout=30)
