"""TensorBoard: every trial a row of the HParams tab from its start, with its per-epoch scalars.

Tune's own TBXLoggerCallback writes HParams only when a trial ends, under a `ray/tune/`
prefix, with each metric's last value, and each trial declares its own columns. Here:

- `write_experiment_board` declares the HParams columns once, in the experiment folder, before
  any trial: the searched settings with their domains, and the metrics below.
  It also draws the model graph, once per experiment.
- `TrialBoardCallback` opens a trial's HParams session when the trial starts (its
  hyperparameters), writes every epoch's numbers as plain scalars (`val_acc`, `lr/head`, ...),
  and closes the session (status, stop_reason) when the trial ends.
- `mark_interrupted` records the trials a stopped search left unfinished.

TensorBoard keeps the first session info it reads for a run, so the hyperparameters are written
once, at the start; what changes (metrics, stop_reason) is a scalar, of which the HParams table
shows the last value. Histograms, images and text come from the trial itself
(trainable.summaries).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from torch.utils.tensorboard import SummaryWriter

from search.experiment import budget
from search.experiment.layout import INTERRUPTED_SUFFIX
from search.experiment.outcomes import (
    STOP_REASONS,
    epochs_run,
    plateaued,
    stop_reason,
    trial_label,
    trial_number,
)
from trainable import metrics
from trainable.backbones import build_model
from trainable.catalog import get_backbone
from trainable.config import error_line

STOP_REASON = "stop_reason"
# stop_reason as a number: HParams metric columns are numbers (its hyperparameters are fixed at
# a trial's start, so a changing label cannot be one). 0 while the trial runs.
STOP_CODES = {"running": 0, **{reason: code for code, reason in enumerate(STOP_REASONS, 1)}}
STOP_LEGEND = ", ".join(f"{code} {reason}" for reason, code in STOP_CODES.items())

# The HParams metric columns: scalar tag, column title, tooltip.
METRIC_COLUMNS = (
    (metrics.BEST_VAL_ACC, "best val_acc", "best validation accuracy (its checkpoint is kept)"),
    (metrics.VAL_ACC, "last val_acc", "validation accuracy of the last epoch"),
    (metrics.VAL_LOSS, "last val_loss", "validation loss of the last epoch"),
    (metrics.TRAIN_LOSS, "last train_loss", "training loss of the last epoch"),
    (metrics.EPOCH, "epochs run", "epochs the trial ran"),
    (STOP_REASON, f"stop_reason ({STOP_LEGEND})", "why the trial stopped"),
    (metrics.TRAINABLE_PARAMS, "trainable params", "parameters that receive gradients"),
    (metrics.EPOCH_SECONDS, "seconds per epoch", "wall seconds of the last epoch"),
)  # fmt: skip


def _domain(value: Any) -> tuple[hp.Domain | None, str]:
    """The HParams domain of a space entry, and a description of how it is sampled."""
    if isinstance(value, Integer):
        return hp.Discrete(list(range(value.lower, value.upper))), "integer, uniform"
    if isinstance(value, Float):
        if isinstance(value.get_sampler(), LogUniform):
            # TensorBoard cannot declare a log axis: the user picks Log per column.
            return hp.RealInterval(float(value.lower), float(value.upper)), (
                f"log-uniform {value.lower:g}..{value.upper:g}: choose Log scale for this axis"
            )
        return hp.RealInterval(float(value.lower), float(value.upper)), "uniform"
    if isinstance(value, Categorical):
        kinds = {type(c) for c in value.categories}
        if len(kinds) == 1 and kinds <= {int, float, str, bool}:
            return hp.Discrete(list(value.categories)), "one of the listed values"
    return None, ""


def hparam_columns(space: dict[str, Any], searched: list[str]) -> list[hp.HParam]:
    """The HParams hyperparameter columns: the searched settings, with their domains.

    Only those: the fixed settings are the same in every trial (each trial's Text tab lists
    them), and TensorBoard shows the first 5 columns by name, so constants would hide searched
    ones (`backbone`, `batch_size` and `data` sort before `head_lr`).
    """
    columns = []
    for key in searched:
        domain, description = _domain(space[key])
        columns.append(hp.HParam(key, domain, description=f"searched: {description}"))
    return columns


def _session_values(config: dict[str, Any], searched: list[str]) -> dict[str, Any]:
    """A trial's HParams values; a setting it does not use (None) is left out, not faked."""
    return {key: config[key] for key in searched if config.get(key) is not None}


