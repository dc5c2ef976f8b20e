"""--backbones through the real CLI on tiny images: the backbone searched with the pre-screen
and its warm start, then a --time-budget that cuts a search and an --extend that continues it.

The "ImageNet" weights are random state dicts the test puts in torch's hub cache: nothing
can be downloaded here, and the real loading path runs.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from helpers import make_image_folder, run_cli

from trainable.backbones import build_model
from trainable.catalog import BACKBONES

pytestmark = pytest.mark.sweep
CANDIDATES = ("resnet18", "mobilenet_v3_large")


def hub(work: Path) -> dict[str, str]:
    """The environment that finds the test's "ImageNet" weights."""
    return {"TORCH_HOME": str(work / "torch")}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("backbones")
    make_image_folder(work / "photos", per_class=8, size=32)
    hub = work / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for backbone in CANDIDATES:
        torch.manual_seed(1)
        torch.save(
            build_model(backbone, 1000).state_dict(), hub / BACKBONES[backbone].imagenet_file
        )
    return work


def _search(work: Path, name: str, *flags: str) -> tuple[object, Path]:
    done = run_cli(
        "--data", "imagefolder:photos", "--image-size", "32", "--max-epochs", "2",
        "--max-concurrent", "2", "--name", name, "--storage-path", "runs",
        "--cache-dir", str(work / "cache"), "--wandb", "disabled", *flags,
        cwd=work, env=hub(work),
    )  # fmt: skip
    return done, work / "runs" / name


def test_the_backbone_is_searched_after_a_prescreen_that_starts_the_search(work: Path) -> None:
    done, root = _search(work, "pick", "--backbones", ",".join(CANDIDATES), "--num-samples", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backbone searched among resnet18, mobilenet_v3_large" in done.stdout
    assert "Pre-screen (" in done.stdout and "Rule: a backbone whose best probe" in done.stdout

    screen = json.loads((root / "prescreen.json").read_text())
    depths = {
        b: {r["freeze_depth"] for r in screen["scores"] if r["backbone"] == b} for b in CANDIDATES
    }
    assert depths == {b: set(range(1, BACKBONES[b].max_freeze_depth + 1)) for b in CANDIDATES}
    assert all(0 <= r["score"] <= 1 for r in screen["scores"])
    first = screen["warm_start"][0]

    summary = json.loads((root / "summary.json").read_text())
    trials = sorted(summary["trials"], key=lambda t: t["number"])
    assert len(trials) == 3 and {t["stop_reason"] for t in trials} <= {"completed", "asha"}
    assert {t["config"]["backbone"] for t in trials} <= set(screen["kept"])
    # The pre-screen's best pair is the first trial; its learning rates were sampled.
    assert {k: trials[0]["config"][k] for k in first} == first
    for t in trials:  # each within its own backbone's freeze depths
        assert (
            0 <= t["config"]["freeze_depth"] <= BACKBONES[t["config"]["backbone"]].max_freeze_depth
        )
    assert summary["prescreen"]["pairs_compared"] >= 1
    assert "kendall_tau" in summary["prescreen"]
    assert "Pre-screen: probes on frozen features" in (root / "report.html").read_text()

    with sqlite3.connect(root / "optuna.db") as db:  # each backbone's parameters apart
        names = {name for (name,) in db.execute("SELECT DISTINCT param_name FROM trial_params")}
    assert "backbone" in names and "freeze_depth" not in names
    assert {n.partition(":")[0] for n in names - {"backbone"}} <= set(CANDIDATES)

    best = summary["best"]
    exported = run_cli(str(root), "--out", "model.pt", cwd=work, env=hub(work), script="export.py")
    assert exported.returncode == 0, exported.stderr[-2000:]
    model = torch.load(work / "model.pt", weights_only=True)
    assert model["config"]["backbone"] == best["config"]["backbone"]


def test_a_time_budget_ends_the_search_and_extend_continues_it(work: Path) -> None:
    flags = ("--backbones", ",".join(CANDIDATES), "--no-prescreen")
    done, root = _search(work, "timed", *flags, "--num-samples", "40", "--time-budget", "15s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pre-screen" not in done.stdout
    assert "Time budget of 15 s " in done.stdout and "--extend N --name timed" in done.stdout
    summary = json.loads((root / "summary.json").read_text())
    ran = len(summary["trials"])
    assert 1 <= ran < 40
    assert summary["wall_seconds"] < 15 + 20  # stopped near the budget (the end's work aside)
    assert summary["time_budget"][0]["ended_search"] is True
    # The experiment holds the trials it ran: a --resume has nothing left, --extend adds.
    assert json.loads((root / "settings.json").read_text())["num_samples"] == ran

    more = run_cli("--extend", "2", "--name", "timed", "--storage-path", "runs", cwd=work,
                   env=hub(work))  # fmt: skip
    assert more.returncode == 0, more.stderr[-3000:]
    extended = json.loads((root / "summary.json").read_text())
    assert len(extended["trials"]) == ran + 2
    assert {t["stop_reason"] for t in extended["trials"]} <= {"completed", "asha", "budget"}
