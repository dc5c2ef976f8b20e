"""One writer per experiment (search.experiment.lock): a second claim names the holder, a
holder that died leaves a lock the next claim takes over, and a refused new experiment leaves
no folder behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from search.config.usage import UsageError
from search.experiment import lock
from search.experiment.layout import LOCK_HOLDER, SETTINGS_FILE

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from search.experiment.lock import claim
claim(__import__("pathlib").Path({folder!r}), create={create})
print("held", flush=True)
time.sleep(120)
"""


def _holder(folder: Path, create: bool = False) -> subprocess.Popen:
    """Another process holding `folder`, once it has said so."""
    code = HOLD.format(root=str(ROOT), folder=str(folder), create=create)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(autouse=True)
def _release_all() -> None:
    yield
    for folder in list(lock._HELD):
        lock.abandon(folder)


def test_a_second_claim_names_the_holder_and_a_dead_holders_lock_is_taken_over(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "exp"
    holder = _holder(folder, create=True)
    try:
        with pytest.raises(UsageError, match=rf"is in use by PID {holder.pid} on \S+ since "):
            lock.claim(folder, create=False)
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the OS releases its lock
        holder.wait()
    lock.claim(folder, create=False)
    assert json.loads((folder / LOCK_HOLDER).read_text())["pid"] != holder.pid


def test_a_new_experiment_that_exists_is_refused(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    with pytest.raises(UsageError, match=r"already exists and is never overwritten"):
        lock.claim(tmp_path / "exp", create=True)


def test_a_refused_new_experiment_leaves_no_folder_but_one_with_trials_stays(
    tmp_path: Path,
) -> None:
    made = tmp_path / "made"
    lock.claim(made, create=True)
    (made / SETTINGS_FILE).write_text("{}")
    lock.abandon(made)
    assert not made.exists()
    ran = tmp_path / "ran"
    lock.claim(ran, create=True)
    (ran / "train_transfer_1").mkdir()  # a trial began: never removed
    lock.abandon(ran)
    assert (ran / "train_transfer_1").is_dir()
    lock.claim(ran, create=False)  # released: free to claim again
