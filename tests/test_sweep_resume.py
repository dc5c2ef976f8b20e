"""Ctrl-C, SIGTERM, --resume and --extend through the real CLI: nothing lost, nothing run twice,
nothing overwritten.

One experiment per session goes through a whole life: interrupted with SIGINT while its second
trial trains, resumed (its worker killed once), resumed again when finished, extended by one
trial and stopped with SIGTERM, and resumed to the end. The tests assert on what each step left.
"""

from __future__ import annotations

import json
import re
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
from readers import Board, WandbRun, read_board, read_wandb_run
from tensorboard.plugins.hparams import api_pb2

from search.experiment.layout import LOCK_FILE, LOCK_HOLDER
from search.tracking.tensorboard import STOP_CODES
from search.tracking.wandb_runs import BEST_MODEL_JOB

# No ASHA stops (grace period = max epochs): a stopped trial still has 3 epochs to run when the
# signal comes after its first, so it is cut off, not finished.
NUM_SAMPLES, MAX_EPOCHS = 3, 4
pytestmark = pytest.mark.sweep
EXPERIMENT = ("--name", "r", "--storage-path", "runs")


@dataclass(frozen=True)
class Lifetime:
    work: Path
    root: Path
    stopped: subprocess.CompletedProcess  # SIGINT in trial 2
    summary_after_stop: dict
    board_after_stop: Board  # TensorBoard's view of the stopped experiment
    wandb_after_stop: list[WandbRun]
    resumed: subprocess.CompletedProcess  # --resume, its worker SIGKILLed once
    summary_after_resume: dict
    study_after_resume: list[optuna.trial.FrozenTrial]
    resumed_finished: subprocess.CompletedProcess  # --resume of the finished experiment
    dirs_before_finished: list[str]
    dirs_after_finished: list[str]
    extend_stopped: subprocess.CompletedProcess  # --extend 1, SIGTERM in its new trial
    extended: subprocess.CompletedProcess  # --resume of the extension
    second: subprocess.CompletedProcess  # a --resume while the first one runs
    first_pid: int


def _epochs_done(root: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in root.glob("train_transfer_*/result.json"))


def _trial_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("train_transfer_*"))


def _study(root: Path) -> optuna.Study:
    return optuna.load_study(study_name="r", storage=f"sqlite:///{root / 'optuna.db'}")


def _signal_when_started(
    process: subprocess.Popen, trial: str, signum: signal.Signals, root: Path
) -> subprocess.CompletedProcess:
    """Send `signum` once `trial` (as the progress line numbers it) has saved its first epoch's
    checkpoint, with epochs still to run; wait for the exit."""
    seen, started = [], None
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        started = re.search(rf"{trial} \((\w+)\) started", line)
        if started:
            break
    if not started:  # it ended first: say how
        _, err = process.communicate(timeout=300)
        raise AssertionError(f"exit {process.returncode}: {''.join(seen)}{err[-3000:]}")
    first = root / f"train_transfer_{started.group(1)}" / "checkpoint_000000"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline:  # written as the epoch reports
        time.sleep(0.05)
    time.sleep(0.3)  # for the driver to register the checkpoint; 3 epochs (~1.5 s) remain
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(seen) + out, err)


