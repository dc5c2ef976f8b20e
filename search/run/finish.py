"""The end of a search: what it found, in summary.json and the console; the best model as a
file and a W&B artifact; the checkpoints it keeps; report.html; and how to continue.

The slow parts run side by side: W&B logs the best model in its actor's process (where W&B
has started already), and Ray shuts down while the driver draws the report (`release_ray`).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from search.config.settings import SearchSettings
from search.config.usage import SearchInterrupted, StorageStopped
from search.experiment import budget
from search.experiment.layout import BUDGET_FILE, EVENTS_GLOB, STUDY_FILE
from search.experiment.outcomes import shown_path
from search.experiment.retention import Pruned, best_only, prune_checkpoints
from search.experiment.saved_state import end_live_trials
from search.experiment.storage import RemoteExperiment, remote_experiment
from search.experiment.study import prune_running
from search.results.export import write_model_file
from search.results.summary import budget_runs, build_summary, format_report, write_summary
from search.results.trust import add_intervals, trust_warnings
from search.run.resume import save_num_samples
from search.tracking.tensorboard import mark_interrupted
from search.tracking.wandb_runs import (
    ModelLog,
    best_model_spec,
    online_failure,
    stop_runs_actor,
)
from trainable.config import error_line
from trainable.files import write_json_atomically

if TYPE_CHECKING:
    from search.run.search import Prepared


def finish(
    settings: SearchSettings,
    searched: list[str],
    wandb_mode: str,
    prepared: Prepared,
    left: int,
    previous: dict,
    began: float,
    release_ray: Callable[[], None],
    stopped_for: str | None = None,
) -> dict:
    """Summarise the experiment on disk; return the summary. Raises SearchInterrupted (with
    the command that resumes) when trials are left; StorageStopped when `stopped_for` (the
    storage's problem: search.run.storage_watch) stopped them."""
    root = settings.experiment_dir
    remote = remote_experiment(settings)
    if remote:
        _upload(remote)  # the study and W&B's runs first: a download can take minutes
        _download(remote, settings, resume_command(settings))
    if wandb_mode == "online" and online_failure():  # told once, as the trials ended
        wandb_mode = "offline"  # its runs are offline: say how to upload them, claim none
    out_of_time = left > 0 and settings.time_budget > 0 and budget.ended_search()
    if left > 0 and settings.time_budget > 0:
        _record_budget(root, settings.time_budget, out_of_time)
    if budget.stopped_trials() and not remote:  # Tune told neither the searcher nor its limiter
        end_live_trials(root, budget.stopped_trials())
        if (root / STUDY_FILE).exists():
            prune_running(root, settings.name, budget.stopped_trials())
    summary = build_summary(settings, searched, wandb_mode)
    if out_of_time and not any(t["stop_reason"] == "interrupted" for t in summary["trials"]):
        # The search ends here: the experiment holds the trials it ran; --extend adds more.
        settings = _end_at(settings, len(summary["trials"]))
    val_counts = prepared.data.val.labels.bincount(minlength=len(prepared.data.classes)).tolist()
    add_intervals(summary, val_counts)
    summary["warnings"] = trust_warnings(summary, val_counts)
    unfinished = [t for t in summary["trials"] if t["stop_reason"] == "interrupted"]
    for trial in unfinished:
        if any((root / trial["path"]).glob(EVENTS_GLOB)):  # it had started
            mark_interrupted(root / trial["path"], trial["epochs"])
    finished = len(summary["trials"]) == settings.num_samples and not unfinished
    logging = None
    if finished and wandb_mode != "disabled" and summary["best"]:
        if left > 0:  # trials ran: the best may be new
            model = _best_model_file(settings, summary, prepared)
            logging = model and ModelLog(best_model_spec(settings, summary, wandb_mode, model))
        else:  # a finished experiment resumed: its summary is rebuilt, its artifact stands
            summary["wandb_model"] = previous.get("wandb_model")
    try:
        pruned = prune_checkpoints(settings, summary)
    except OSError as error:  # the storage's: nothing is lost, the next end prunes again
        print(f"Warning: finished trials' checkpoints were not removed: {error_line(error)}",
              file=sys.stderr)  # fmt: skip
        pruned = Pruned(0, 0, 0)
    if pruned.folders:
        kept = settings.keep_checkpoints or "all"
        print(
            f"Removed {pruned.folders} checkpoints ({pruned.bytes / 1e6:,.0f} MB) of "
            f"{pruned.trials} finished trials outside the best {kept} (--keep-checkpoints)"
        )
    if logging:  # logged while the checkpoints were pruned
        summary["wandb_model"] = logging.result()
    elif logging is None and finished and wandb_mode != "disabled" and left > 0:
        summary["wandb_model"] = None  # no model file to log
    stop_runs_actor()
    release_ray()  # Ray shuts down while the report is drawn
    write_summary(settings, summary)
    report = _write_report(root)  # it reads summary.json
    if report:
        summary["report"] = report
    summary["wall_seconds"] = round(time.monotonic() - began, 1)
    write_summary(settings, summary)
    if remote:
        _upload(remote)
    shown = shown_path(root)
    if not finished and stopped_for:
        raise StorageStopped(
            f"Stopped: {stopped_for}; {len(summary['trials']) - len(unfinished)} of "
            f"{settings.num_samples} trials finished, the experiment's state is saved.\n"
            f"Make room, then resume with:  {resume_command(settings)}"
        )
    if not finished:
        where = f"{remote.uri} (working copy {shown})" if remote else shown
        raise SearchInterrupted(
            f"Interrupted: {len(summary['trials']) - len(unfinished)} of {settings.num_samples} "
            f"trials finished; the experiment's state is saved in {where}.\n"
            + (f"Report so far: {shown / report}\n" if report else "")
            + f"Resume with:  {resume_command(settings)}"
        )
    print(format_report(summary, settings, shown))
    if out_of_time:
        stopped = sum(t["stop_reason"] == "budget" for t in summary["trials"])
        how = (
            f"spent; {stopped} running trial{'s' if stopped != 1 else ''} stopped"
            if stopped
            else "left no time for another whole trial"
        )
        print(
            f"Time budget of {settings.time_budget:g} s {how}: the search ran "
            f"{len(summary['trials'])} trials. Add trials with:  "
            f"{resume_command(settings).replace('--resume', '--extend N')} --time-budget "
            f"{settings.time_budget:g}s"
        )
    if remote:
        print(f"Stored at: {remote.uri} (the paths above are its working copy on this machine)")
    print(f"Done in {summary['wall_seconds']:.0f} s.")
    return summary


def _record_budget(root: Path, seconds: float, ended: bool) -> None:
    """Append this run's budget to time_budget.json: whether it ended the search, and the
    trials it stopped (their stop reason is `budget`, in this and every later summary)."""
    run = {"seconds": seconds, "ended_search": ended, "stopped": sorted(budget.stopped_trials())}
    write_json_atomically(root / BUDGET_FILE, [*budget_runs(root), run])


def _end_at(settings: SearchSettings, trials: int) -> SearchSettings:
    """The experiment's --num-samples set to the `trials` it holds (settings.json too): a
    --resume has nothing left to run, and --extend N adds N trials."""
    save_num_samples(settings.experiment_dir, trials)
    return dataclasses.replace(settings, num_samples=trials)


def resume_command(settings: SearchSettings) -> str:
    """The command line that continues this experiment."""
    folder = str(shown_path(settings.experiment_dir.parent))
    storage = shlex.quote(settings.storage_path if settings.experiment_uri else folder)  # ?a=1&b=2
    command = f"python scripts/search.py --resume --name {settings.name} --storage-path {storage}"
    if settings.experiment_uri:  # its working copy and study live in that cache folder
        command += f" --cache-dir {shlex.quote(settings.cache_dir)}"
    return command + (f" --address {settings.address}" if settings.address else "")


def _write_report(root: Path) -> str | None:
    """report.html in the experiment folder; a failure costs only a warning (the results and
    summary.json stand, and `scripts/report.py` can write it again)."""
    try:
        from search.results.report import (
            write_report,  # matplotlib: a missing one costs the report only
        )

        return write_report(root).name
    except Exception as error:  # matplotlib's and Optuna's errors vary; the search result stands
        print(f"Warning: report.html was not written: {error_line(error)}", file=sys.stderr)
        return None


def _download(remote: RemoteExperiment, settings: SearchSettings, resume: str) -> None:
    """Bring the working copy up to date with what Ray stored; SearchInterrupted (with the
    resume command, which finishes the summary) when the URI can't be read."""
    print(f"Downloading the results from {remote.uri} ...")
    try:
        remote.download(choose=best_only)  # of the checkpoints, each trial's best
    except OSError as error:  # the network, the credentials: nothing lost, it is all stored
        raise SearchInterrupted(
            f"The results stored at {remote.uri} could not be downloaded "
            f"({error_line(error)}); nothing is lost.\n"
            f"Finish the summary with:  {resume}"
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


def _best_model_file(settings: SearchSettings, summary: dict, prepared: Prepared) -> Path | None:
    """The best trial's whole model as a file (search.results.export.write_model_file); a failure
    costs only a warning: the checkpoint stands, and scripts/export.py writes the model."""
    try:
        return write_model_file(
            settings.experiment_dir,
            summary["best"],
            settings.name,
            prepared.data.preprocessing,
            prepared.state(summary["best"]["config"].get("backbone") or settings.backbone),
        )
    except Exception as error:  # a full disk, a checkpoint that does not restore
        print(f"Warning: the best model file was not written: {error_line(error)}", file=sys.stderr)
        return None
