"""The Ray a search runs in: a quiet local one started here (or the cluster search.run.cluster
connects to), and its logs without what a user need not see."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import optuna
import ray


class StagedStateRaceFilter(logging.Filter):
    """Drops Ray Tune's error for a state file that vanished while being copied to storage.

    Ray 2.60 copies the driver's staged experiment state to `storage_path` in a background
    thread that can overlap the next save, whose temporary files (`.<uuid>-tmp-*`) are renamed
    away mid-copy. The copy is redone on the next save and the final save waits for its copy,
    so nothing is lost; the traceback would only alarm users. Any other error passes through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            record.getMessage().startswith("Saving experiment state to storage")
            and isinstance(error, FileNotFoundError)
            and "-tmp-" in str(error)
        )


class TrialFailureFilter(logging.Filter):
    """Drops Ray Tune's traceback of each failed trial: the progress line gives its reason, and
    the whole traceback is in the trial's error.txt."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Trial task failed for trial")


# One instance each: adding the same filter again is a no-op.
_FILTERS = {
    "ray.tune.execution.experiment_state": StagedStateRaceFilter(),
    "ray.tune.execution.tune_controller": TrialFailureFilter(),
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


def start_ray() -> None:
    """A quiet local Ray: no dashboard, warnings only, as many CPUs as this machine has."""
    quiet_logs()
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

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error

    thread = threading.Thread(target=run, name="prepare-search", daemon=True)
    thread.start()
    try:
        start_ray()
        # Ray's own SIGTERM handler aborts the process with a crash report: the search's takes
        # its place for the rest of the search.
        signal.signal(signal.SIGTERM, forward_to_sigint)
    except KeyboardInterrupt:  # at once: the daemon thread ends with the process
        raise
    except BaseException:
        thread.join()  # what it writes is complete before the error is reported
        raise
    thread.join()
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