@pytest.fixture(scope="session")
def lifetime(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Lifetime:
    """3 trials of 3 epochs, one at a time, through every way of stopping and continuing."""
    work = tmp_path_factory.mktemp("resume")
    root = work / "runs" / "r"
    process = popen_cli(
        "--num-samples", str(NUM_SAMPLES), "--max-epochs", str(MAX_EPOCHS),
        "--grace-period", str(MAX_EPOCHS), "--reduction-factor", "2", "--max-concurrent", "1",
        *EXPERIMENT, "--cache-dir", str(cache_dir), "--wandb", "offline",
        cwd=work,
    )  # fmt: skip
    stopped = _signal_when_started(process, f"trial  2/{NUM_SAMPLES}", signal.SIGINT, root)
    summary_after_stop = json.loads((root / "summary.json").read_text())
    board_after_stop = read_board(root)
    wandb_after_stop = [read_wandb_run(f) for f in sorted(root.glob("wandb/offline-run-*"))]
    # What a driver crash between a suggestion and Tune's next snapshot leaves in the study.
    _study(root).ask().set_user_attr("tune_trial_id", "lost")

    before = _epochs_done(root)
    process = popen_cli("--resume", *EXPERIMENT, cwd=work)
    first_pid = process.pid
    deadline = time.monotonic() + 300
    while _epochs_done(root) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    second_process = popen_cli("--resume", *EXPERIMENT, cwd=work)  # one writer at a time
    subprocess.run(["pkill", "-KILL", "-f", "ray::ImplicitFunc"], check=False)
    out, err = second_process.communicate(timeout=120)
    second = subprocess.CompletedProcess(second_process.args, second_process.returncode, out, err)
    out, err = process.communicate(timeout=600)
    resumed = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    summary_after_resume = json.loads((root / "summary.json").read_text())
    study_after_resume = _study(root).trials

    dirs_before_finished = _trial_dirs(root)
    resumed_finished = run_cli("--resume", *EXPERIMENT, cwd=work)
    dirs_after_finished = _trial_dirs(root)

    process = popen_cli("--extend", "1", *EXPERIMENT, cwd=work)
    extend_stopped = _signal_when_started(
        process, f"trial  {NUM_SAMPLES + 1}/{NUM_SAMPLES + 1}", signal.SIGTERM, root
    )
    extended = run_cli("--resume", *EXPERIMENT, cwd=work)
    return Lifetime(
        work, root, stopped, summary_after_stop, board_after_stop, wandb_after_stop, resumed,
        summary_after_resume, study_after_resume, resumed_finished, dirs_before_finished,
        dirs_after_finished, extend_stopped, extended, second, first_pid,
    )  # fmt: skip


def _assert_each_epoch_once(root: Path, trials: list[dict]) -> None:
    for trial in trials:  # interrupted or killed: resumed from checkpoints, no epoch twice
        rows = (root / trial["path"] / "result.json").read_text().splitlines()
        epochs = [json.loads(row)["epoch"] for row in rows]
        assert epochs == list(range(1, trial["epochs"] + 1)), (trial["trial_id"], epochs)


def test_a_second_resume_while_one_runs_is_refused_naming_it(lifetime: Lifetime) -> None:
    second = lifetime.second
    assert second.returncode == 2, second.stderr[-2000:]
    (line,) = second.stderr.strip().splitlines()
    assert re.search(rf"is in use by PID {lifetime.first_pid} on \S+ since .*--resume", line)


def test_ctrl_c_stops_with_exit_130_and_the_resume_command(lifetime: Lifetime) -> None:
    stopped = lifetime.stopped
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Resume with:  python scripts/search.py --resume --name r --storage-path runs" in (
        stopped.stderr
    )
    assert "Traceback" not in stopped.stdout + stopped.stderr
    reasons = [t["stop_reason"] for t in lifetime.summary_after_stop["trials"]]
    assert "interrupted" in reasons and len(reasons) < NUM_SAMPLES + 1


def test_an_interrupted_trial_is_shown_as_interrupted(lifetime: Lifetime) -> None:
    trials = lifetime.summary_after_stop["trials"]
    started = [t for t in trials if t["path"] in lifetime.board_after_stop.sessions]
    assert started and len(started) == len(lifetime.wandb_after_stop)
    interrupted = [t for t in started if t["stop_reason"] == "interrupted"]
    assert interrupted, "trial 2 was training when Ctrl-C came"
    runs = {run.run_id: run for run in lifetime.wandb_after_stop}
    for trial in started:
        session = lifetime.board_after_stop.sessions[trial["path"]]
        assert session.last["stop_reason"] == STOP_CODES[trial["stop_reason"]]
        ended = trial["stop_reason"] != "interrupted"
        assert (session.status == api_pb2.STATUS_SUCCESS) == ended  # no end: status unknown
        # Its W&B run ended cleanly (not killed), saying why.
        assert runs[trial["trial_id"]].summary["stop_reason"] == trial["stop_reason"]
        assert runs[trial["trial_id"]].summary["epochs"] == trial["epochs"]


def test_resumed_trials_end_their_tensorboard_rows(lifetime: Lifetime) -> None:
    board = read_board(lifetime.root)
    summary = json.loads((lifetime.root / "summary.json").read_text())
    assert len(board.sessions) == len(summary["trials"]) == NUM_SAMPLES + 1
    for trial in summary["trials"]:
        session = board.sessions[trial["path"]]
        assert session.last["stop_reason"] == STOP_CODES[trial["stop_reason"]]
        assert session.status == api_pb2.STATUS_SUCCESS
        # TensorBoard shows a step once (a repeated step replaces the earlier point): an epoch
        # trained again after a stop that came before Tune registered its checkpoint.
        steps = sorted(set(board.steps[trial["path"]]["val_acc"]))
        assert steps == list(range(1, trial["epochs"] + 1))


def test_resume_finishes_exactly_the_planned_trials(lifetime: Lifetime) -> None:
    resumed = lifetime.resumed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming experiment runs/r:" in resumed.stdout
    # The worker killed mid-resume: the trial restarted from its checkpoint and finished.
    assert "retrying from its last checkpoint" in resumed.stdout
    trials = lifetime.summary_after_resume["trials"]
    assert len(trials) == NUM_SAMPLES
    assert len({t["trial_id"] for t in trials}) == NUM_SAMPLES
    assert len({json.dumps(t["config"], sort_keys=True) for t in trials}) == NUM_SAMPLES
    assert all(t["stop_reason"] in ("completed", "asha") for t in trials), trials
    _assert_each_epoch_once(lifetime.root, trials)


