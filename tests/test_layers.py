"""Imports point one way (docs/development.md): in `search/`, cli -> run -> {tracking,
results} -> experiment -> config; `trainable/` never imports `search` or `spaces`; `spaces`
imports only the standard library, itself and `ray.tune`. Every import counts, also one inside
a function or under TYPE_CHECKING: a lazy import is still a dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top; a module may import its own layer and the layers below.
LAYERS = {"config": 0, "experiment": 1, "tracking": 2, "results": 2, "run": 3, "cli": 4}
APART = {("tracking", "results"), ("results", "tracking")}  # same rank, never each other


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in `source`, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from search.run import search` imports the module search.run.search
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "search" and parts[1] in LAYERS else None


def wrong_way(module: str, source: str) -> list[str]:
    """The imports of `module` (dotted name) with text `source` that go the wrong way."""
    top = module.split(".")[0]
    problems = []
    for line, name in imported_modules(source):
        root = name.split(".")[0]
        if top == "trainable" and root in ("search", "spaces"):
            problems.append(f"{module}:{line} imports {name}: trainable never imports {root}")
        elif top == "spaces" and root not in ("spaces", *sys.stdlib_module_names):
            if name != "ray" and not name.startswith("ray.tune"):
                problems.append(f"{module}:{line} imports {name}: spaces imports only ray.tune")
        elif top == "search" and root == "search":
            here, there = _layer(module), _layer(name)
            if here is None or there is None:  # the package itself: no layer
                continue
            if LAYERS[there] > LAYERS[here] or (here, there) in APART:
                problems.append(f"{module}:{line} imports {name}: {here} may not import {there}")
    return problems


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("search", "trainable", "spaces"):
        for path in sorted((ROOT / package).rglob("*.py")):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found.append((dotted.removesuffix(".__init__"), path))
    return found


def test_every_layer_of_search_is_a_package() -> None:
    flat = [p.name for p in (ROOT / "search").glob("*.py") if p.name != "__init__.py"]
    assert flat == [], "a module of search/ belongs in one of its layers"
    assert {p.name for p in (ROOT / "search").iterdir() if (p / "__init__.py").exists()} == set(
        LAYERS
    )


def test_imports_point_one_way() -> None:
    problems = [
        problem for module, path in _modules() for problem in wrong_way(module, path.read_text())
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("search.config.settings", "from search.run.search import run_search"),
        ("search.experiment.storage", "def f():\n    import search.results.summary"),
        ("search.tracking.progress", "from search.results import summary"),
        ("search.results.report", "from search.tracking.tensorboard import STOP_CODES"),
        ("search.run.finish", "from search.cli.search import main"),
        ("trainable.loop", "from search.config.settings import METRIC"),
        ("trainable.data", "import spaces"),
        ("spaces.resnet", "import torch"),
    ],
)
def test_a_wrong_way_import_is_found(module: str, source: str) -> None:
    assert len(wrong_way(module, source)) >= 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("search.cli.search", "from search.run.search import run_search"),
        ("search.results.summary", "from search.experiment.outcomes import fmt"),
        ("search.run.cluster", "import search"),
        ("spaces.resnet", "from ray import tune\nimport math"),
        ("trainable.loop", "import torch"),
    ],
)
def test_a_right_way_import_passes(module: str, source: str) -> None:
    assert wrong_way(module, source) == []


def test_pickles_of_experiments_made_before_the_layers_still_load() -> None:
    """tuner.pkl and the searcher's state name classes by module path: the old flat paths
    (search.builders, search.optuna_bridge, ...) import the modules that hold them now.
    In a fresh interpreter, as a --resume would meet them."""
    names = {
        "search.builders": "trial_dirname",
        "search.optuna_bridge": "BudgetAwareOptunaSearch",
        "search.progress": "ProgressReporter",
        "search.tensorboard": "TrialBoardCallback",
        "search.wandb_runs": "TrialRunsCallback",
        "search.loggers": "StudyUpload",
    }
    code = (
        "import pickle, sys\n"
        f"for old, name in {names!r}.items():\n"
        "    thing = pickle.loads(f'c{old}\\n{name}\\n.'.encode())\n"
        "    assert thing.__module__.startswith(('search.run.', 'search.tracking.')), thing\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
