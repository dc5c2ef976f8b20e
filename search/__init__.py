"""HOW to search: settings, Optuna searcher, ASHA scheduler, loggers, Tuner and summary."""

import os

# Read by Ray when it is imported, so set here, before any `search` module imports Ray.
# Each is only a default: a value the user exported wins.
for _name, _value in {
    # A local Ray listens on 127.0.0.1 only (by default it listens on every interface).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # this harness sends nothing anywhere
    # Ray's own progress tables are replaced by search.tracking.progress (its new engine prints a
    # banner even at verbose=0; the classic one prints nothing at verbose=0).
    "RAY_AIR_NEW_OUTPUT": "0",
    # Expected with a checkpoint per epoch and num_to_keep=1: a state snapshot per checkpoint.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Starting a trial's W&B run blocks the driver ~2 s on 2 cores; warn only beyond 5 s.
    "TUNE_WARN_THRESHOLD_S": "5",
}.items():
    os.environ.setdefault(_name, _value)
