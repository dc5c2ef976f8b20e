"""The W&B logging actor's class, run in this process with the real W&B: when W&B cannot log
online, the runs are kept offline and the actor says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb

from search.tracking.wandb_actor import WandbRuns


def test_runs_that_cannot_log_online_are_kept_offline_and_the_reason_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: refused
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_SILENT", "true")
    runs = WandbRuns()
    init = {"project": "p", "group": "g", "mode": "online", "dir": str(tmp_path)}
    runs.start("trial1", {**init, "id": "trial1", "settings": wandb.Settings(init_timeout=3)})
    runs.log("trial1", {"val_acc": 0.5}, {}, 1)
    runs.end("trial1", {"epochs": 1})
    runs.start("trial2", {**init, "id": "trial2"})  # offline at once: not tried online again
    runs.end("trial2", {"epochs": 0})
    assert "127.0.0.1:9" in (runs.online_failure() or "")
    assert runs.take_errors() == []
    offline = sorted(p.name.rsplit("-", 1)[-1] for p in (tmp_path / "wandb").glob("offline-run-*"))
    assert offline == ["trial1", "trial2"]
