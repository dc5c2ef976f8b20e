"""scripts/board.py refusing bad input; serving a real sweep is tested in test_sweep.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.cli.board import main


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_a_missing_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"no experiment folder at {tmp_path / 'nope'}" in _fails(capsys, str(tmp_path / "nope"))


def test_a_folder_without_event_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train_transfer_x").mkdir()
    assert "holds no trial with TensorBoard event files" in _fails(capsys, str(tmp_path))


def test_a_port_out_of_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "events.out.tfevents.1.host").write_bytes(b"")
    assert "--port must be 0..65535, got 70000" in _fails(capsys, str(tmp_path), "--port", "70000")
