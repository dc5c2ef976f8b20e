"""search.run.search: the filter for Ray's benign staged-state copy race."""

from __future__ import annotations

import logging

from search.run.session import StagedStateRaceFilter, TrialFailureFilter


def _record(message: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord("ray.tune", logging.ERROR, __file__, 1, message, (), exc_info)


SAVING = "Saving experiment state to storage at '/runs/x' failed with exception: "


def test_the_vanished_temporary_file_error_is_dropped() -> None:
    gone = FileNotFoundError(
        "[Errno 2] Failed to open local file '/tmp/ray/x/driver_artifacts/"
        ".5ae71ebf-tmp-searcher-state-2026-11-26.pkl'"
    )
    assert not StagedStateRaceFilter().filter(_record(SAVING, gone))


def test_every_other_error_passes() -> None:
    keep = StagedStateRaceFilter()
    assert keep.filter(_record(SAVING, FileNotFoundError("/runs/x/experiment_state.json")))
    assert keep.filter(_record(SAVING, PermissionError("-tmp- but not a vanished file")))
    assert keep.filter(_record("Trial failed", FileNotFoundError("x-tmp-y")))
    assert keep.filter(_record(SAVING, None))


def test_a_trial_failure_traceback_is_dropped_and_other_records_pass() -> None:
    quiet = TrialFailureFilter()
    assert not quiet.filter(_record("Trial task failed for trial train_transfer_1", None))
    assert quiet.filter(_record("Trial controller checkpointing failed", None))


def test_a_progress_printer_pickled_before_trial_numbers_existed_still_restores() -> None:
    """Tune keeps the printer in the experiment's tuner.pkl; an older one lacks `numbers`."""
    import pickle

    from search.tracking.progress import ProgressReporter

    old = ProgressReporter(["head_lr"], num_samples=2, max_epochs=3)
    del old.numbers
    restored = pickle.loads(pickle.dumps(old))
    assert restored.numbers == {} and restored.num_samples == 2
