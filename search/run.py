"""Run one search end to end: pretrain (cached), start Ray, fit, summarise."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from ray.tune import ExperimentAnalysis
from ray.tune.search import Searcher

from search.builders import build_param_space, build_tuner, restore_tuner
from search.cluster import describe_nodes, use_cluster
from search.config.settings import SearchSettings
from search.export import write_model_file
from search.inputs import describe_data, prepare_inputs
from search.loggers import StudyUpload, build_callbacks
from search.progress import ProgressReporter
from search.resume import checkpoint_problems, grow_search_state, record_extension
from search.retention import prune_checkpoints
from search.storage import SETTINGS_FILE, RemoteExperiment, remote_experiment
from search.summary import (
    ENDED,
    build_summary,
    format_report,
    read_summary,
    shown_path,
    write_summary,
)
from search.tensorboard import mark_interrupted, write_experiment_board
from search.usage import SearchInterrupted, UsageError
from search.wandb_mode import resolve_wandb_mode
from search.wandb_runs import log_best_model
from spaces import get_space, searched_keys
from trainable.config import TrialConfig, error_line
from trainable.weights import load_weights


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


def _forward_to_sigint(signum: int, frame: Any) -> None:
    """SIGTERM (sent by cluster schedulers) takes Ctrl-C's graceful path: stop, save, exit."""
    signal.raise_signal(signal.SIGINT)


def resume_command(settings: SearchSettings) -> str:
    """The command line that continues this experiment."""
    folder = str(shown_path(settings.experiment_dir.parent))
    storage = shlex.quote(settings.storage_path if settings.experiment_uri else folder)  # ?a=1&b=2
    command = f"python scripts/search.py --resume --name {settings.name} --storage-path {storage}"
    return command + (f" --address {settings.address}" if settings.address else "")


def _unfinished(settings: SearchSettings) -> int:
    """Trials of the experiment on disk still to run or finish (0 when all ended)."""
    analysis = ExperimentAnalysis(str(settings.experiment_dir))
    ended = sum(t.status in ENDED for t in analysis.trials)
    return settings.num_samples - ended


def run_search(
    settings: SearchSettings, searcher: Searcher | None = None, resume: bool = False
) -> dict:
    """Run the search described by `settings`; return the summary (also in summary.json).

    `resume` continues the saved experiment instead of starting one (its state was checked by
    search.resume). `searcher` replaces the harness's Optuna bridge (for comparisons; it writes
    no optuna.db). With `settings.address`, the trials run on that Ray cluster (search.cluster),
    checked before anything is written. Raises SearchInterrupted when Ctrl-C or SIGTERM stopped
    it early.
    """
    if not settings.address:
        return _run_search(settings, searcher, resume)
    quiet_logs()
    settings, nodes = use_cluster(settings)  # connected, or UsageError with nothing written
    print(f"Ray cluster at {settings.address}: {describe_nodes(nodes)}")
    try:
        return _run_search(settings, searcher, resume)
    finally:
        ray.shutdown()


