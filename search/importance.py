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
from trainable.config import error_line

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

    by_method: dict[str, dict[str, float] | str]  # a string: why the method gave none
    params: list[str]
    trials: int  # trials the importance was computed on
    left_out: int  # trials that reported but lack a parameter (linear probes)


def reported_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that reported a value at some epoch and are not running."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.intermediate_values and t.state != TrialState.RUNNING
    ]


def best_values_study(
    trials: list[optuna.trial.FrozenTrial], params: list[str], maximize: bool
) -> optuna.Study:
    """An in-memory study of the `trials` that sampled every one of `params`, each COMPLETE
    with its best intermediate value (every evaluator then reads the same trials)."""
    copy = optuna.create_study(direction="maximize" if maximize else "minimize")
    for trial in trials:
        values = list(trial.intermediate_values.values())
        if not all(p in trial.params for p in params):
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
    """Importance of `params` by each of EVALUATORS, or why it cannot be computed. A parameter
    no trial sampled (backbone_lr when every trial is a linear probe) is left out."""
    if not study_file.is_file():
        return "no Optuna study in this experiment (optuna.db)"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=build_storage(study_file.parent))
        reported = reported_trials(study)
    except Exception as error:  # a missing study, or a file of another Optuna version
        return f"the study {study_name!r} in {study_file.name} cannot be read ({error_line(error)})"
    params = [p for p in params if any(p in t.params for t in reported)]
    scored = best_values_study(reported, params, maximize)
    complete = scored.get_trials(deepcopy=False)
    if not params or len(complete) < MIN_TRIALS:
        return (
            f"{len(complete)} trials sampled all of {', '.join(params) or 'the parameters'}; "
            f"importance needs at least {MIN_TRIALS}"
        )
    by_method: dict[str, dict[str, float] | str] = {}
    for method, make in EVALUATORS.items():
        with warnings.catch_warnings():  # PED-ANOVA warns about small studies; counts are shown
            warnings.simplefilter("ignore")
            try:
                by_method[method] = optuna.importance.get_param_importances(
                    scored, evaluator=make(), params=params
                )
            except (RuntimeError, ValueError) as error:  # e.g. every trial scored the same
                by_method[method] = error_line(error)
    return Importance(by_method, params, len(complete), len(reported) - len(complete))
