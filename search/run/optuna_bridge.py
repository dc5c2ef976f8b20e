"""The Optuna side of a search: a budget-aware bridge from ASHA to the study, TPE set up for
small budgets, and a space that samples `backbone_lr` only when some backbone stage trains.

Ray's `OptunaSearch` tells Optuna that a trial ASHA stopped after one epoch is COMPLETE with its
epoch-1 value, so TPE models early-stopped configurations as finished ones and every study view
is wrong. `BudgetAwareOptunaSearch` tells Optuna what happened: each epoch is an intermediate
value, a trial stopped before `max_t` is PRUNED, a full one COMPLETE, an errored one FAIL; one
that stopped itself on a plateau (--patience) is COMPLETE with user attribute stop_reason.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
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
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Domain

from search.experiment import budget
from search.experiment.layout import SEARCHER_STATE_FORMAT
from search.experiment.saved_state import OptunaSearchInternals
from search.experiment.study import (
    BACKBONE_PARAM,
    TRIAL_NUMBER_ATTR,
    TUNE_TRIAL_ID,
    storage_at,
    study_param,
)
from trainable.config import TRIAL_NUMBER
from trainable.metrics import PLATEAU

# Study trial user attribute: "plateau" on a trial that stopped itself under --patience. It
# ends COMPLETE with its best value, as one that ran every epoch: its curve had flattened.
STOP_REASON_ATTR = "stop_reason"


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


def _random_states(sampler: BaseSampler) -> list[Any]:
    """The NumPy random generators of an Optuna sampler (TPE's and its start-up sampler's)."""
    found = []
    for owner in (sampler, getattr(sampler, "_random_sampler", None)):
        lazy = getattr(owner, "_rng", None)  # Optuna's LazyRandomState (a private name)
        if lazy is not None:
            found.append(lazy.rng)
    return found


def random_states(sampler: BaseSampler) -> list[list[Any]]:
    """The sampler's random states as JSON values (MT19937: its key, position and Gaussian)."""
    states = []
    for rng in _random_states(sampler):
        kind, key, pos, has_gauss, gauss = rng.get_state()
        states.append([kind, [int(k) for k in key], int(pos), int(has_gauss), float(gauss)])
    return states