def _run_search(settings: SearchSettings, searcher: Searcher | None, resume: bool) -> dict:
    """run_search, in a Ray that _fit starts here unless one is connected (a cluster)."""
    began = time.monotonic()
    wandb_mode = resolve_wandb_mode(settings.wandb)
    os.environ["WANDB_MODE"] = wandb_mode  # read by W&B's Tune callback and its run processes
    os.environ.setdefault("WANDB_SILENT", "true")  # no W&B banner per trial
    param_space = build_param_space(settings)
    searched = searched_keys(get_space(settings.space))
    fixed = TrialConfig.from_dict(param_space)
    root = settings.experiment_dir
    shown = shown_path(root)
    remote = remote_experiment(settings)
    where = f"{remote.uri} (working copy {shown})" if remote else shown
    left = settings.num_samples
    previous = read_summary(root) if resume else {}
    if resume:
        data = prepare_inputs(settings, fixed)  # before anything is written
        added = record_extension(settings)
        left = _unfinished(settings)
        if added:
            print(
                f"Extending experiment {where} by {added} trials to {settings.num_samples}, "
                f"warm-started from its study: {left} to run"
            )
        else:
            print(f"Resuming experiment {where}: {left} of {settings.num_samples} trials to finish")
    else:
        print(
            f"Experiment {where}: {settings.num_samples} trials of up to {settings.max_epochs} "
            f"epochs, {settings.concurrency} at a time, space {settings.space!r}, "
            f"backbone {settings.backbone}, weights {settings.weights!r}, "
            f"sampler {settings.sampler}, W&B {wandb_mode}"
        )
        data = prepare_inputs(settings, fixed)  # a problem here leaves no experiment folder
        print(f"Data {settings.data}: {describe_data(data)}")
        root.mkdir(parents=True)
        (root / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
        classes = len(data.classes)
        space = get_space(settings.space)
        missing = write_experiment_board(root, space, searched, fixed.to_dict(), classes)
        if missing:
            print(f"Note: no model graph in TensorBoard for {settings.backbone} ({missing})")
        if remote:  # settings.json and the experiment's board, there from the start
            try:
                remote.upload()
            except OSError as error:  # checked writable a moment ago: the network, say
                shutil.rmtree(root)  # nothing ran: no working copy to refuse the next try
                raise UsageError(f"cannot write to {remote.uri}: {error_line(error)}") from None
    state = None
    if left > 0:
        # The starting weights, loaded once here and handed to every trial (through Ray's
        # object store): cluster nodes need neither the weights cache nor a download.
        state = load_weights(fixed.weights, fixed.backbone, fixed.data, fixed.image_size,
                             fixed.cache_dir)  # fmt: skip
        if resume:  # a lean checkpoint resumes only on the frozen stages it trained with
            problems = checkpoint_problems(root, fixed, state)
            if problems:
                raise UsageError(f"--resume: {'; '.join(problems)}")
        _fit(settings, searched, wandb_mode, searcher, resume, state)
    if remote:
        _upload(remote)  # the study and W&B's runs first: a download can take minutes
        _download(remote, settings)  # the summary, report and W&B's model read the copy
    summary = build_summary(settings, searched, wandb_mode)
    unfinished = [t for t in summary["trials"] if t["stop_reason"] == "interrupted"]
    for trial in unfinished:
        if any((root / trial["path"]).glob("events.out.tfevents.*")):  # it had started
            mark_interrupted(root / trial["path"], trial["epochs"])
    finished = len(summary["trials"]) == settings.num_samples and not unfinished
    if finished and wandb_mode != "disabled" and summary["best"]:
        if left > 0:  # trials ran: the best may be new
            model = _best_model_file(settings, summary, data.preprocessing, state)
            summary["wandb_model"] = model and _log_best_model(settings, summary, wandb_mode, model)
        else:  # a finished experiment resumed: its summary is rebuilt, its artifact stands
            summary["wandb_model"] = previous.get("wandb_model")
    pruned = prune_checkpoints(settings, summary)
    if pruned.folders:
        print(
            f"Removed {pruned.folders} checkpoints ({pruned.bytes / 1e6:,.0f} MB) of "
            f"{pruned.trials} finished trials outside the best {settings.keep_checkpoints or 'all'}"
            " (--keep-checkpoints)"
        )
    summary["wall_seconds"] = round(time.monotonic() - began, 1)
    write_summary(settings, summary)
    report = _write_report(root)  # it reads summary.json
    if report:
        summary["report"] = report
        write_summary(settings, summary)
    if remote:
        _upload(remote)
    if not finished:
        raise SearchInterrupted(
            f"Interrupted: {len(summary['trials']) - len(unfinished)} of {settings.num_samples} "
            f"trials finished; the experiment's state is saved in {where}.\n"
            + (f"Report so far: {shown / report}\n" if report else "")
            + f"Resume with:  {resume_command(settings)}"
        )
    print(format_report(summary, settings, shown))
    if remote:
        print(f"Stored at: {remote.uri} (the paths above are its working copy on this machine)")
    print(f"Done in {summary['wall_seconds']:.0f} s.")
    return summary


def _write_report(root: Path) -> str | None:
    """report.html in the experiment folder; a failure costs only a warning (the results and
    summary.json stand, and `scripts/report.py` can write it again)."""
    try:
        from search.report import write_report  # matplotlib: a missing one costs the report only

        return write_report(root).name
    except Exception as error:  # matplotlib's and Optuna's errors vary; the search result stands
        print(f"Warning: report.html was not written: {error_line(error)}", file=sys.stderr)
        return None


def _download(remote: RemoteExperiment, settings: SearchSettings) -> None:
    """Bring the working copy up to date with what Ray stored; SearchInterrupted (with the
    resume command, which finishes the summary) when the URI can't be read."""
    print(f"Downloading the results from {remote.uri} ...")
    try:
        remote.download()
    except OSError as error:  # the network, the credentials: nothing lost, it is all stored
        raise SearchInterrupted(
            f"The results stored at {remote.uri} could not be downloaded "
            f"({error_line(error)}); nothing is lost.\n"
            f"Finish the summary with:  {resume_command(settings)}"
        ) from None


def _upload(remote: RemoteExperiment) -> None:
    """Upload the driver's files; a failure costs a warning naming where they still are."""
    try:
        remote.upload()
    except Exception as error:  # pyarrow's errors vary by filesystem
        print(
            f"Warning: the summary, report and study were not uploaded to {remote.uri} "
            f"({error_line(error)}); they are in {remote.local}",
            file=sys.stderr,
        )


def _best_model_file(
    settings: SearchSettings, summary: dict, preprocessing: dict, state: dict | None
) -> Path | None:
    """The best trial's whole model as a file (search.export.write_model_file); a failure
    costs only a warning: the checkpoint stands, and scripts/export.py writes the model."""
    try:
        return write_model_file(
            settings.experiment_dir, summary["best"], settings.name, preprocessing, state
        )
    except Exception as error:  # a full disk, a checkpoint that does not restore
        print(f"Warning: the best model file was not written: {error_line(error)}", file=sys.stderr)
        return None


def _log_best_model(
    settings: SearchSettings, summary: dict, wandb_mode: str, model: Path
) -> str | None:
    """Log the best model to W&B as a model artifact; a W&B failure costs only a warning."""
    try:
        return log_best_model(settings, summary, wandb_mode, model)
    except Exception as error:  # W&B's own errors vary by version; the search result stands
        print(f"Warning: the best model was not logged to W&B: {error}", file=sys.stderr)
        return None


def _fit(
    settings: SearchSettings,
    searched: list[str],
    wandb_mode: str,
    searcher: Searcher | None,
    resume: bool,
    backbone_state: dict | None,
) -> None:
    """Run (or restore and continue) the Tuner, in a Ray started here unless one is running."""
    owns_ray = not ray.is_initialized()  # scripts/compare_searchers.py keeps one for all runs
    if owns_ray:
        start_ray()
    previous = signal.signal(signal.SIGTERM, _forward_to_sigint)
    try:
        if resume:
            grown = grow_search_state(settings.experiment_dir, settings.num_samples)  # --extend
            remote = remote_experiment(settings)
            if remote:  # Tune restores from the stored copy
                remote.upload([grown.name, SETTINGS_FILE])
            # callbacks and searcher come from the saved state
            tuner = restore_tuner(settings, backbone_state)
        else:
            progress = ProgressReporter(searched, settings.num_samples, settings.max_epochs)
            callbacks = [progress, *build_callbacks(settings, searched, wandb_mode)]
            remote = remote_experiment(settings)
            if remote and searcher is None:  # the harness's searcher writes optuna.db
                callbacks.append(StudyUpload(remote))
            tuner = build_tuner(settings, callbacks, searcher, backbone_state)
        tuner.fit()  # Ctrl-C (or SIGTERM): Tune stops the trials and saves its state, then returns
    finally:
        signal.signal(signal.SIGTERM, previous)
        if owns_ray:
            ray.shutdown()
