import shutil
from pathlib import Path

import pytest
import torch

from trainable.backbones import build_model
from trainable.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_KEYS,
    BackgroundSave,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from trainable.config import TrialConfig
from trainable.files import write_atomically
from trainable.loop import build_trial_model, run_trial, trained_model

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


def test_a_resumed_trial_takes_the_newest_readable_checkpoint_whose_epoch_was_logged(
    tmp_path: Path,
) -> None:
    """Ctrl-C can cross a report: result.json has epoch 2 while Tune's state names epoch 1. A
    checkpoint cut short or removed is passed over; the epochs after the one taken that were
    logged already are replayed without reporting (the trial learns the last logged epoch)."""
    from trainable.metrics import RESULT_FILE
    from trainable.ray_entry import starting_checkpoint

    def state(epoch: int) -> dict:
        return {"model": {}, "optimizer": {}, "epoch": epoch, "config": {}, "classes": [],
                "prior_best_val_acc": 0.5, "prior_best_epoch": 0,
                "frozen_fingerprint": ""}  # fmt: skip

    def start(named: int | None) -> tuple[int | None, int]:
        file = None if named is None else tmp_path / f"checkpoint_00000{named}" / CHECKPOINT_FILE
        resume, logged = starting_checkpoint(tmp_path, file, notes.append)
        return (resume["epoch"] if resume else None), logged

    notes: list[str] = []
    for index, epoch in ((0, 1), (1, 2), (2, 3)):
        save_checkpoint(tmp_path / f"checkpoint_00000{index}" / CHECKPOINT_FILE, state(epoch))
    (tmp_path / RESULT_FILE).write_text('{"epoch": 1}\n{"epoch": 2}\n')
    # epoch 3's checkpoint was saved but never logged: it is run again, not skipped
    assert start(0) == (2, 2) and start(None) == (2, 2) and start(1) == (2, 2)
    assert notes[0].startswith("resumed from checkpoint_000001 (epoch 2): the newest readable")
    (tmp_path / "checkpoint_000001" / CHECKPOINT_FILE).write_bytes(b"half a file")
    assert start(0) == (1, 2)  # epoch 2 is replayed, not reported again
    assert start(1) == (1, 2) and "checkpoint_000001 unreadable" in notes[-2]
    shutil.rmtree(tmp_path / "checkpoint_000000")  # and Tune's named one is gone
    assert start(0) == (None, 2)


def _checkpoint_of(cfg: TrialConfig, epoch: int, tmp_path: Path) -> dict:
    """The checkpoint a trial of `cfg` writes after `epoch`, read back from its file."""
    for result, state in run_trial(cfg):
        if result["epoch"] == epoch:
            save_checkpoint(tmp_path / "c.pt", state)
            return load_checkpoint(tmp_path / "c.pt")
    raise AssertionError(f"no epoch {epoch}")


def test_a_checkpoint_holds_what_trains_not_the_frozen_stages(tmp_path: Path) -> None:
    full = set(build_trial_model(CFG, 5).state_dict())
    lean = _checkpoint_of(CFG, 1, tmp_path)  # stem, layer1 and layer2 frozen
    assert set(lean["model"]) == {k for k in full if k.startswith(("layer3.", "layer4.", "fc."))}
    probe = TrialConfig(**{**CFG.to_dict(), "freeze_depth": 5, "backbone_lr": None})
    head = _checkpoint_of(probe, 1, tmp_path)
    assert set(head["model"]) == {"fc.weight", "fc.bias"}
    assert (tmp_path / "c.pt").stat().st_size < 50_000  # the head and its momentum; whole: 90 MB


def test_the_last_epoch_keeps_no_optimizer_state(tmp_path: Path) -> None:
    assert _checkpoint_of(CFG, 1, tmp_path)["optimizer"]["state"]
    assert _checkpoint_of(CFG, 2, tmp_path)["optimizer"] == {}  # max_epochs: nothing follows


def test_a_lean_checkpoint_restores_the_whole_model(tmp_path: Path) -> None:
    for result, state in run_trial(CFG):
        trained = {key: value.clone() for key, value in state["model"].items()}
        if result["epoch"] == 2:
            break
    save_checkpoint(tmp_path / "c.pt", state)
    model = trained_model(CFG, load_checkpoint(tmp_path / "c.pt"))
    reference = build_trial_model(CFG, 5).state_dict()  # the frozen stages: starting weights
    for key, value in model.state_dict().items():
        expected = trained.get(key, reference[key])
        assert torch.equal(value, expected), key


def test_other_starting_weights_are_refused_in_one_line(tmp_path: Path) -> None:
    checkpoint = _checkpoint_of(CFG, 1, tmp_path)
    other = TrialConfig(**{**CFG.to_dict(), "seed": 1})  # random weights of another seed
    with pytest.raises(CheckpointError, match=r"trained on other frozen stages") as error:
        trained_model(other, checkpoint)
    assert "\n" not in str(error.value)


def test_a_checkpoint_made_before_lean_ones_still_restores(tmp_path: Path) -> None:
    model = build_trial_model(CFG, 5)
    old = {"model": model.state_dict(), "optimizer": {}, "epoch": 2, "config": CFG.to_dict(),
           "classes": list("56789"), "best_val_acc": 0.5}  # fmt: skip
    gone = TrialConfig(**{**CFG.to_dict(), "weights": "/no/such/weights.pt"})
    restored = trained_model(gone, old)  # it holds every tensor: no starting weights needed
    assert all(torch.equal(a, b) for a, b in zip(
        restored.state_dict().values(), model.state_dict().values(), strict=True))  # fmt: skip
    resumed = [result for result, _ in run_trial(CFG, old)]
    assert resumed == []  # its epoch 2 was the last


def test_a_background_write_reports_its_error_to_the_trial(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the checkpoint's folder should be")
    writer = BackgroundSave()
    _, state = next(run_trial(CFG))
    writer.start(tmp_path / "taken" / CHECKPOINT_FILE, state)
    with pytest.raises(OSError):
        writer.wait()
    writer.start(tmp_path / "ok" / CHECKPOINT_FILE, state)
    writer.wait()
    assert load_checkpoint(tmp_path / "ok" / CHECKPOINT_FILE)["epoch"] == 1


def test_a_resume_on_other_starting_weights_is_refused_before_ray_starts(tmp_path: Path) -> None:
    """search.run.resume.checkpoint_problems: each trial to resume, its newest checkpoint."""
    from search.run.resume import checkpoint_problems

    trial = tmp_path / "train_transfer_x"
    checkpoint = _checkpoint_of(CFG, 1, tmp_path)
    save_checkpoint(trial / "checkpoint_000000" / CHECKPOINT_FILE, checkpoint)
    assert checkpoint_problems([trial], CFG, {}) == []  # the seeded weights it started from
    torch.manual_seed(1)
    other = build_model("resnet18", 5).state_dict()  # other weights
    (problem,) = checkpoint_problems([trial], CFG, {CFG.backbone: other})
    assert problem.startswith("train_transfer_x's checkpoint checkpoint_000000 trained on")
    (trial / "checkpoint_000001").mkdir()
    (trial / "checkpoint_000001" / CHECKPOINT_FILE).write_bytes(b"half written")
    assert (
        len(checkpoint_problems([trial], CFG, {CFG.backbone: other})) == 1
    )  # the older, readable one
