"""--time-budget: how long one run of a search (a new one, a --resume, an --extend) may take,
counted from its start (the inputs' checks, pretraining and the pre-screen included).

The searcher starts no trial that its measured epoch times say cannot finish before the
deadline (`TrialTimes`, `fits`); `BudgetStop` stops the trials still running at the deadline
(the first wave starts before anything is measured, and estimates can be wrong), and records
which it stopped: their stop reason is `budget`.

The deadline belongs to this process, not to the experiment: the searcher and the stopper
restored from a saved experiment read the one set here for the run that restored them.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ray import tune

from search.experiment.outcomes import ENDED
from trainable import metrics

_deadline: float | None = None  # time.monotonic() at which the budget is spent
_stopped: set[str] = set()  # trials running or waiting when it was
_declined = False  # whether the searcher declined a trial for want of time
_expired = False  # whether BudgetWatch saw the deadline pass (and recorded what ran)


def decline() -> None:
    """The searcher started no more trials: none could finish in the time left."""
    global _declined
    _declined = True


def ended_search() -> bool:
    """Whether the budget ended this run's search (trials declined or stopped)."""
    return _declined or _expired


def start(seconds: float) -> None:
    """Start this run's budget of `seconds` (0: none)."""
    global _deadline, _declined, _expired
    _deadline = time.monotonic() + seconds if seconds > 0 else None
    _declined = _expired = False
    _stopped.clear()


def text(seconds: float) -> str:
    """A budget as the console says it: `90 s`, `20 min`."""
    return f"{seconds / 60:.4g} min" if seconds >= 120 else f"{seconds:g} s"


def remaining() -> float | None:
    """Seconds left of the budget (None: no budget)."""
    return None if _deadline is None else _deadline - time.monotonic()


def spent() -> bool:
    """Whether this run's budget is spent."""
    left = remaining()
    return left is not None and left <= 0


def stopped_trials() -> set[str]:
    """Tune ids of the trials the budget stopped (running or waiting when it was spent)."""
    return set(_stopped)


def stopped(trial_id: str) -> bool:
    """Whether this run's budget stopped the trial."""
    return trial_id in _stopped


def fits(trial_seconds: float | None) -> bool:
    """Whether a trial expected to take `trial_seconds` (None: nothing measured yet) can end
    before the deadline."""
    left = remaining()
    return left is None or (left > 0 and (trial_seconds is None or trial_seconds <= left))


class TrialTimes:
    """What a trial of this search takes, measured from the trials' reports: per backbone,
    the mean seconds of an epoch; and the start-up (from its suggestion to its first report,
    less that epoch)."""

    def __init__(self) -> None:
        self._suggested: dict[str, float] = {}
        self._epochs: dict[str, list[float]] = {}
        self._startups: list[float] = []

    def suggested(self, trial_id: str) -> None:
        self._suggested[trial_id] = time.monotonic()

    def reported(self, trial_id: str, result: dict[str, Any]) -> None:
        seconds = result.get(metrics.EPOCH_SECONDS)
        if seconds is None:
            return
        backbone = str(result.get("config", {}).get("backbone", ""))
        self._epochs.setdefault(backbone, []).append(float(seconds))
        began = self._suggested.pop(trial_id, None)
        if began is not None:  # its first report since this driver suggested it
            self._startups.append(max(0.0, time.monotonic() - began - float(seconds)))

    def trial_seconds(self, epochs: int) -> float | None:
        """The longest a new trial of `epochs` epochs is expected to take: the slowest
        backbone's mean epoch (the next trial's backbone is not known before it is sampled),
        plus its start-up; None before any report."""
        if not self._epochs:
            return None
        epoch = max(statistics.fmean(times) for times in self._epochs.values())
        # The quickest start-up seen: Tune reuses a trial's process for the next, so only the
        # first trials pay for starting one.
        startup = min(self._startups, default=0.0)
        return startup + epochs * epoch


class BudgetWatch(tune.Callback):
    """At the start of each step of Tune's loop: once the budget is spent, records the trials
    still running or waiting (their stop reason is `budget`) and lets BudgetStop end them."""

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        global _expired
        if spent() and not _expired:
            _stopped.update(t.trial_id for t in trials if t.status not in ENDED)
            _expired = True


class BudgetStop(tune.Stopper):
    """Stops every trial once BudgetWatch has seen the budget spent (a Tune stopper has no
    state: the one restored with an experiment reads this run's budget)."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return _expired

    def stop_all(self) -> bool:
        return _expired
