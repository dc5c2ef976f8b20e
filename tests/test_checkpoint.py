from pathlib import Path

import pytest
import torch

from trainable.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_KEYS,
    load_checkpoint,
    save_checkpoint,
    write_atomically,
)
from trainable.config import TrialConfig
from trainable.loop import run_trial

# Scratch weights keep these tests free of source pretraining; 16 px images keep them fast.
CFG = TrialConfig(
    freeze_depth=3, backbone_lr=1e-2, head_lr=1e-1, weights="none", max_epochs=2, image_size=16
)


def test_a_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    _, state = next(run_trial(CFG))
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    assert set(loaded) == set(CHECKPOINT_KEYS)
    assert loaded["epoch"] == 1 and loaded["config"] == CFG.to_dict()
    assert loaded["classes"] == ["5", "6", "7", "8", "9"]
    for key, tensor in state["model"].items():
        assert torch.equal(loaded["model"][key], tensor), key
    assert [g["name"] for g in loaded["optimizer"]["param_groups"]] == ["head", "backbone"]


def test_resuming_from_a_checkpoint_continues_exactly(tmp_path: Path) -> None:
    straight = [result for result, _ in run_trial(CFG)]
    first, state = next(run_trial(CFG))
    save_checkpoint(tmp_path / "c.pt", state)
    resumed = [result for result, _ in run_trial(CFG, load_checkpoint(tmp_path / "c.pt"))]
    assert [r["epoch"] for r in resumed] == [2]
    assert first["train_loss"] == pytest.approx(straight[0]["train_loss"], rel=1e-6)
    assert resumed[0]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-5)
    assert resumed[0]["val_acc"] == pytest.approx(straight[1]["val_acc"], abs=1e-9)


def test_an_incomplete_state_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"checkpoint state lacks \['optimizer'"):
        save_checkpoint(tmp_path / "c.pt", {"model": {}, "epoch": 1})
    assert not (tmp_path / "c.pt").exists()


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    write_atomically(path, lambda f: f.write(b"old"))
    path.chmod(0o640)

    def crash(f: object) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, crash)
    assert path.read_bytes() == b"old"
    write_atomically(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]  # no temporary left


def test_a_resumed_trial_takes_the_newer_checkpoint_whose_epoch_was_logged(tmp_path: Path) -> None:
    """Ctrl-C can cross a report: result.json has epoch 2 while Tune's state names epoch 1."""
    from trainable.metrics import RESULT_FILE
    from trainable.ray_entry import newest_logged_checkpoint

    def state(epoch: int) -> dict:
        return {"model": {}, "optimizer": {}, "epoch": epoch, "config": {}, "classes": [],
                "best_val_acc": 0.5}  # fmt: skip

    for index, epoch in ((0, 1), (1, 2), (2, 3)):
        save_checkpoint(tmp_path / f"checkpoint_00000{index}" / CHECKPOINT_FILE, state(epoch))
    (tmp_path / RESULT_FILE).write_text('{"epoch": 1}\n{"epoch": 2}\n')
    # epoch 3's checkpoint was saved but never logged: it is run again, not skipped
    assert newest_logged_checkpoint(tmp_path, state(1))["epoch"] == 2
    assert newest_logged_checkpoint(tmp_path, None)["epoch"] == 2
    assert newest_logged_checkpoint(tmp_path, state(2))["epoch"] == 2
    (tmp_path / "checkpoint_000001" / CHECKPOINT_FILE).write_bytes(b"half a file")
    assert newest_logged_checkpoint(tmp_path, state(1))["epoch"] == 1
