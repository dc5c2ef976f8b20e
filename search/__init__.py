"""HOW to search, in layers: config -> experiment -> {tracking, results} -> run -> cli
(docs/development.md)."""

import importlib
import importlib.abc
import importlib.util
import os
import sys

# Read by Ray when it is imported, so set here, before any `search` module imports Ray.
# Each is only a default: a value the user exported wins.
for _name, _value in {
    # A local Ray listens on 127.0.0.1 only (by default it listens on every interface).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # this harness sends nothing anywhere
    # Ray's own progress tables are replaced by search.tracking.progress (its new engine prints a
    # banner even at verbose=0; the classic one prints nothing at verbose=0).
    "RAY_AIR_NEW_OUTPUT": "0",
    # Expected: a state snapshot per checkpoint (search.run.session.state_saved_every_checkpoint).
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Starting a trial's W&B run blocks the driver ~2 s on 2 cores; warn only beyond 5 s.
    "TUNE_WARN_THRESHOLD_S": "5",
    # Ray prints a traceback for a failed task nobody waits for: here a trial cut off while the
    # search stops (its checkpoint resumes it). The search's own actor keeps its errors.
    "RAY_IGNORE_UNHANDLED_ERRORS": "1",
}.items():
    os.environ.setdefault(_name, _value)


# Where the modules of search/ lived before it was split into layers. Experiments made then
# hold pickles (tuner.pkl, the searcher's state) that name their classes and functions by the
# old paths; each old name imports the module that now holds them, so those experiments still
# resume and extend.
MOVED = {
    **{f"search.{old}": f"search.config.{old}" for old in ("usage", "wandb_mode")},
    **{f"search.{old}": f"search.experiment.{old}" for old in ("layout", "storage", "retention")},
    **{
        f"search.{old}": f"search.tracking.{old}"
        for old in ("progress", "tensorboard", "wandb_runs", "wandb_actor")
    },
    "search.loggers": "search.tracking.callbacks",
    **{
        f"search.{old}": f"search.results.{old}"
        for old in ("summary", "report", "plots", "importance", "export", "predict", "board")
    },
    **{
        f"search.{old}": f"search.run.{old}"
        for old in ("session", "optuna_bridge", "cluster", "inputs", "resume", "finish")
    },
    "search.builders": "search.run.tuner",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a module of search/'s old flat layout as the module that now holds it."""

    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        pass


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
