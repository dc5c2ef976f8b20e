"""Hyperparameter importance of a search, by Optuna's evaluators, on the experiment's study.

The study (optuna.db) holds each trial as ASHA left it: few are COMPLETE, and Optuna's
evaluators read only COMPLETE trials. So the importance is computed on a copy in which every
trial that reported is complete with its best `val_acc`, the number the trials are ranked by;
an ASHA-stopped trial then counts with the epochs it got, and a parameter that kept trials
alive past the rungs is credited for it.

Linear probes have no `backbone_lr`. So there are two groups when the sweep has them: every
trial, over the parameters every trial has (freeze_depth, head_lr: the probes' result counts
for freeze_depth), and the trials that train backbone stages, over all three.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)
from optuna.trial import FrozenTrial, TrialState

from search.experiment.study import build_storage
from trainable.config import error_line

MIN_TRIALS = 4  # below this, three parameters' importance says nothing


def _ped_anova(trials: int) -> BaseImportanceEvaluator:
    # Optuna's default quantile, 10 %, takes one or two "top" trials of a 10-20 trial search:
    # at least 5 top trials, at most half of them.
    return PedAnovaImportanceEvaluator(target_quantile=min(0.5, max(0.1, 5 / trials)))


# Optuna's evaluators by the name the report gives them: (name, evaluator for N trials)
EVALUATORS: dict[str, Callable[[int], BaseImportanceEvaluator]] = {
    "PED-ANOVA (Optuna 5's default; top trials against all)": _ped_anova,
    "fANOVA (variance explained; random forest of 64 trees, seeded)": lambda trials: (
        FanovaImportanceEvaluator(seed=0)
    ),
}


@dataclass(frozen=True)
class ImportanceGroup:
    """Importances (summing to 1) per evaluator over one group of trials; a string says why
    an evaluator gave none."""

    label: str
    params: list[str]
    trials: int
    by_method: dict[str, dict[str, float] | str]


def reported_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that reported a value at some epoch and are not running."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.intermediate_values and t.state != TrialState.RUNNING
    ]


def best_values_study(trials: list[FrozenTrial], params: list[str], maximize: bool) -> optuna.Study:
    """An in-memory study of the `trials` that sampled every one of `params`, each COMPLETE
    with its best intermediate value (every evaluator then reads the same trials)."""
    copy = optuna.create_study(direction="maximize" if maximize else "minimize")
    for trial in trials:
        if not all(p in trial.params for p in params):
            continue
        values = list(trial.intermediate_values.values())
        copy.add_trial(
            optuna.trial.create_trial(
                params={p: trial.params[p] for p in params},
                distributions={p: trial.distributions[p] for p in params},
                value=max(values) if maximize else min(values),
            )
        )
    return copy


def _evaluate(study: optuna.Study, params: list[str]) -> dict[str, dict[str, float] | str]:
    """Each evaluator's normalised importances, or why it gave none."""
    trials = len(study.get_trials(deepcopy=False))
    by_method: dict[str, dict[str, float] | str] = {}
    for method, make in EVALUATORS.items():
        with warnings.catch_warnings():  # small-study warnings: the page shows the counts
            warnings.simplefilter("ignore")
            try:
                raw = optuna.importance.get_param_importances(
                    study, evaluator=make(trials), params=params, normalize=False
                )
            except (RuntimeError, ValueError) as error:  # e.g. fANOVA: no variance at all
                by_method[method] = error_line(error)
                continue
        total = sum(raw.values())
        by_method[method] = (
            {p: v / total for p, v in raw.items()}
            if total > 0
            else "no signal: the parameters explain none of the differences"
        )
    return by_method


def param_importance(
    study_file: Path, study_name: str, params: list[str], maximize: bool = True
) -> list[ImportanceGroup] | str:
    """Importance groups (see the module's docstring), or why none can be computed."""
    if not study_file.is_file():
        return "no Optuna study in this experiment (optuna.db)"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=build_storage(study_file.parent))
        reported = reported_trials(study)
    except Exception as error:  # a missing study, or a file of another Optuna version
        return f"the study {study_name!r} in {study_file.name} cannot be read ({error_line(error)})"
    sampled = [p for p in params if any(p in t.params for t in reported)]
    shared = [p for p in sampled if all(p in t.params for t in reported)]
    candidates = [("all trials", shared)]
    if shared != sampled:  # some trials lack a parameter: the ones that have them all
        candidates.append(("trials that train backbone stages", sampled))
    groups, reasons = [], []
    for label, group_params in candidates:
        scored = best_values_study(reported, group_params, maximize)
        count = len(scored.get_trials(deepcopy=False))
        if not group_params or count < MIN_TRIALS:
            reasons.append(f"{label}: {count} trials, importance needs at least {MIN_TRIALS}")
            continue
        groups.append(ImportanceGroup(label, group_params, count, _evaluate(scored, group_params)))
    return groups or "; ".join(reasons)
