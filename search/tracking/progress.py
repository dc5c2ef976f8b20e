"""Concise console progress for a search, in place of Ray's verbose tables.

One line when a trial starts, one when it ends (with why), and a status line at most every
`interval_s` seconds while trials run: a 16-trial sweep prints about 40 lines.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from search.experiment import budget
from search.experiment.outcomes import (
    ENDED,
    epochs_run,
    error_reason,
    fmt,
    logged_rows,
    plateaued,
    stop_reason,
    trial_number,
)
from trainable import metrics


class ProgressReporter(Callback):
    """Prints trial starts, ends and a periodic status line."""

    def __init__(
        self, searched: list[str], num_samples: int, max_epochs: int, interval_s: float = 20.0
    ) -> None:
        self.searched = searched
        self.num_samples = num_samples
        self.max_epochs = max_epochs
        self.interval_s = interval_s
        self.last: dict[str, dict[str, Any]] = {}  # trial_id -> its latest result
        self.best: dict[str, float] = {}  # trial_id -> its best val_acc
        self.numbers: dict[str, int] = {}  # trial_id -> its number in the progress lines
        self.began = time.monotonic()
        self.last_print = self.began

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restored from an experiment's tuner.pkl, perhaps written before `numbers` existed."""
        self.__dict__.update(state)
        self.__dict__.setdefault("numbers", {})

    def setup(self, total_num_samples: int | None = None, **info: Any) -> None:
        """Start the clock when Tune starts (again, for a resumed or extended experiment)."""
        self.began = self.last_print = time.monotonic()
        self.num_samples = total_num_samples or self.num_samples  # grows with --extend

    def _say(self, line: str) -> None:
        elapsed = time.monotonic() - self.began
        print(f"[{elapsed:5.0f}s] {line}", flush=True)
        self.last_print = time.monotonic()

    def _label(self, trial: Any, trials: list) -> str:
        # Tune lists trials in creation order, those restored by a resume first, but moves a
        # trial it retries: each keeps the number it had when first seen.
        number = trial_number(trial.config) or self.numbers.setdefault(
            trial.trial_id, trials.index(trial) + 1
        )
        return f"trial {number:>2}/{self.num_samples} ({trial.trial_id})"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        config = "  ".join(f"{k}={fmt(trial.config.get(k))}" for k in self.searched)
        self._say(f"{self._label(trial, trials)} started   {config}")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.last[trial.trial_id] = result
        acc = result.get(metrics.VAL_ACC)
        if acc is not None:
            self.best[trial.trial_id] = max(acc, self.best.get(trial.trial_id, acc))

    def _epochs(self, trial: Any) -> int:
        seen = int(self.last.get(trial.trial_id, {}).get(metrics.EPOCH, 0))
        return max(seen, epochs_run(trial))  # a resumed trial: also what it logged before

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = self._epochs(trial)
        reason = stop_reason(
            False, True, epochs, self.max_epochs, plateaued(trial), budget.stopped(trial.trial_id)
        )
        why = {
            "completed": "completed",
            "plateau": "stopped on a plateau (--patience)",
            "budget": "stopped: --time-budget spent",
        }.get(reason, "stopped by ASHA")
        logged = [row.get(metrics.VAL_ACC) for row in logged_rows(trial)]
        scores = [acc for acc in [self.best.get(trial.trial_id), *logged] if acc is not None]
        best = fmt(max(scores) if scores else None)
        self._say(
            f"{self._label(trial, trials)} {why} after {epochs}/{self.max_epochs} epochs, "
            f"best val_acc {best}"
        )

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(
            f"{self._label(trial, trials)} failed at epoch {self._epochs(trial) + 1} "
            f"({error_reason(trial)}); retrying from its last checkpoint"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(
            f"{self._label(trial, trials)} FAILED at epoch {self._epochs(trial) + 1}: "
            f"{error_reason(trial)}"
        )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.last_print < self.interval_s:
            return
        running = [t for t in trials if t.status == "RUNNING"]
        parts = [
            f"{t.trial_id} epoch {self._epochs(t)}/{self.max_epochs}"
            f" (val_acc {fmt(self.last.get(t.trial_id, {}).get(metrics.VAL_ACC))})"
            for t in running
        ]
        best = fmt(max(self.best.values())) if self.best else "-"
        done = sum(t.status in ENDED for t in trials)  # also those ended before a resume
        self._say(
            f"{done}/{self.num_samples} done, best val_acc {best}; running: "
            + (", ".join(parts) or "none")
        )
