"""The Optuna side of a search: a budget-aware bridge from ASHA to the study, TPE set up for
small budgets, and a space that samples `backbone_lr` only when some backbone stage trains.

Ray's `OptunaSearch` tells Optuna that a trial ASHA stopped after one epoch is COMPLETE with its
epoch-1 value, so TPE models early-stopped configurations as finished ones and every study view
is wrong. `BudgetAwareOptunaSearch` tells Optuna what happened: each epoch is an intermediate
value, a trial stopped before `max_t` is PRUNED, a full one COMPLETE, an errored one FAIL.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Domain

from search.experiment.saved_state import OptunaSearchInternals
from search.experiment.study import TRIAL_NUMBER_ATTR, TUNE_TRIAL_ID
from trainable.config import TRIAL_NUMBER


def startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: a third of the budget, 3 to 10."""
    # Optuna's default of 10 would leave 6 guided trials of the default 16; 3 random points
    # already give TPE's good/bad split a member on each side.
    return max(3, min(10, num_samples // 3))


def build_sampler(kind: str, seed: int, num_samples: int) -> BaseSampler:
    """The Optuna sampler named `kind` ('tpe' or 'random'), seeded."""
    if kind == "random":
        return RandomSampler(seed=seed)
    with warnings.catch_warnings():  # `group` is marked experimental since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TPESampler(
            seed=seed,  # same seed and results, same suggestions
            n_startup_trials=startup_trials(num_samples),
            # The good learning rates move with freeze depth: model the three jointly.
            multivariate=True,
            # backbone_lr exists only when a stage trains, so the space comes in two shapes;
            # `group` fits each shape jointly instead of falling back to independent sampling.
            group=True,
            # Trials still running count as bad results, so that trials started while others
            # run are not suggested the same point (the default concurrency is 2).
            constant_liar=True,
        )


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """Sample `name` from `dist` through the public suggest API (so Ray's captor sees it)."""
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"{name!r}: unsupported Optuna distribution {type(dist).__name__}")


@dataclass(frozen=True)
class ConditionalSpace:
    """A space's domains as an Optuna define-by-run function (a class, so the searcher pickles).

    `backbone_lr` is sampled only when `freeze_depth < full_depth`: with the whole backbone
    frozen it changes nothing, so it stays absent from the trial rather than invented.
    """

    distributions: dict[str, BaseDistribution]
    full_depth: int  # the freeze depth at which every backbone stage is frozen
    fixed_depth: int | None = None  # freeze_depth when the space fixes it

    @classmethod
    def from_space(cls, space: dict[str, Any], full_depth: int) -> ConditionalSpace:
        """Convert the Tune domains of `space`; constants stay in the Tuner's param_space."""
        domains = {key: value for key, value in space.items() if isinstance(value, Domain)}
        distributions = OptunaSearch.convert_search_space(domains)
        # freeze_depth first: the other parameters' presence depends on it.
        ordered = dict(sorted(distributions.items(), key=lambda item: item[0] != "freeze_depth"))
        depth = space.get("freeze_depth")
        return cls(ordered, full_depth, None if isinstance(depth, Domain) else depth)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            depth = params.get("freeze_depth", self.fixed_depth)
            if name == "backbone_lr" and depth == self.full_depth:
                continue  # a linear probe: no backbone parameter trains
            params[name] = _suggest(trial, name, dist)
        return params


