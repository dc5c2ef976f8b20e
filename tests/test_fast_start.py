"""Every command line answers --help, --version and a mistake before importing torch,
torchvision, Ray or Optuna: checked by what each has imported when it answers, not by time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

HEAVY = ("torch", "torchvision", "ray", "optuna", "matplotlib", "wandb", "pyarrow")

# Runs a command's main in a fresh interpreter, then prints the heavy modules it imported.
PROBE = """
import json, sys
sys.path = [p for p in sys.path if not p.endswith("scripts")]
sys.path.insert(0, {root!r})
from {module} import main
try:
    code = main({argv!r})
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def _imported(module: str, argv: list[str], cwd: Path) -> dict:
    code = PROBE.format(root=str(ROOT), module=module, argv=argv, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


@pytest.mark.parametrize(
    ("module", "argv", "code"),
    [
        ("search.cli.search", ["--help"], 0),
        ("search.cli.search", ["--version"], 0),
        ("search.cli.search", ["--num-sample", "3"], 2),  # a typo in a flag
        ("search.cli.search", ["--num-samples", "0", "--space", "nope"], 2),
        ("search.cli.search", ["--data", "imagefolder:/no/such/folder"], 2),
        ("search.cli.search", ["--weights", "/no/such/file.pt"], 2),
        ("search.cli.search", ["--resume"], 2),
        ("search.cli.report", ["--help"], 0),
        ("search.cli.report", ["/no/such/experiment"], 2),
        ("search.cli.export", ["--help"], 0),
        ("search.cli.export", ["/no/such/experiment", "--out", "m.pt"], 2),
        ("search.cli.predict", ["--help"], 0),
        ("search.cli.predict", ["/no/such/model.pt", "x.png"], 2),
        ("search.cli.board", ["--help"], 0),
        ("search.cli.main", ["--help"], 0),
        ("search.cli.main", ["--version"], 0),
        ("search.cli.main", ["serch"], 2),  # a typo in the subcommand
        ("search.cli.main", ["search", "--help"], 0),
        ("search.cli.main", ["report", "/no/such/experiment"], 2),
        ("search.cli.main", ["benchmark", "--json", "/no/such/folder/b.json"], 2),
    ],
)
def test_answers_before_importing_anything_heavy(
    tmp_path: Path, module: str, argv: list[str], code: int
) -> None:
    outcome = _imported(module, argv, tmp_path)
    assert outcome["code"] == code, outcome["stderr"]
    assert outcome["heavy"] == [] or set(outcome["heavy"]) <= {"pyarrow"}, outcome["heavy"]
    if code == 2:
        assert len(outcome["stderr"].strip().splitlines()) == 1, outcome["stderr"]


def test_version_names_the_package() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "search.py"), "--version"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("transfer-tune ")


def test_one_command_names_its_subcommands_in_its_errors() -> None:
    """`transfer-tune SUB` is SUB's scripts/*.py, and says which it is."""
    from search.cli.main import SUBCOMMANDS, usage

    assert set(SUBCOMMANDS) == {"search", "report", "board", "export", "predict", "benchmark"}
    assert all(f"  {name} " in usage() for name in SUBCOMMANDS)
    done = subprocess.run(
        [sys.executable, "-c", "from search.cli.main import main; main(['export', '/nope'])"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.stderr.startswith("transfer-tune export: error:"), done.stderr
