"""Hyperparameter importance of a search, by one of Optuna's evaluators (PED-ANOVA, Optuna 5's
default), on the experiment's study; not shown below MIN_TRIALS trials.

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
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.importance import BaseImportanceEvaluator, PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from search.experiment.study import BACKBONE_PARAM, build_storage

# Below this many trials the importance is not shown: PED-ANOVA compares the top 5 trials with
# all of them, and with fewer than twice that its numbers swing with a single trial.
MIN_TRIALS = 10
# The one method the report shows: Optuna 5's default evaluator, so that
# `optuna.importance.get_param_importances` on the same trials gives the same numbers.
METHOD = "PED-ANOVA"
METHOD_NOTE = "Optuna's default evaluator: how differently the top trials set each parameter"


def _ped_anova(trials: int) -> BaseImportanceEvaluator:
    # Optuna's default quantile, 10 %, takes one or two "top" trials of a 10-20 trial search:
    # at least 5 top trials, at most half of them.
    return PedAnovaImportanceEvaluator(target_quantile=min(0.5, max(0.1, 5 / trials)))


@dataclass(frozen=True)
class ImportanceGroup:
    """Importances (summing to 1) over one group of trials, or why there are none (`note`)."""

    label: str
    params: list[str]
    trials: int
    importances: dict[str, float] | None
    note: str | None = None


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


def _evaluate(study: optuna.Study, params: list[str]) -> dict[str, float] | str:
    """The normalised importances of `params`, or why there are none (in words, not an
    exception's text)."""
    trials = len(study.get_trials(deepcopy=False))
    if len({t.value for t in study.get_trials(deepcopy=False)}) == 1:
        return "every trial scored the same: no parameter explains a difference"
    with warnings.catch_warnings():  # small-study warnings: the page shows the counts
        warnings.simplefilter("ignore")
        try:
            raw = optuna.importance.get_param_importances(
                study, evaluator=_ped_anova(trials), params=params, normalize=False
            )
        except (RuntimeError, ValueError):  # e.g. no variance among the top trials
            return "the trials' scores vary too little to tell the parameters apart"
    total = sum(raw.values())
    if not total > 0:
        return "no parameter explains the differences between the trials"
    return {p: v / total for p, v in raw.items()}


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
    except Exception:  # a missing study, or a file of another Optuna version
        return (
            f"the study {study_name!r} in {study_file.name} cannot be read (damaged, or written "
            "by another Optuna version)"
        )
    candidates: list[tuple[str, list[FrozenTrial], list[str]]] = []
    backbones = sorted({t.params["backbone"] for t in reported if "backbone" in t.params})
    searched_backbone = any(BACKBONE_PARAM in p for t in reported for p in t.params)
    # With the backbone searched, each backbone's trials apart: their parameters are theirs
    # (their own depths and ranges, stored as "resnet18:freeze_depth").
    for backbone in backbones if searched_backbone else [None]:
        trials = [t for t in reported if backbone is None or t.params.get("backbone") == backbone]
        names = [p for p in params if p != "backbone" or backbone is None]
        if backbone is not None:
            names = [f"{backbone}{BACKBONE_PARAM}{p}" for p in names]
        sampled = [p for p in names if any(p in t.params for t in trials)]
        shared = [p for p in sampled if all(p in t.params for t in trials)]
        label = f"{backbone} trials" if backbone else "all trials"
        candidates.append((label, trials, shared))
        if shared != sampled:  # some trials lack a parameter: the ones that have them all
            training = f"{backbone + ' ' if backbone else ''}trials that train backbone stages"
            candidates.append((training, trials, sampled))
    groups = []
    for label, trials, group_params in candidates:
        scored = best_values_study(trials, group_params, maximize)
        count = len(scored.get_trials(deepcopy=False))
        if not group_params:
            continue
        if count < MIN_TRIALS:
            note = f"{count} trials are too few for a reliable importance (it needs {MIN_TRIALS})"
            groups.append(ImportanceGroup(label, group_params, count, None, note))
            continue
        found = _evaluate(scored, group_params)
        if isinstance(found, dict):  # "resnet18:head_lr" shown as head_lr, in its group
            found = {p.rpartition(BACKBONE_PARAM)[2]: v for p, v in found.items()}
        if isinstance(found, str):
            groups.append(ImportanceGroup(label, group_params, count, None, found))
        else:
            groups.append(ImportanceGroup(label, group_params, count, found))
    return groups or "no trial reported a result"