def set_random_states(sampler: BaseSampler, states: list[list[Any]]) -> None:
    """Set what `random_states` returned."""
    import numpy as np

    for rng, state in zip(_random_states(sampler), states, strict=True):
        kind, key, pos, has_gauss, gauss = state
        rng.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))


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

    With `per_backbone` (the domains of each candidate backbone, and `full_depths` theirs) the
    backbone is sampled first, then its own parameters under their study names
    (`study_param`); the trial's config gets them under their plain names.
    """

    distributions: dict[str, BaseDistribution]
    full_depth: int  # the freeze depth at which every backbone stage is frozen
    fixed_depth: int | None = None  # freeze_depth when the space fixes it
    per_backbone: dict[str, ConditionalSpace] | None = None

    @classmethod
    def across(cls, spaces: dict[str, ConditionalSpace]) -> ConditionalSpace:
        """The backbone searched among `spaces` (backbone: its space)."""
        choice = CategoricalDistribution(list(spaces))
        return cls({"backbone": choice}, 0, None, dict(spaces))

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
        if self.per_backbone:
            backbone = _suggest(trial, "backbone", self.distributions["backbone"])
            own = self.per_backbone[backbone]
            return {"backbone": backbone, **own.sample(trial, backbone)}
        return self.sample(trial)

    def sample(self, trial: optuna.Trial, backbone: str | None = None) -> dict[str, Any]:
        """The parameters of one backbone's space; named for the study by `backbone` when it
        is searched."""
        params: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            depth = params.get("freeze_depth", self.fixed_depth)
            if name == "backbone_lr" and depth == self.full_depth:
                continue  # a linear probe: no backbone parameter trains
            stored = study_param(backbone, name) if backbone else name
            params[name] = _suggest(trial, stored, dist)
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
        warm_start: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(sampler=sampler, storage=storage, study_name=study_name)
        # Set after super(): Ray's OptunaSearch would create the study before metric and mode
        # are known; here `set_search_properties` creates it with TuneConfig's direction.
        self.set_space(space)
        self._max_t = max_t
        self._time_attr = time_attr
        self._study_attrs = dict(study_attrs or {})
        self._curves: dict[str, dict[int, float]] = {}  # Tune trial id -> {epoch: metric}
        # Study parameters of the first trials (the pre-screen's best candidates), asked for
        # before the sampler's own.
        self._warm_start = list(warm_start or [])
        self._times = budget.TrialTimes()

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take metric and mode from TuneConfig (Ray's version ignores them when a space is set)."""
        if self.study is not None:  # already set up, e.g. restored from a checkpoint
            return False
        self.create_study(metric, mode)
        for key, value in self._study_attrs.items():
            self.study.set_user_attr(key, value)
        for params in getattr(self, "_warm_start", []):
            self.study.enqueue_trial(params, skip_if_exists=True)
        return True

    def suggest(self, trial_id: str) -> dict | None:
        """A new configuration, numbered: the number of trials made so far. Its study trial
        records the Tune trial id and that number; the config carries the number to the
        console, summary.json, TensorBoard and W&B. A study trial that a killed driver had
        started but Tune never recorded (see `restore`) is handed out first, as it was."""
        orphans = getattr(self, "_orphans", [])  # absent from a searcher saved before them
        times = self._trial_times()
        if trial_id not in self.study_trials and not orphans:
            if not budget.fits(times.trial_seconds(self._max_t)):
                budget.decline()
                return Searcher.FINISHED  # --time-budget: no time for another whole trial
            times.suggested(trial_id)
        adopted = trial_id not in self.study_trials and bool(orphans)
        if adopted:
            orphan = orphans.pop(0)
            # Optuna opens a trial it stored by its storage id (FrozenTrial's private field).
            self.study_trials[trial_id] = optuna.Trial(self.study, orphan._trial_id)
            self._curves[trial_id] = dict(orphan.intermediate_values)  # reported once
        is_new = trial_id not in self.study_trials
        config = super().suggest(trial_id)
        if not isinstance(config, dict):  # finished, or nothing to suggest yet
            return config
        # A searched backbone's parameters are also captured under their study names.
        config = {key: value for key, value in config.items() if BACKBONE_PARAM not in key}
        study_trial = self.study_trials[trial_id]
        if adopted:
            study_trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
        if is_new or TRIAL_NUMBER_ATTR not in study_trial.user_attrs:
            study_trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
            study_trial.set_user_attr(TRIAL_NUMBER_ATTR, self._next_number())
        number = study_trial.user_attrs.get(TRIAL_NUMBER_ATTR)
        return {**config, TRIAL_NUMBER: number} if number is not None else config

    def _trial_times(self) -> budget.TrialTimes:
        if not hasattr(self, "_times"):  # a searcher saved before --time-budget
            self._times = budget.TrialTimes()
        return self._times

    def _next_number(self) -> int:
        """The number of a new trial: one more than any given so far (len(study_trials) in a
        search that was never killed; a trial the study holds but Tune lost keeps its own)."""
        numbers = [
            trial.user_attrs.get(TRIAL_NUMBER_ATTR, 0)
            for trial in self.study.get_trials(deepcopy=False)
        ]
        return max([len(self.study_trials) - 1, *numbers]) + 1

    def _report(self, trial_id: str, result: dict) -> None:
        """Report the metric at its epoch, once per epoch (a resumed trial may repeat one)."""
        value, step = result.get(self.metric), result.get(self._time_attr)
        if value is None or step is None or not math.isfinite(float(value)):
            return
        curve = self._curves.setdefault(trial_id, {})
        if result.get(PLATEAU):  # it stopped itself under --patience: recorded in the study
            self.study_trials[trial_id].set_user_attr(STOP_REASON_ATTR, "plateau")
        if int(step) in curve:
            return
        curve[int(step)] = float(value)
        self.study_trials[trial_id].report(float(value), int(step))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Every epoch's metric becomes an intermediate value of the study trial."""
        if trial_id in self.told or trial_id not in self.study_trials:
            return
        self._trial_times().reported(trial_id, result)
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

    def save(self, checkpoint_path: str) -> None:
        """The searcher's state as JSON (Ray's OptunaSearch pickles it: a file that runs code
        when loaded). The study itself is in optuna.db; the rest is which Tune trial is which
        study trial, what the study was told, and the samplers' random states."""
        state = {
            "format": SEARCHER_STATE_FORMAT,
            "metric": self._metric,
            "mode": self._mode,
            "study_name": self._study_name,
            "storage_url": getattr(self._storage, "url", None),
            "trials": {tid: trial._trial_id for tid, trial in self.study_trials.items()},
            "told": sorted(self.told),
            "curves": {tid: {str(k): v for k, v in c.items()} for tid, c in self._curves.items()},
            "random_states": random_states(self._sampler),
            "points_to_evaluate": self._points_to_evaluate,
            "evaluated_rewards": self._evaluated_rewards,
        }
        Path(checkpoint_path).write_text(json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        """Restore the saved state, then catch up with the study, which may be ahead of it.

        Tune snapshots the searcher every few seconds, but optuna.db is written as it happens.
        After a crash the study can hold results newer than the snapshot, and trials suggested
        after it that Tune does not know: Tune will ask for new trials in their place, and
        gets these (`suggest`), with their configuration and number, so that the study holds
        each trial of the search once. Their intermediate values are dropped with their runs.
        """
        data = Path(checkpoint_path).read_bytes()
        if data.startswith(b"{"):
            self._restore_json(json.loads(data))
        else:  # a pickle, saved before the harness wrote JSON (checked: search.run.resume)
            super().restore(checkpoint_path)
        self._orphans: list[optuna.trial.FrozenTrial] = []  # study trials Tune does not know
        for trial in self.study.get_trials(deepcopy=False):
            trial_id = trial.user_attrs.get(TUNE_TRIAL_ID)
            if trial_id in self.study_trials:
                self._curves.setdefault(trial_id, {}).update(trial.intermediate_values)
                if trial.state.is_finished():  # told already: a rerun's end is not told again
                    self.told.add(trial_id)
            elif trial.state == TrialState.RUNNING:  # unknown to the snapshot: run it again
                self._orphans.append(trial)

    def _restore_json(self, state: dict[str, Any]) -> None:
        """The state `save` wrote, on this searcher as the experiment's tuner.pkl made it."""
        if state.get("format") != SEARCHER_STATE_FORMAT:
            raise ValueError(f"not a searcher state of this harness: {state.get('format')!r}")
        self._study_name = state["study_name"]
        if self._storage is None and state["storage_url"]:
            self._storage = storage_at(state["storage_url"])
        self.create_study(state["metric"], state["mode"])  # loads it from optuna.db
        self._ot_trials = {
            tid: optuna.Trial(self.study, storage_id) for tid, storage_id in state["trials"].items()
        }
        self._completed_trials = set(state["told"])
        self._curves = {
            tid: {int(k): float(v) for k, v in curve.items()}
            for tid, curve in state["curves"].items()
        }
        set_random_states(self._sampler, state["random_states"])
        self._points_to_evaluate = state["points_to_evaluate"]
        self._evaluated_rewards = state["evaluated_rewards"]

    def final_state(self, trial_id: str, error: bool) -> tuple[TrialState, float | None]:
        """The study state of a finished trial and its value (None unless COMPLETE)."""
        curve = self._curves.get(trial_id, {})
        if error:
            return TrialState.FAIL, None
        trial = self.study_trials.get(trial_id)
        plateau = trial is not None and trial.user_attrs.get(STOP_REASON_ATTR) == "plateau"
        if curve and (max(curve) >= self._max_t or plateau):
            best = max(curve.values()) if self.mode == "max" else min(curve.values())
            return TrialState.COMPLETE, best
        return TrialState.PRUNED, None