def write_experiment_board(
    root: Path, space: dict[str, Any], searched: list[str], fixed: dict[str, Any], classes: int
) -> str | None:
    """Declare the HParams columns and draw the model graph in the experiment folder `root`.

    Returns why the graph is missing (torch.jit.trace cannot trace every model: ViT's graphs
    differ between its check runs), or None when it was drawn.
    """
    metric_columns = [hp.Metric(tag, display_name=title, description=tip)
                      for tag, title, tip in METRIC_COLUMNS]  # fmt: skip
    with SummaryWriter(str(root), filename_suffix=".experiment") as writer:
        writer.file_writer.add_summary(
            hp.hparams_config_pb(hparam_columns(space, searched), metric_columns)
        )
        if not get_backbone(fixed["backbone"]).traceable:
            return "torch.jit.trace cannot follow it"
        model = build_model(fixed["backbone"], classes, fixed["image_size"]).eval()
        example = torch.zeros(1, 3, fixed["image_size"], fixed["image_size"])
        try:
            # torch.jit.trace warns that it is deprecated, and prints its errors before raising.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                writer.add_graph(model, example, use_strict_trace=False)
        except Exception as error:  # a model the tracer cannot follow: the graph is a nicety
            return error_line(error)
    return None


def _session_end(status: int) -> summary_pb2.Summary:
    """The summary that closes an HParams session with `status` (api_pb2.Status)."""
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(
            plugin_data_pb2.HParamsPluginData(session_end_info=info)
        ),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def epoch_scalars(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of one reported epoch under their TensorBoard tags."""
    scalars = {key: float(result[key]) for key in metrics.PER_EPOCH if key in result}
    for group, rate in result.get(metrics.LR, {}).items():
        scalars[f"{metrics.LR}/{group}"] = float(rate)
    return scalars


class TrialBoardCallback(TBXLoggerCallback):
    """One HParams session and the per-epoch scalars of every trial, in its folder.

    A TBXLoggerCallback, so that Tune adds no second TensorBoard logger of its own.
    """

    def __init__(self, searched: list[str], max_epochs: int) -> None:
        # Not TBXLoggerCallback.__init__: its tensorboardX writers are not used here.
        self.searched = searched
        self.max_epochs = max_epochs
        self._writers: dict[Trial, SummaryWriter] = {}

    def _writer(self, trial: Trial) -> SummaryWriter:
        if trial not in self._writers:
            trial.init_local_path()
            # Ray copies the trial's staging folder into the experiment at each snapshot.
            writer = SummaryWriter(trial.local_path, filename_suffix=".search")
            values = _session_values(trial.config, self.searched)
            label = trial_label(trial_number(trial.config), trial.trial_id)
            writer.file_writer.add_summary(hp.hparams_pb(values, trial_id=label))
            self._writers[trial] = writer
        return self._writers[trial]

    def log_trial_start(self, trial: Trial) -> None:
        writer = self._writer(trial)  # the session opens as the trial starts, before any result
        # At the step it resumes from (0 for a new trial): a lower step would make TensorBoard
        # drop the later points of the tag.
        writer.add_scalar(STOP_REASON, STOP_CODES["running"], global_step=epochs_run(trial))
        writer.flush()

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        writer, epoch = self._writer(trial), int(result[metrics.EPOCH])
        for tag, value in epoch_scalars(result).items():
            writer.add_scalar(tag, value, global_step=epoch)
        writer.add_scalar(STOP_REASON, STOP_CODES["running"], global_step=epoch)
        writer.flush()

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        writer = self._writer(trial)
        epochs = epochs_run(trial)
        reason = stop_reason(
            failed, True, epochs, self.max_epochs, plateaued(trial), budget.stopped(trial.trial_id)
        )
        # At the last epoch's step, replacing its `running`: the table shows the final reason.
        writer.add_scalar(STOP_REASON, STOP_CODES[reason], global_step=epochs)
        status = api_pb2.STATUS_FAILURE if failed else api_pb2.STATUS_SUCCESS
        writer.file_writer.add_summary(_session_end(status))
        writer.close()
        del self._writers[trial]


def mark_interrupted(trial_dir: Path, epochs: int) -> None:
    """Record in a trial's folder that the search stopped it after `epochs` epochs.

    Written after Tune's last snapshot, straight into the experiment; a resumed trial's next
    epoch (a later step) shows it running again.
    """
    with SummaryWriter(str(trial_dir), filename_suffix=INTERRUPTED_SUFFIX) as writer:
        writer.add_scalar(STOP_REASON, STOP_CODES["interrupted"], global_step=epochs)