class BudgetAwareOptunaSearch(OptunaSearchInternals, OptunaSearch):
    """Ray's OptunaSearch, telling the Optuna study how far each trial got under ASHA.

    Intermediate values are reported at `time_attr` (the epoch), including the result on which
    the scheduler stops a trial (Ray passes that one only to `on_trial_complete`). A trial ends
    COMPLETE with its best value (the epoch whose checkpoint is kept) when it reached `max_t`,
    PRUNED when it stopped earlier (Optuna then takes its last intermediate value, and TPE ranks
    it below every complete trial and by how far it got), FAIL when it errored.
    """

    def __init__(
        self,
        space: ConditionalSpace,
        *,
        max_t: int,
        time_attr: str,
        sampler: BaseSampler,
        storage: optuna.storages.BaseStorage | None = None,
        study_name: str | None = None,
        study_attrs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(sampler=sampler, storage=storage, study_name=study_name)
        # Set after super(): Ray's OptunaSearch would create the study before metric and mode
        # are known; here `set_search_properties` creates it with TuneConfig's direction.
        self.set_space(space)
        self._max_t = max_t
        self._time_attr = time_attr
        self._study_attrs = dict(study_attrs or {})
        self._curves: dict[str, dict[int, float]] = {}  # Tune trial id -> {epoch: metric}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take metric and mode from TuneConfig (Ray's version ignores them when a space is set)."""
        if self.study is not None:  # already set up, e.g. restored from a checkpoint
            return False
        self.create_study(metric, mode)
        for key, value in self._study_attrs.items():
            self.study.set_user_attr(key, value)
        return True

    def suggest(self, trial_id: str) -> dict | None:
        """A new configuration, numbered: the number of trials made so far. Its study trial
        records the Tune trial id and that number; the config carries the number to the
        console, summary.json, TensorBoard and W&B."""
        is_new = trial_id not in self.study_trials
        config = super().suggest(trial_id)
        if not isinstance(config, dict):  # finished, or nothing to suggest yet
            return config
        study_trial = self.study_trials[trial_id]
        if is_new:
            study_trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
            study_trial.set_user_attr(TRIAL_NUMBER_ATTR, len(self.study_trials))
        number = study_trial.user_attrs.get(TRIAL_NUMBER_ATTR)
        return {**config, TRIAL_NUMBER: number} if number is not None else config

    def _report(self, trial_id: str, result: dict) -> None:
        """Report the metric at its epoch, once per epoch (a resumed trial may repeat one)."""
        value, step = result.get(self.metric), result.get(self._time_attr)
        if value is None or step is None or not math.isfinite(float(value)):
            return
        curve = self._curves.setdefault(trial_id, {})
        if int(step) in curve:
            return
        curve[int(step)] = float(value)
        self.study_trials[trial_id].report(float(value), int(step))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Every epoch's metric becomes an intermediate value of the study trial."""
        if trial_id in self.told or trial_id not in self.study_trials:
            return
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Tell Optuna COMPLETE, PRUNED or FAIL by how far the trial got."""
        if trial_id in self.told or trial_id not in self.study_trials:
            return
        if result and not error:
            self._report(trial_id, result)  # the result the scheduler stopped the trial on
        state, value = self.final_state(trial_id, error)
        self.study.tell(self.study_trials[trial_id], value, state=state)
        self.told.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Restore the saved state, then catch up with the study, which may be ahead of it.

        Tune snapshots the searcher every few seconds, but optuna.db is written as it happens.
        After a crash the study can hold results newer than the snapshot, and a trial
        suggested after it that Tune will never run (it suggests a new one instead).
        """
        super().restore(checkpoint_path)
        for trial in self.study.get_trials(deepcopy=False):
            trial_id = trial.user_attrs.get(TUNE_TRIAL_ID)
            if trial_id in self.study_trials:
                self._curves.setdefault(trial_id, {}).update(trial.intermediate_values)
                if trial.state.is_finished():  # told already: a rerun's end is not told again
                    self.told.add(trial_id)
            elif trial.state == TrialState.RUNNING:  # unknown to the snapshot: never to run
                self.study.tell(trial.number, state=TrialState.FAIL)

    def final_state(self, trial_id: str, error: bool) -> tuple[TrialState, float | None]:
        """The study state of a finished trial and its value (None unless COMPLETE)."""
        curve = self._curves.get(trial_id, {})
        if error:
            return TrialState.FAIL, None
        if curve and max(curve) >= self._max_t:
            best = max(curve.values()) if self.mode == "max" else min(curve.values())
            return TrialState.COMPLETE, best
        return TrialState.PRUNED, None
