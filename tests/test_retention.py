"""Which checkpoints an ended search keeps (search.experiment.retention), on a folder laid out
as Ray's."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.config.settings import SearchSettings
from search.experiment.retention import prune_checkpoints

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
