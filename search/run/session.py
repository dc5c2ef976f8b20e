"""The Ray a search runs in: a quiet local one started here (or the cluster search.run.cluster
connects to), and its logs without what a user need not see."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import ray

from search.run.storage_watch import STORAGE_ERRNOS


class StagedStateRaceFilter(logging.Filter):
    """Drops Ray Tune's error for a state file that vanished while being copied to storage,
    and for a copy that failed on a full or read-only volume (search.run.storage_watch).

    Ray 2.60 copies the driver's staged experiment state to `storage_path` in a background
    thread that can overlap the next save, whose temporary files (`.<uuid>-tmp-*`) are renamed
    away mid-copy. The copy is redone on the next save and the final save waits for its copy,
    so nothing is lost; the traceback would only alarm users. Any other error passes through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not record.getMessage().startswith("Saving experiment state to storage"):
            return True
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return False  # a full or read-only volume: the search stops and says so
        return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error))


class TrialFailureFilter(logging.Filter):
    """Drops Ray Tune's traceback of each failed trial: the progress line gives its reason, and
    the whole traceback is in the trial's error.txt."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Trial task failed for trial")


class RestoreAdviceFilter(logging.Filter):
    """Drops Ray Tune's advice to resume a stopped experiment with `Tuner.restore(...)`: the
    search prints its own resume command (search.run.finish)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Experiment has been interrupted")


# One instance each: adding the same filter again is a no-op.
_FILTERS = {
    "ray.tune.execution.experiment_state": StagedStateRaceFilter(),
    "ray.tune.execution.tune_controller": TrialFailureFilter(),
    "ray.tune.tune": RestoreAdviceFilter(),
}


def quiet_logs() -> None:
    """Ray's and Optuna's logs at warnings, without the ones a user need not see."""
    for name, log_filter in _FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)
    # Ray warns that it enabled token authentication for its local cluster: good, not news.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per created study


@contextlib.contextmanager
def own_sessions() -> Iterator[None]:
    """Ray's processes started meanwhile get a session (process group) of their own.

    `timeout`, and a shell's job control, signal the whole process group: Ray's processes
    would end at once with the driver's SIGTERM, and the driver, which stops its trials
    gracefully on SIGTERM (forward_to_sigint), would find no Ray to stop them with. Apart,
    they hear only the driver, and still end with it: Ray ties each one's life to its parent
    (PR_SET_PDEATHSIG on Linux), so a SIGKILLed driver takes them along. Ray 2.60 starts its
    processes through `ray._private.services.ConsolePopen` (a private name, pinned with Ray).
    """
    from ray._private import services

    original = services.ConsolePopen

    class SessionPopen(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = SessionPopen
    try:
        yield
    finally:
        services.ConsolePopen = original


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """The driver's SIGTERM handler stays while Ray starts: Ray 2.60's `ray.init` replaces it
    with one that exits at once (code 15, no message, a half-made experiment left behind)."""
    from ray._private import utils

    original = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def start_ray() -> None:
    """A quiet local Ray: no dashboard, warnings only, as many CPUs as this machine has; its
    processes apart from the driver's process group (own_sessions)."""
    quiet_logs()
    with own_sessions(), sigterm_kept():
        _init_local_ray()


def _init_local_ray() -> None:
    ray.init(
        # A new Ray of this process's own: without it, ray.init() joins the newest cluster
        # `ray start` left on this machine ($RAY_ADDRESS is --address's, see search.config.parse).
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.WARNING,
        # Trials print nothing a user needs; each failure's reason reaches the progress lines
        # and summary.json, and its traceback is in the trial's error.txt.
        log_to_driver=False,
    )


@contextlib.contextmanager
def state_saved_every_checkpoint() -> Iterator[None]:
    """Tune saves the experiment's state (and copies it into the experiment) after every
    trial checkpoint, not only every 10 s or so: a driver killed at any moment leaves a state
    that knows every trial the study was told about, but for one whose state was being copied.

    Ray does this itself when `CheckpointConfig.num_to_keep` is set (as many checkpoints as it
    keeps); the harness keeps checkpoints its own way (search.experiment.retention) and sets
    the same cadence on Ray 2.60's experiment checkpoint manager (a private class, pinned with
    Ray) while Tune runs.
    """
    from ray.tune.execution import tune_controller

    original = tune_controller._ExperimentCheckpointManager

    class EveryCheckpoint(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["sync_every_n_trial_checkpoints"] = 1
            super().__init__(*args, **kwargs)

    tune_controller._ExperimentCheckpointManager = EveryCheckpoint
    try:
        yield
    finally:
        tune_controller._ExperimentCheckpointManager = original


def forward_to_sigint(signum: int, frame: Any) -> None:
    """SIGTERM (what `timeout`, Slurm and Kubernetes send) takes Ctrl-C's path: Tune stops and
    saves, the search ends with its resume command (exit code 130)."""
    signal.raise_signal(signal.SIGINT)


def start_ray_while(work: Callable[[], Any]) -> Any:
    """Start a local Ray (`start_ray`) and meanwhile run `work` (the search's preparation:
    data, weights, the experiment's board) in a thread; return what `work` returns, or raise
    what it raised, with Ray shut down again. Ray's start (about 2 s: its own processes) must
    run in the main thread; the preparation is the driver's own and overlaps it."""
    outcome: dict[str, Any] = {}
    # Thread.join interrupted by Ctrl-C can mark a running thread as ended (a CPython bug):
    # the main thread waits for this event instead.
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error
        finally:
            done.set()

    signal.signal(signal.SIGTERM, forward_to_sigint)  # from the start: exit 130, one line
    threading.Thread(target=run, name="prepare-search", daemon=True).start()
    try:
        start_ray()
        # Ray's own SIGTERM handler aborts the process with a crash report: the search's takes
        # its place again, for the rest of the search.
        signal.signal(signal.SIGTERM, forward_to_sigint)
        done.wait()
    except KeyboardInterrupt:
        # What the preparation writes (the experiment's folder) is complete before the
        # interrupt is reported, and removed with the folder (search.cli.search); a long one
        # (the first pretraining of a backbone) ends with the process.
        done.wait(timeout=20)
        raise
    except BaseException:
        done.wait()  # what it writes is complete before the error is reported
        raise
    if "error" in outcome:
        ray.shutdown()
        raise outcome["error"]
    return outcome["value"]


def stop_ray_in_background() -> threading.Thread:
    """Shut Ray down in a thread (a second or two: its processes end) while the driver writes
    the summary and the report; join the thread before the process exits."""
    thread = threading.Thread(target=ray.shutdown, name="ray-shutdown")
    thread.start()
    return thread
