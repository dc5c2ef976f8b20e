"""The W&B logging actor: one process holds the runs of every trial of a search.

Ray's W&B callback starts two actor processes per trial (its logging actor and a queue), each
importing Ray and W&B: about 2 s of CPU per trial on a 2-core machine that trains at the same
time. One long-lived actor with a run per trial (W&B's `reinit="create_new"`) pays that once.
This module imports nothing heavy (no torch): the actor's process imports it.

Errors are kept, not raised: a failed call on an actor nobody waits for would print Ray's
"unhandled error" traceback in the user's console. `take_errors()` returns them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


class WandbRuns:
    """The W&B runs of a search's trials, by trial id; calls arrive in the order sent."""

    def __init__(self) -> None:
        os.environ["WANDB_START_METHOD"] = "thread"  # as Ray's actor: no extra process
        import wandb

        self._wandb = wandb
        self._runs: dict[str, Any] = {}
        self._errors: list[str] = []
        self._online_failed: str | None = None  # why W&B could not log online, once it failed

    def use_api_key(self, key: str) -> None:
        """The W&B API key, for the runs this actor starts. Sent as a call's argument: a
        `runtime_env` would write it into Ray's logs, which other users of the machine read."""
        os.environ["WANDB_API_KEY"] = key

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Keep an error of the block, as `what`, instead of raising it."""
        try:
            yield
        except Exception as error:  # W&B's errors vary by version and mode
            self._errors.append(f"{what}: {_line(error)}")

    def _offline_once_failed(self, init_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`init_kwargs`, offline once W&B failed to log online (not tried again per run)."""
        if self._online_failed and init_kwargs.get("mode") == "online":
            return {**init_kwargs, "mode": "offline"}
        return init_kwargs

    def start(self, trial_id: str, init_kwargs: dict[str, Any]) -> None:
        """Open the trial's run (a retried trial keeps the run it has). When W&B cannot log
        online (a wrong key, no network), the run is kept offline, and so are the next ones:
        `online_failure` says why."""
        if trial_id in self._runs:
            return
        init_kwargs = self._offline_once_failed(init_kwargs)
        try:
            self._runs[trial_id] = self._wandb.init(**init_kwargs, reinit="create_new")
            return
        except Exception as error:  # W&B's errors vary by version and mode
            if init_kwargs.get("mode") != "online":
                self._errors.append(f"starting the run of {trial_id}: {_line(error)}")
                return
            self._online_failed = _line(error)
        offline = {**init_kwargs, "mode": "offline"}
        if self._runs:  # its id stays taken by the failed run while W&B serves the open runs
            offline["id"] = f"{init_kwargs.get('id', trial_id)}-offline"
        else:  # nothing open: W&B's service starts again, forgetting the failed run
            self._wandb.teardown()
        with self._guard(f"starting the run of {trial_id} offline"):
            self._runs[trial_id] = self._wandb.init(**offline, reinit="create_new")

    def online_failure(self) -> str | None:
        """Why W&B could not log online (its runs are offline since), or None."""
        return self._online_failed

    def log(self, trial_id: str, data: dict[str, Any], config: dict[str, Any], step: int) -> None:
        """One reported result: history row `data` at `step`, and `config` additions."""
        run = self._runs.get(trial_id)
        if run is not None:
            with self._guard(f"logging to the run of {trial_id}"):
                run.config.update(config, allow_val_change=True)
                run.log(data, step=step)

    def end(self, trial_id: str, summary: dict[str, Any]) -> None:
        """Add `summary` to the trial's run and finish it."""
        run = self._runs.pop(trial_id, None)
        if run is not None:
            with self._guard(f"finishing the run of {trial_id}"):
                run.summary.update(summary)
                run.finish()

    def log_model(self, spec: dict[str, Any]) -> bool:
        """Log a model file as an artifact from a run of its own (`model_spec`'s dict: the
        run's init arguments, the artifact's, the file, the run's summary); True when logged."""
        with self._guard("logging the best model"):
            return log_model(self._wandb, {**spec, "init": self._offline_once_failed(spec["init"])})
        return False

    def take_errors(self) -> list[str]:
        """The errors so far (emptied); it returns after every call sent before it."""
        errors, self._errors = self._errors, []
        return errors


def _line(error: BaseException) -> str:
    """An error as one line: its type and the first line of its message."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def model_spec(
    init: dict[str, Any], artifact: dict[str, Any], path: str, summary: dict[str, Any]
) -> dict[str, Any]:
    """What `log_model` logs: a run (wandb.init's arguments), an artifact (wandb.Artifact's)
    holding the file at `path` by reference, and the run's summary."""
    return {"init": init, "artifact": artifact, "path": path, "summary": summary}


def log_model(wandb: Any, spec: dict[str, Any]) -> bool:
    """Log `spec` (model_spec) with the `wandb` module: the file is referenced, not copied
    (policy "immutable"): `wandb sync` uploads it from the experiment folder."""
    run = wandb.init(**spec["init"], reinit="create_new")
    try:
        artifact = wandb.Artifact(**spec["artifact"])
        artifact.add_file(spec["path"], name=os.path.basename(spec["path"]), policy="immutable")
        run.log_artifact(artifact, aliases=["best"])
        run.summary.update(spec["summary"])
    finally:
        run.finish()
    return True
