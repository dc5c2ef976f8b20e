"""The experiment folder `<storage-path>/<name>/`, every file name in one place.

Plain constants: every command line reads them before importing anything heavy. What Ray Tune
and Optuna write is named here as the harness relies on it; search.experiment.saved_state
reads their contents.

    <name>/
      settings.json                  the resolved settings the experiment was made with
      prescreen.json                 with --backbones: the pre-screen (search.run.prescreen)
      time_budget.json               with --time-budget: each run's, what it stopped
      optuna.db                      the Optuna study, named after the experiment
      summary.json, report.html      what the search found (search.results)
      events.out.tfevents.*          the experiment's TensorBoard HParams table
      wandb/                         offline W&B runs, one per trial
      .lock, .lock.holder            held by the one search, --resume or --extend running
      tuner.pkl, experiment_state-*.json, search_gen_state-*.json, searcher-state-*.pkl
                                     Ray Tune's state, read by a resume
      <trial>/                       one per trial (Ray Tune's): params.json, result.json,
        events.out.tfevents.*        progress.csv, error.txt, TensorBoard events and
        checkpoint_000003/           its kept checkpoints: checkpoint.pt (and the best
          checkpoint.pt, model.pt    trial's whole model.pt)
"""

from __future__ import annotations

# Named by the trial's code, which never imports search; listed here with the rest.
from trainable.files import CHECKPOINT_FILE, MODEL_FILE  # noqa: F401

# Written by the driver, at the experiment's root
SETTINGS_FILE = "settings.json"
STUDY_FILE = "optuna.db"
SUMMARY_FILE = "summary.json"  # search.results.summary
REPORT_FILE = "report.html"  # search.results.report
# With --backbones: the pre-screen's scores, and what it dropped and warm-started
# (search.run.prescreen)
PRESCREEN_FILE = "prescreen.json"
# With --time-budget: each run's budget, and the trials it stopped (search.run.budget)
BUDGET_FILE = "time_budget.json"
DRIVER_FILES = (SETTINGS_FILE, STUDY_FILE, SUMMARY_FILE, REPORT_FILE, PRESCREEN_FILE, BUDGET_FILE)
WANDB_FOLDER = "wandb"  # offline W&B runs (search.tracking.wandb_runs)
# One writer at a time (search.experiment.lock): the lock, and who holds it
LOCK_FILE, LOCK_HOLDER = ".lock", ".lock.holder"
EVENTS_PREFIX = "events.out.tfevents"  # TensorBoard event files, here and in trial folders
# A trial's events file written when the search stopped it (search.tracking.tensorboard)
INTERRUPTED_SUFFIX = ".interrupted"
# A stored (URI) experiment's working copy: a consistent snapshot of optuna.db taken while the
# study is open, and what was downloaded and uploaded, when (search.experiment.storage)
UPLOAD_SUFFIX = ".upload"
MANIFEST = ".synced.json"

# Written by Ray Tune (2.60): at its root, and in each trial's folder
TUNER_FILE = "tuner.pkl"
# At every experiment snapshot; a restore reads the newest of each: (pattern, format)
STATE_PATTERNS = {
    "experiment state": ("experiment_state-*.json", "json"),
    "search state": ("search_gen_state-*.json", "pickle"),  # a pickle, despite its name
    # JSON written by the harness's searcher (search.run.optuna_bridge), despite its name; a
    # pickle in experiments made before it
    "searcher state": ("searcher-state-*.pkl", "searcher"),
}
SEARCHER_STATE_FORMAT = "transfer-tune searcher state 1"  # its first key's value
# Each trial's folder: `train_transfer_<trial id>` (search.run.tuner.trial_dirname)
TRIAL_FOLDER_PREFIX = "train_transfer_"
ERROR_FILE = "error.txt"  # the traceback of a failed trial
CHECKPOINT_PREFIX = "checkpoint_"  # its checkpoint folders: checkpoint_000000, ...
CHECKPOINT_GLOB = CHECKPOINT_PREFIX + "*"
EVENTS_GLOB = EVENTS_PREFIX + ".*"
