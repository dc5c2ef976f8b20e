"""Hyperparameter importance of a search, by Optuna's evaluators, on the experiment's study.

The study (optuna.db) holds each trial as ASHA left it: few are COMPLETE, and Optuna's
evaluators read only COMPLETE trials. So the importance is computed on a copy in which every
trial that reported is complete with its best `val_acc`, the number the trials are ranked by;
an ASHA-stopped trial then counts with the epochs it got, and a parameter that kept trials
alive past the rungs is credited for it. Linear probes have no `backbone_lr`, so the three
parameters are assessed on the trials that sampled all three.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
from optuna.trial import TrialState

from search.optuna_bridge import build_storage

MIN_TRIALS = 4  # below this, a random forest over three parameters says nothing
# Optuna's evaluators, by the name the report gives them
EVALUATORS = {
    "fANOVA (Optuna's default: variance explained, random forest of 64 trees)": lambda: (
        FanovaImportanceEvaluator(seed=0)
    ),
    "PED-ANOVA (top 10 % of trials against all)": lambda: PedAnovaImportanceEvaluator(),
}


@dataclass(frozen=True)
class Importance:
    """Importances (normalised to sum 1) per evaluator, and what they were computed on."""

    by_method: dict[str, dict[str, float]]
    params: list[str]
    trials: int  # trials the importance was computed on
    left_out: int  # trials that reported but lack a parameter (linear probes)


def best_values_study(study: optuna.Study, maximize: bool) -> optuna.Study:
    """An in-memory copy of `study`: each trial with intermediate values becomes COMPLETE with
    its best one."""
    copy = optuna.create_study(direction="maximize" if maximize else "minimize")
    for trial in study.get_trials(deepcopy=False):
        values = list(trial.intermediate_values.values())
        if not values or trial.state == TrialState.RUNNING:
            continue
        copy.add_trial(
            optuna.trial.create_trial(
                params=trial.params,
                distributions=trial.distributions,
                value=max(values) if maximize else min(values),
            )
        )
    return copy


def param_importance(
    study_file: Path, study_name: str, params: list[str], maximize: bool = True
) -> Importance | str:
    """Importance of `params` by each of EVALUATORS, or why it cannot be computed."""
    if not study_file.is_file():
        return "no Optuna study in this experiment (optuna.db)"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=build_storage(study_file.parent))
    scored = best_values_study(study, maximize)
    reported = scored.get_trials(deepcopy=False)
    complete = [t for t in reported if all(p in t.params for p in params)]
    if len(complete) < MIN_TRIALS:
        return (
            f"{len(complete)} trials sampled all of {', '.join(params)}; "
            f"importance needs at least {MIN_TRIALS}"
        )
    by_method = {}
    for method, make in EVALUATORS.items():
        with warnings.catch_warnings():  # PED-ANOVA warns about small studies; counts are shown
            warnings.simplefilter("ignore")
            by_method[method] = optuna.importance.get_param_importances(
                scored, evaluator=make(), params=params
            )
    return Importance(by_method, params, len(complete), len(reported) - len(complete))
