"""How a trial ended and how its numbers read: stop reasons, Tune statuses, epochs run, the
error of a failed trial. Shared by what streams while trials run (search.tracking) and what a
finished search yields (search.results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.experiment.layout import ERROR_FILE
from trainable import metrics
from trainable.config import TRIAL_NUMBER

# In this order for good: TensorBoard's stop_reason scalar is the 1-based index.
STOP_REASONS = ("completed", "asha", "error", "interrupted", "plateau", "budget")
ENDED = ("TERMINATED", "ERROR")  # Tune statuses of a trial that will not run again


def shown_path(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it, for printing."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def trial_number(config: dict[str, Any]) -> int | None:
    """A trial's number in the search (1-based, in the order the searcher made them), from its
    config; None for a trial made before trials were numbered."""
    number = config.get(TRIAL_NUMBER)
    return int(number) if number is not None else None


def trial_label(number: int | None, trial_id: str) -> str:
    """How a trial is named everywhere: its number and Tune's id, `7 (1326304b)`."""
    return f"{number} ({trial_id})" if number is not None else trial_id


def stop_reason(
    failed: bool,
    ended: bool,
    epochs: int,
    max_epochs: int,
    plateau: bool = False,
    out_of_time: bool = False,
) -> str:
    """Why a trial stopped: one of STOP_REASONS. `plateau`: its last result says it stopped
    itself under --patience (trainable.metrics.PLATEAU); `out_of_time`: --time-budget stopped
    it (search.experiment.budget)."""
    if failed:
        return "error"
    if not ended:  # pending, running or paused when the search stopped
        return "interrupted"
    if epochs >= max_epochs:
        return "completed"
    if plateau:
        return "plateau"
    return "budget" if out_of_time else "asha"


def logged_rows(trial: Any) -> list[dict]:
    """The rows of a live Tune trial's result.json in the experiment ([] for a URI's)."""
    try:
        return metrics.result_rows(Path(trial.path))
    except (OSError, TypeError, ValueError):
        return []


def plateaued(trial: Any) -> bool:
    """Whether a live Tune trial stopped itself under --patience: a result of its says so."""
    rows = [trial.last_result or {}, *logged_rows(trial)]
    return any(row.get(metrics.PLATEAU) for row in rows)


def epochs_run(trial: Any) -> int:
    """Epochs a live Tune trial has reported (0 before its first result): its last result's,
    or its result.json's when that logged more (a trial that reported its last epoch just
    before a stop resumes from that epoch's checkpoint and ends without reporting again,
    while Tune's saved state holds the result before it)."""
    epochs = [int((trial.last_result or {}).get(metrics.EPOCH, 0))]
    epochs += [int(row[metrics.EPOCH]) for row in logged_rows(trial) if metrics.EPOCH in row]
    return max(epochs)


def error_reason(trial: Any) -> str:
    """The last line of a failed trial's traceback: the exception and its message."""
    # While Ray runs, the driver's staged copy is the fresh one; afterwards (and when read
    # back from disk) only the trial folder has it.
    import ray

    candidates = [Path(trial.path) / ERROR_FILE]
    if ray.is_initialized() and trial.error_file:
        candidates.insert(0, Path(trial.error_file))
    for path in candidates:
        if path.exists():
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            if lines:
                return lines[-1]
    return "failed without an error file"


def fmt(value: Any) -> str:
    """Compact: 3 significant digits for floats, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.3f}"
    return str(value)
