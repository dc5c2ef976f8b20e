"""The experiment's Optuna study: where it is stored (optuna.db, SQLite), and the user
attribute that ties a study trial to its Tune trial."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from search.config.settings import METRIC
from search.experiment.layout import STUDY_FILE, TRIAL_FOLDER_PREFIX
from trainable import metrics

if TYPE_CHECKING:
    import optuna


def study_url(experiment_dir: Path) -> str:
    """SQLAlchemy URL of the study, as the `optuna` CLI and optuna-dashboard take it."""
    return f"sqlite:///{experiment_dir / STUDY_FILE}"


# A study trial's user attributes: which Tune trial it is, and its number in the search (the
# study's own `number` counts from 0, and also counts trials a crash left behind).
TUNE_TRIAL_ID = "tune_trial_id"
TRIAL_NUMBER_ATTR = "trial_number"

# Between a backbone's name and a parameter in the study's names of a searched backbone's own
# parameters: "resnet18:freeze_depth". Each backbone has its own depths and ranges, so TPE
# models each apart (its `group` option fits the trials of each backbone jointly).
BACKBONE_PARAM = ":"


def study_param(backbone: str, name: str) -> str:
    """The study's name of parameter `name` of `backbone` when the backbone is searched."""
    return f"{backbone}{BACKBONE_PARAM}{name}"


def prune_running(experiment_dir: Path, study_name: str, trial_ids: set[str]) -> None:
    """Tell the study that these Tune trials, stopped without the searcher hearing of it
    (--time-budget's stop of every running trial), are PRUNED: stopped early, as ASHA does."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=build_storage(experiment_dir))
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get(TUNE_TRIAL_ID) in trial_ids:
            study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)


def catch_up(experiment_dir: Path, study_name: str) -> int:
    """Report to each unfinished study trial the epochs its trial folder logged that it has
    not heard of; return how many. Tune tells the searcher of a trial's last epoch only as it
    stops the trial, after the epoch is logged: a driver stopped in between (Ctrl-C, a kill)
    leaves a study one epoch behind, and the resumed trial, with nothing left to run, would
    end PRUNED while its folder says it ran every epoch. The searcher restores its curves from
    the study (search.run.optuna_bridge)."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=build_storage(experiment_dir))
    added = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        folder = experiment_dir / f"{TRIAL_FOLDER_PREFIX}{trial.user_attrs.get(TUNE_TRIAL_ID)}"
        heard = set(trial.intermediate_values)
        for row in metrics.result_rows(folder):
            step, value = row.get(metrics.EPOCH), row.get(METRIC)
            if not isinstance(step, int) or not isinstance(value, (int, float)):
                continue
            if step not in heard and math.isfinite(value):
                optuna.Trial(study, trial._trial_id).report(float(value), step)
                heard.add(step)
                added += 1
    return added


def build_storage(experiment_dir: Path) -> optuna.storages.RDBStorage:
    """The SQLite study storage in the experiment folder."""
    return storage_at(study_url(experiment_dir))


def storage_at(url: str) -> optuna.storages.RDBStorage:
    """The study storage at SQLAlchemy URL `url` (study_url's)."""
    import optuna

    # A reader (optuna-dashboard) may hold the file briefly; wait rather than fail a sweep.
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
