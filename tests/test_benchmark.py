"""scripts/benchmark.py: its smoke mode end to end, and its bad input (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from search.benchmark import format_markdown

pytestmark = pytest.mark.sweep  # it runs real trials and two small searches


def test_the_quick_benchmark_writes_every_figure(tmp_path: Path, cache_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick",
         "--json", str(tmp_path / "b.json"), "--cache-dir", str(cache_dir)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "b.json").read_text())
    for name, variants in (("trial_logging", {"summaries", "none"}),
                           ("wandb_sweep", {"offline", "disabled"})):  # fmt: skip
        assert report[f"{name}_overhead_ratio"] > 0
        assert set(report[f"{name}_seconds"]) == variants
    assert done.stdout.strip() == format_markdown(report)
    assert list(tmp_path.iterdir()) == [tmp_path / "b.json"]  # its runs went to a scratch folder


def test_an_unknown_flag_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--fast"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "benchmark.py: error: unrecognized arguments: --fast (see --help)"
    ]