def test_the_study_holds_each_trial_once(lifetime: Lifetime) -> None:
    # The suggestion Tune never recorded (made in the fixture) was handed to the trial Tune
    # started in its place: the study holds the search's trials, each once, none left RUNNING.
    study = lifetime.study_after_resume
    assert "lost" not in {t.user_attrs["tune_trial_id"] for t in study}
    assert len(study) == NUM_SAMPLES
    assert sorted(t.user_attrs["trial_number"] for t in study) == list(range(1, NUM_SAMPLES + 1))
    assert {t.user_attrs["tune_trial_id"] for t in study} == {
        t["trial_id"] for t in lifetime.summary_after_resume["trials"]
    }
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study)


def test_resuming_a_finished_experiment_only_rebuilds_its_summary(lifetime: Lifetime) -> None:
    again = lifetime.resumed_finished
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"0 of {NUM_SAMPLES} trials to finish" in again.stdout
    assert lifetime.dirs_after_finished == lifetime.dirs_before_finished


def _written_runs(root: Path) -> list[WandbRun]:
    """The experiment's W&B runs, less a trial's run that the SIGTERM of the extension cut off
    before W&B wrote its run record (it started as the signal came; nothing of it to read)."""
    runs = []
    for folder in sorted(root.glob("wandb/offline-run-*")):
        try:
            runs.append(read_wandb_run(folder))
        except AssertionError:
            continue
    return runs


def test_the_best_model_is_logged_once_per_search_that_ran_trials(lifetime: Lifetime) -> None:
    runs = _written_runs(lifetime.root)
    # One when the resumed search finished, one when the extension did; none for the resume
    # that found the experiment finished (it kept the artifact's name in its summary).
    assert [run.job_type for run in runs].count(BEST_MODEL_JOB) == 2
    summary = json.loads((lifetime.root / "summary.json").read_text())
    assert summary["wandb_model"] == "r-best"
    assert "W&B model artifact: r-best:best" in lifetime.resumed_finished.stdout


def _run_of(trial: dict) -> dict:
    """A trial of summary.json without the checkpoint it keeps (search.experiment.retention)
    and whether it ties with the best (a new best can change it)."""
    return {k: v for k, v in trial.items() if k not in ("checkpoint", "tie_with_best")}


def test_extend_adds_trials_and_sigterm_stops_it_like_ctrl_c(lifetime: Lifetime) -> None:
    stopped = lifetime.extend_stopped
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert f"by 1 trials to {NUM_SAMPLES + 1}, warm-started from its study" in stopped.stdout
    assert "Resume with:  python scripts/search.py --resume --name r --storage-path runs" in (
        stopped.stderr
    )
    extended = lifetime.extended
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert f"1 of {NUM_SAMPLES + 1} trials to finish" in extended.stdout
    summary = json.loads((lifetime.root / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == NUM_SAMPLES + 1
    # untouched, but for the checkpoint each keeps: the new trial may outrank one of them
    old = {t["trial_id"]: _run_of(t) for t in lifetime.summary_after_resume["trials"]}
    new = {t["trial_id"]: _run_of(t) for t in trials if t["trial_id"] in old}
    changed = {(tid, k) for tid in old for k in old[tid] if new[tid].get(k) != old[tid][k]}
    assert not changed, [(c, old[c[0]][c[1]], new[c[0]].get(c[1])) for c in changed]
    kept = [t for t in trials if t["checkpoint"]]
    assert kept == trials[: len(kept)] and len(kept) <= 3  # --keep-checkpoints 3: the best
    assert len({json.dumps(t["config"], sort_keys=True) for t in trials}) == NUM_SAMPLES + 1
    _assert_each_epoch_once(lifetime.root, trials)
    study = [t for t in _study(lifetime.root).trials if t.state != TrialState.FAIL]
    assert sorted(t.user_attrs["tune_trial_id"] for t in study) == sorted(
        t["trial_id"] for t in trials
    )
    assert study[-1].user_attrs["tune_trial_id"] not in old  # the new trial joined the study
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study)


def test_a_truncated_state_file_stops_resume_and_nothing_is_overwritten(
    lifetime: Lifetime,
) -> None:
    copy = lifetime.work / "elsewhere" / "r"
    shutil.copytree(lifetime.root, copy)
    newest = sorted(copy.glob("experiment_state-*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])

    def contents() -> dict[Path, bytes]:  # but the lock, which the refused resume held
        lock = (LOCK_FILE, LOCK_HOLDER)
        return {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name not in lock}

    before = contents()
    done = run_cli("--resume", "--name", "r", "--storage-path", "elsewhere", cwd=lifetime.work)
    assert done.returncode == 2
    assert f"the newest experiment state {newest.name} is damaged" in done.stderr
    assert "Traceback" not in done.stderr
    assert contents() == before
