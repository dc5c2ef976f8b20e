"""The result.json writer keeps the rows a resumed trial logged before, whatever Tune's saved
state says of its checkpoint (a driver killed between a report and the next state snapshot)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from search.tracking.callbacks import KeptResultLog


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    tune.register_trainable("train_transfer", lambda config: None)
    yield
    ray.shutdown()


def _trial(storage: Path) -> Trial:
    context = StorageContext(storage_path=str(storage), experiment_dir_name="e")
    trial = Trial("train_transfer", config={}, storage=context, trial_id="t1")
    trial.init_local_path()
    return trial


def _rows(path: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def test_a_resumed_trial_without_a_saved_checkpoint_keeps_its_logged_rows(
    tmp_path: Path, local_ray: None
) -> None:
    trial = _trial(tmp_path)
    assert trial.checkpoint is None  # what Tune's state said of it when the driver died
    stored = Path(trial.path, "result.json")
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({"epoch": 1}) + "\n")

    log = KeptResultLog()
    log.log_trial_start(trial)
    log.log_trial_result(1, trial, {"epoch": 2})
    log.log_trial_end(trial)
    assert _rows(Path(trial.local_path, "result.json")) == [1, 2]  # what Tune copies back


def test_a_new_trial_starts_an_empty_log(tmp_path: Path, local_ray: None) -> None:
    trial = _trial(tmp_path)
    log = KeptResultLog()
    log.log_trial_start(trial)
    log.log_trial_result(1, trial, {"epoch": 1})
    log.log_trial_start(trial)  # a restart in the same driver appends to its own copy
    log.log_trial_result(2, trial, {"epoch": 2})
    log.log_trial_end(trial)
    assert _rows(Path(trial.local_path, "result.json")) == [1, 2]
