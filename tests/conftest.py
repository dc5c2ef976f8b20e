"""Shared fixtures: one session-wide pretrained-weights cache, and the mini sweep."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import Sweep, run_sweep


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's $RAY_ADDRESS must not send the tests' searches to a cluster."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    """Tests run on 2 cores next to Ray workers: one torch thread keeps them predictable."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh pretrained-backbone cache for the whole session (the first user pretrains)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def _cache_in_session(cache_dir: Path) -> Iterator[None]:
    """Trials built without an explicit cache_dir use the session's, not ~/.cache."""
    previous = os.environ.get("TRANSFER_TUNE_CACHE")
    os.environ["TRANSFER_TUNE_CACHE"] = str(cache_dir)
    yield
    if previous is None:
        del os.environ["TRANSFER_TUNE_CACHE"]
    else:
        os.environ["TRANSFER_TUNE_CACHE"] = previous


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Sweep]:
    """The mini sweep through the real CLI, run once per session (helpers.run_sweep)."""
    done = run_sweep(tmp_path_factory.mktemp("sweep"), cache_dir)
    yield done
    shutil.rmtree(done.ray_dir, ignore_errors=True)
