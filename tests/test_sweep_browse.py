"""What users browse after the mini sweep, read back with the tools' own code: TensorBoard's event
loader and HParams parsers, a live `scripts/board.py` over HTTP and in headless Chromium, and the
W&B offline runs' protobuf records.

An interrupted trial's row and run are tested in test_sweep_resume.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, SWEEP_EPOCHS, Sweep
from readers import Board, WandbRun, read_board, read_wandb_run
from tensorboard.plugins.hparams import api_pb2

from search.experiment.outcomes import trial_label
from search.tracking.tensorboard import METRIC_COLUMNS, STOP_CODES
from search.tracking.wandb_runs import BEST_MODEL_JOB
from trainable.config import TrialConfig
from trainable.exported import load_export
from trainable.files import MODEL_FILE

pytestmark = pytest.mark.sweep
CHROMIUM = shutil.which("chromium")
STATUS = {"completed": api_pb2.STATUS_SUCCESS, "asha": api_pb2.STATUS_SUCCESS,
          "error": api_pb2.STATUS_FAILURE}  # fmt: skip


@pytest.fixture(scope="module")
def board(sweep: Sweep) -> Board:
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    return read_board(sweep.root)


def _results(sweep: Sweep, trial: dict) -> list[dict]:
    lines = (sweep.root / trial["path"] / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_hparams_columns_are_declared_once_with_their_domains(board: Board) -> None:
    assert board.experiment is not None
    columns = {info.name: info for info in board.experiment.hparam_infos}
    assert list(columns) == ["freeze_depth", "backbone_lr", "head_lr"]
    depths = [v.number_value for v in columns["freeze_depth"].domain_discrete.values]
    assert depths == [0, 1, 2, 3, 4, 5]
    for name, bounds in (("backbone_lr", (1e-5, 1e-1)), ("head_lr", (1e-4, 1.0))):
        interval = columns[name].domain_interval
        assert (interval.min_value, interval.max_value) == pytest.approx(bounds)
        assert "log-uniform" in columns[name].description  # TensorBoard has no log domain
    assert [m.name.tag for m in board.experiment.metric_infos] == [t for t, _, _ in METRIC_COLUMNS]
    assert board.graphs == ["."]  # the model graph, once per experiment


def test_every_trial_is_a_row_with_its_config_and_results(sweep: Sweep, board: Board) -> None:
    assert len(board.sessions) == len(sweep.summary["trials"])
    for trial in sweep.summary["trials"]:
        session = board.sessions[trial["path"]]
        # the table's Trial ID column: the number and Tune's id, as everywhere
        assert session.group == trial_label(trial["number"], trial["trial_id"])
        used = {key: value for key, value in trial["config"].items() if value is not None}
        assert session.hparams == pytest.approx(used)  # a probe's unused backbone_lr is absent
        last, results = session.last, _results(sweep, trial)
        assert last["best_val_acc"] == pytest.approx(trial["best_val_acc"])
        assert last["val_acc"] == pytest.approx(trial["val_acc"])
        assert last["val_loss"] == pytest.approx(results[-1]["val_loss"], rel=1e-6)
        assert last["epoch"] == trial["epochs"]
        assert last["stop_reason"] == STOP_CODES[trial["stop_reason"]]
        assert last["trainable_params"] == results[-1]["trainable_params"] > 0
        assert last["epoch_seconds"] == pytest.approx(results[-1]["epoch_seconds"], rel=1e-6)
        assert last["lr/head"] == pytest.approx(trial["config"]["head_lr"])
        if trial["config"]["backbone_lr"] is not None:
            assert last["lr/backbone"] == pytest.approx(trial["config"]["backbone_lr"])
        assert session.status == STATUS[trial["stop_reason"]]


def test_each_trial_logs_weights_images_and_its_config(sweep: Sweep, board: Board) -> None:
    every = TrialConfig.summary_every
    for trial in sweep.summary["trials"]:
        steps = board.steps[trial["path"]]
        assert steps["config/text_summary"] == [0]
        assert steps["val_acc"] == list(range(1, trial["epochs"] + 1))
        due = [e for e in range(1, trial["epochs"] + 1)
               if e == 1 or e % every == 0 or e == SWEEP_EPOCHS]  # fmt: skip
        assert steps["weights/fc"] == steps["val/confusion_matrix"] == due, trial["trial_id"]
        if trial["config"]["freeze_depth"] < 5:  # layer4 trains
            assert steps["weights/layer4"] == due
        else:
            assert "weights/layer4" not in steps
        if trial["val_acc"] < 1:
            assert steps["val/misclassified"][0] == 1


@pytest.fixture(scope="module")
def served(sweep: Sweep) -> Iterator[str]:
    """scripts/board.py on the mini sweep, on a free port; yields its URL."""
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
        yield url.group(0)
    finally:
        board.terminate()
        board.wait(timeout=30)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_board_serves_every_trial_on_this_machine_only(sweep: Sweep, served: str) -> None:
    assert served.startswith("http://127.0.0.1:")  # not every interface
    ids = {trial_label(t["number"], t["trial_id"]) for t in sweep.summary["trials"]}
    query = {"allowedStatuses": list(api_pb2.Status.keys()), "colParams": [],
             "startIndex": 0, "sliceSize": 100}  # fmt: skip
    groups: list[dict] = []
    deadline = time.monotonic() + 60
    while {g["name"] for g in groups} != ids and time.monotonic() < deadline:
        time.sleep(1)  # TensorBoard loads the event files in the background
        groups = _post(served + "data/plugin/hparams/session_groups", query).get(
            "sessionGroups", []
        )
    assert {g["name"] for g in groups} == ids
    by_id = {trial_label(t["number"], t["trial_id"]): t for t in sweep.summary["trials"]}
    for group in groups:
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert values["best_val_acc"] == pytest.approx(by_id[group["name"]]["best_val_acc"])
        assert group["hparams"]["head_lr"] == pytest.approx(
            by_id[group["name"]]["config"]["head_lr"]
        )


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (.ci/run installs it)",
)
def test_the_hparams_view_renders_every_trial_in_chromium(
    sweep: Sweep, served: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is missing: .ci/run installs Debian's chromium package"
    shot = tmp_path_factory.mktemp("screenshots") / "hparams.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(served + "#hparams")
            for trial in sweep.summary["trials"]:  # the table's Trial ID cells
                page.get_by_text(
                    trial_label(trial["number"], trial["trial_id"]), exact=True
                ).wait_for(timeout=60_000)
            page.screenshot(path=str(shot))
            # Each trial's best val_acc, as the table prints numbers (5 significant digits).
            shown = [page.get_by_text(f"{t['best_val_acc']:#.5g}", exact=True).count()
                     for t in sweep.summary["trials"]]  # fmt: skip
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert all(shown), shown
    assert shot.stat().st_size > 20_000


@pytest.fixture(scope="module")
def wandb_runs(sweep: Sweep) -> list[WandbRun]:
    return [read_wandb_run(folder) for folder in sorted(sweep.root.glob("wandb/offline-run-*"))]


def test_each_trial_is_a_wandb_run_in_the_experiments_group(
    sweep: Sweep, wandb_runs: list[WandbRun]
) -> None:
    trial_runs = {run.run_id: run for run in wandb_runs if run.job_type == "resnet_small"}
    assert set(trial_runs) == {t["trial_id"] for t in sweep.summary["trials"]}
    for trial in sweep.summary["trials"]:
        run = trial_runs[trial["trial_id"]]
        assert run.group == "mini"
        assert run.name == "trial " + trial_label(trial["number"], trial["trial_id"])
        for key, value in trial["config"].items():
            assert run.config[key] == (value if value is None else pytest.approx(value))
        results = _results(sweep, trial)
        assert [row["epoch"] for row in run.history] == [r["epoch"] for r in results]
        assert [row["val_acc"] for row in run.history] == [r["val_acc"] for r in results]
        assert run.summary["best_val_acc"] == trial["best_val_acc"]
        assert run.summary["epochs"] == trial["epochs"]
        assert run.summary["stop_reason"] == trial["stop_reason"]


def test_the_best_model_is_logged_as_a_wandb_artifact(
    sweep: Sweep, wandb_runs: list[WandbRun]
) -> None:
    (run,) = [run for run in wandb_runs if run.job_type == BEST_MODEL_JOB]
    best = sweep.summary["best"]
    assert run.group == "mini" and run.config["trial_id"] == best["trial_id"]
    (artifact,) = run.artifacts
    assert (
        (artifact.name, artifact.type)
        == ("mini-best", "model")
        == (sweep.summary["wandb_model"], "model")
    )
    assert "best" in artifact.aliases
    assert json.loads(artifact.metadata)["trial_id"] == best["trial_id"]
    (entry,) = artifact.manifest.contents
    assert entry.path == MODEL_FILE  # referenced in place: the whole model, beside its checkpoint
    assert Path(entry.local_path) == sweep.root / best["checkpoint"] / MODEL_FILE
    export = load_export(Path(entry.local_path))  # what scripts/predict.py reads
    assert export["source"]["trial_id"] == best["trial_id"]
    assert export["metrics"]["val_acc"] == best["val_acc"]
