"""Which checkpoints a search keeps while its trials run and once they have ended
(search.experiment.retention), on folders laid out as Ray's."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from search.config.settings import SearchSettings
from search.experiment.retention import (
    CHECKPOINT_DIR,
    Store,
    SupersededCheckpoints,
    best_checkpoint,
    best_only,
    prune_checkpoints,
    stored_checkpoints,
)
from search.experiment.storage import remote_experiment

# (trial, status, checkpoint folders, the best of them), ranked by best val_acc
TRIALS = [
    ("a", "TERMINATED", ["checkpoint_000003", "checkpoint_000008"], "checkpoint_000003"),
    ("b", "TERMINATED", ["checkpoint_000000"], "checkpoint_000000"),
    ("c", "ERROR", ["checkpoint_000001", "checkpoint_000002"], "checkpoint_000001"),
    ("d", "TERMINATED", ["checkpoint_000004", "checkpoint_000005"], "checkpoint_000005"),
    ("e", "PENDING", ["checkpoint_000000"], "checkpoint_000000"),  # interrupted
    ("f", "TERMINATED", ["checkpoint_000000"], "checkpoint_000000"),
]


def _experiment(tmp_path: Path, keep: int) -> tuple[SearchSettings, dict]:
    settings = SearchSettings(storage_path=str(tmp_path), name="exp", keep_checkpoints=keep)
    trials = []
    for trial, status, folders, best in TRIALS:
        for folder in folders:
            path = settings.experiment_dir / f"train_{trial}" / folder
            path.mkdir(parents=True)
            (path / "checkpoint.pt").write_bytes(b"x" * 1000)
        trials.append({"trial_id": trial, "status": status, "path": f"train_{trial}",
                       "checkpoint": f"train_{trial}/{best}"})  # fmt: skip
    return settings, {"trials": trials}


def _left(settings: SearchSettings) -> set[str]:
    root = settings.experiment_dir
    return {p.relative_to(root).as_posix() for p in root.glob("train_*/checkpoint_*")}


def test_the_best_checkpoints_of_the_best_trials_stay(tmp_path: Path) -> None:
    settings, summary = _experiment(tmp_path, keep=3)
    pruned = prune_checkpoints(settings, summary)
    assert _left(settings) == {
        "train_a/checkpoint_000003",  # rank 1: its best, not its latest
        "train_b/checkpoint_000000",  # rank 2
        "train_c/checkpoint_000001", "train_c/checkpoint_000002",  # failed: --resume retries it
        "train_e/checkpoint_000000",  # interrupted: --resume continues it
    }  # fmt: skip
    # rank 4 (d) and 6 (f) ended outside the best 3: nothing of theirs is kept
    assert (pruned.folders, pruned.bytes, pruned.trials) == (4, 4000, 3)
    checkpoints = {t["trial_id"]: t["checkpoint"] for t in summary["trials"]}
    assert checkpoints["d"] is None and checkpoints["f"] is None
    assert checkpoints["a"] == "train_a/checkpoint_000003"
    assert checkpoints["c"] == "train_c/checkpoint_000001"  # not ended: untouched


@pytest.mark.parametrize(("keep", "kept"), [(1, 4), (0, 7)])
def test_keep_counts_the_best_trials_and_0_keeps_every_ones_best(
    tmp_path: Path, keep: int, kept: int
) -> None:
    settings, summary = _experiment(tmp_path, keep=keep)
    prune_checkpoints(settings, summary)
    # keep 1: a's best, c's two and e's one; keep 0: every ended trial's best, c's two, e's
    assert len(_left(settings)) == kept


def test_pruning_again_removes_nothing_more(tmp_path: Path) -> None:
    settings, summary = _experiment(tmp_path, keep=3)
    prune_checkpoints(settings, summary)
    before = _left(settings)
    again = prune_checkpoints(settings, summary)
    assert again.folders == 0 and _left(settings) == before


def test_at_a_uri_the_working_copy_gets_each_trials_best_and_pruning_empties_the_bucket(
    tmp_path: Path,
) -> None:
    """Stored at a URI, every epoch's checkpoint is there at the end; the working copy gets
    each trial's best alone, and pruning removes the others there by the same rule."""
    bucket = tmp_path / "bucket"
    settings = SearchSettings(
        storage_path=f"file://{bucket}", name="exp", keep_checkpoints=3,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    for trial, _, folders, best in TRIALS:
        rows = [{CHECKPOINT_DIR: f, "val_acc": 0.9 if f == best else 0.5} for f in folders]
        (bucket / "exp" / f"train_{trial}").mkdir(parents=True)
        (bucket / "exp" / f"train_{trial}" / "result.json").write_text(
            "".join(json.dumps(row) + "\n" for row in rows)
        )
        for folder in folders:
            (bucket / "exp" / f"train_{trial}" / folder).mkdir()
            (bucket / "exp" / f"train_{trial}" / folder / "checkpoint.pt").write_bytes(b"x" * 1000)
    remote = remote_experiment(settings)
    assert remote is not None
    assert remote.download(choose=best_only) == len(TRIALS) * 2  # a result.json and a best each
    assert _left(settings) == {f"train_{t}/{best}" for t, _, _, best in TRIALS}

    summary = {"trials": [
        {"trial_id": t, "status": status, "path": f"train_{t}", "checkpoint": f"train_{t}/{best}"}
        for t, status, _, best in TRIALS
    ]}  # fmt: skip
    pruned = prune_checkpoints(settings, summary)
    stored = {p.relative_to(bucket / "exp").as_posix() for p in bucket.glob("exp/*/checkpoint_*")}
    assert stored == {
        "train_a/checkpoint_000003", "train_b/checkpoint_000000",
        "train_c/checkpoint_000001", "train_c/checkpoint_000002", "train_e/checkpoint_000000",
    }  # fmt: skip
    assert (pruned.folders, pruned.bytes, pruned.trials) == (4, 4000, 3)  # counted at the URI
    assert _left(settings) == {  # the working copy: what was downloaded, less what was pruned
        "train_a/checkpoint_000003", "train_b/checkpoint_000000",
        "train_c/checkpoint_000001", "train_e/checkpoint_000000",
    }  # fmt: skip


def _stored_state(root: Path, named: dict[str, str]) -> None:
    """An experiment state as Ray 2.60 stores it: per trial, its JSON state and its run's."""
    data = [
        [json.dumps({"trial_id": trial}), json.dumps({"last_result": {CHECKPOINT_DIR: folder}})]
        for trial, folder in named.items()
    ]
    (root / "experiment_state-2026-12-05_00-00-00.json").write_text(
        json.dumps({"trial_data": data})
    )


@pytest.mark.parametrize("where", ["folder", "uri"])
def test_a_running_trial_keeps_its_best_and_what_the_stored_state_resumes_from(
    tmp_path: Path, where: str
) -> None:
    """Checkpoints older than the one the stored state names go, but the best; the named one
    and newer ones stay until a stored state names a newer one. The same in a folder and at
    a URI (file:// stands in for a bucket)."""
    folder = tmp_path / "train_transfer_a"
    scores = [0.5, 0.7, 0.6, 0.65, 0.66]  # epochs 1..5; the best is checkpoint_000001
    for index in range(len(scores)):
        (folder / f"checkpoint_00000{index}").mkdir(parents=True)
    pruner = SupersededCheckpoints(
        Store(str(tmp_path) if where == "folder" else f"file://{tmp_path}")
    )
    if where == "uri":  # as Tune restores it from its saved callbacks
        pruner = pickle.loads(pickle.dumps(pruner))
    trial = SimpleNamespace(trial_id="a", path=str(folder))

    def report(index: int) -> None:
        result = {CHECKPOINT_DIR: f"checkpoint_00000{index}", "val_acc": scores[index]}
        pruner.on_trial_result(0, [trial], trial, result)

    def left() -> list[str]:
        return sorted(p.name for p in folder.iterdir())

    report(0)
    report(1)
    report(2)  # no state stored yet: nothing goes
    assert len(left()) == 5
    _stored_state(tmp_path, {"a": "checkpoint_000003"})
    report(3)
    # older than the named one: 0 and 2 go; 1 is the best; 4 is newer than the state knows
    assert left() == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000004"]
    os.utime(tmp_path / "experiment_state-2026-12-05_00-00-00.json", ns=(1, 1))  # read again
    report(4)
    _stored_state(tmp_path, {"a": "checkpoint_000004"})
    report(4)
    assert left() == ["checkpoint_000001", "checkpoint_000004"]


def test_the_best_checkpoint_is_the_later_of_ties_among_those_left() -> None:
    rows = [
        {CHECKPOINT_DIR: "checkpoint_000000", "val_acc": 0.5},
        {CHECKPOINT_DIR: "checkpoint_000001", "val_acc": 0.7},
        {CHECKPOINT_DIR: "checkpoint_000002", "val_acc": 0.7},
        {CHECKPOINT_DIR: "checkpoint_000003", "val_acc": float("nan")},
    ]
    present = ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    assert best_checkpoint(rows, present) == "checkpoint_000002"
    assert best_checkpoint(rows, present[:2]) == "checkpoint_000001"
    assert best_checkpoint(rows, ["checkpoint_000009"]) is None


def test_an_unreadable_stored_state_names_nothing(tmp_path: Path) -> None:
    state = tmp_path / "experiment_state-x.json"
    state.write_text('{"trial_data": [["{\\"trial_id\\": ')  # cut off mid-copy
    assert stored_checkpoints(state.read_text()) == {}


def test_a_pruner_saved_before_uris_were_supported_is_restored_to_the_same_folder(
    tmp_path: Path,
) -> None:
    """Tune's saved callbacks of an older experiment hold the pruner's folder as `root`."""
    old = SupersededCheckpoints.__new__(SupersededCheckpoints)
    old.__setstate__({"root": tmp_path, "_rows": {"a": []}, "_state": None, "_named": {}})
    assert old.store.location == str(tmp_path) and old._rows == {"a": []}
    for index in range(3):
        (tmp_path / "train_transfer_a" / f"checkpoint_00000{index}").mkdir(parents=True)
    _stored_state(tmp_path, {"a": "checkpoint_000002"})
    trial = SimpleNamespace(trial_id="a", path=str(tmp_path / "train_transfer_a"))
    old.on_trial_result(0, [trial], trial, {CHECKPOINT_DIR: "checkpoint_000002", "val_acc": 0.5})
    assert sorted(p.name for p in (tmp_path / "train_transfer_a").iterdir()) == [
        "checkpoint_000002"
    ]


def test_a_storage_error_while_pruning_costs_the_pruning_only(tmp_path: Path) -> None:
    """A URI that cannot be listed (the network) must not fail Tune's loop: the end prunes."""

    class Unreachable(Store):
        def listing(self, folder: str = "") -> list:
            raise OSError("the network is down")

    pruner = SupersededCheckpoints(Unreachable(str(tmp_path)))
    trial = SimpleNamespace(trial_id="a", path=str(tmp_path / "train_transfer_a"))
    result = {CHECKPOINT_DIR: "checkpoint_000000", "val_acc": 0.5}
    pruner.on_trial_result(0, [trial], trial, result)  # raises nothing
    assert pruner._rows["a"] == [result]
