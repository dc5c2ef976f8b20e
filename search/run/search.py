"""Run one search end to end: prepare (data, weights, the experiment folder) while Ray starts,
fit, then finish (search.run.finish: summary, best model, report)."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import ray
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.search import Searcher

from search.config.preflight import warn_of_room
from search.config.settings import SearchSettings, space_of
from search.config.usage import UsageError
from search.config.wandb_mode import set_wandb_environment
from search.experiment import budget
from search.experiment.layout import SETTINGS_FILE
from search.experiment.lock import claim
from search.experiment.outcomes import ENDED, shown_path
from search.experiment.retention import Store, SupersededCheckpoints
from search.experiment.saved_state import (
    grow_search_state,
    resumed_trial_folders,
    unrecorded_trial_folders,
)
from search.experiment.storage import read_summary, remote_experiment
from search.experiment.study import catch_up
from search.run.cluster import describe_nodes, use_cluster
from search.run.finish import finish
from search.run.inputs import describe_data, prepare_inputs
from search.run.optuna_bridge import BudgetAwareOptunaSearch
from search.run.prescreen import Prescreen, run_prescreen, write_prescreen
from search.run.resume import checkpoint_problems, extension_size, record_extension
from search.run.rungs import describe_rungs
from search.run.session import (
    forward_to_sigint,
    quiet_logs,
    start_ray_while,
    state_saved_every_checkpoint,
    stop_ray_in_background,
)
from search.run.storage_watch import StorageWatch
from search.run.tuner import build_param_space, build_searcher, build_tuner, restore_tuner
from search.tracking.callbacks import StudyUpload, build_callbacks
from search.tracking.progress import ProgressReporter
from search.tracking.tensorboard import write_experiment_board
from spaces import searched_keys
from spaces.registry import SCRATCH_FREEZE_DEPTH
from trainable.checkpoint import largest_checkpoint_bytes
from trainable.config import TrialConfig, error_line
from trainable.data import TransferData
from trainable.weights import WeightsError, load_weights

# A trial's largest checkpoint when the search starts from no weights (ResNet-50's, whole).
DEFAULT_CHECKPOINT_BYTES = 200 << 20


def _unfinished(settings: SearchSettings) -> int:
    """Trials of the experiment on disk still to run or finish (0 when all ended)."""
    analysis = ExperimentAnalysis(str(settings.experiment_dir))
    ended = sum(t.status in ENDED for t in analysis.trials)
    return settings.num_samples - ended


@dataclass(frozen=True)
class Prepared:
    """What a search's trials start from: the data as they split it, and each candidate
    backbone's starting weights (None: from scratch, or nothing left to run); with
    --backbones, the pre-screen of a new search."""

    data: TransferData
    states: dict[str, dict | None]
    prescreen: Prescreen | None = None

    def state(self, backbone: str) -> dict | None:
        """The starting weights of `backbone`."""
        return self.states.get(backbone)


@dataclass
class Search:
    """A search whose inputs are ready (`begin`): run it with `run`."""

    settings: SearchSettings
    searcher: Searcher | None
    resume: bool
    searched: list[str]
    wandb_mode: str
    left: int  # trials to run or finish
    previous: dict  # the summary of the experiment resumed, {} for a new one
    began: float
    prepared: Prepared

    def run(self, owns_ray: bool) -> dict:
        """Fit and finish; return the summary. `owns_ray`: Ray was started for this search,
        and is shut down while the search writes its results."""
        stopping: list[threading.Thread] = []

        def release_ray() -> None:
            if owns_ray and not stopping:
                stopping.append(stop_ray_in_background())

        try:
            # The tuner is kept until the search has finished: its W&B callback's actor, which
            # logs the best model, lives as long as the callback does.
            tuner, stopped_for = None, None
            if self.left > 0:
                tuner, stopped_for = _fit(
                    self.settings,
                    self.searched,
                    self.wandb_mode,
                    self.searcher,
                    self.resume,
                    self.prepared,
                )
            summary = finish(
                self.settings, self.searched, self.wandb_mode, self.prepared, self.left,
                self.previous, self.began, release_ray, stopped_for,
            )  # fmt: skip
            del tuner
            return summary
        finally:
            release_ray()
            for thread in stopping:
                thread.join()


def begin(
    settings: SearchSettings, searcher: Searcher | None = None, resume: bool = False
) -> Search:
    """Announce the search, and make its inputs ready: the data and weights checked, a new
    experiment's folder written (nothing of Ray's is needed: this runs while Ray starts)."""
    began = time.monotonic()
    budget.start(settings.time_budget)
    wandb_mode = set_wandb_environment(settings.wandb)  # set already when Ray started
    searched = searched_keys(space_of(settings))
    fixed = TrialConfig.from_dict(build_param_space(settings))
    previous = read_summary(settings.experiment_dir) if resume else {}
    left = _announce_resume(settings) if resume else settings.num_samples
    if not resume:
        _announce(settings, wandb_mode)
    prepared = _prepare(settings, fixed, searched, resume, left)
    return Search(settings, searcher, resume, searched, wandb_mode, left, previous, began, prepared)


def run_search(
    settings: SearchSettings, searcher: Searcher | None = None, resume: bool = False
) -> dict:
    """Run the search described by `settings`; return the summary (also in summary.json).

    `resume` continues the saved experiment instead of starting one (its state was checked by
    search.run.resume). `searcher` replaces the harness's Optuna bridge (for comparisons; it writes
    no optuna.db). With `settings.address`, the trials run on that Ray cluster (search.run.cluster),
    checked before anything is written; else in a local Ray started here, unless one runs
    (scripts/compare_searchers.py keeps one for all its runs). Raises SearchInterrupted when
    Ctrl-C or SIGTERM stopped it early.
    """
    if settings.address:
        set_wandb_environment(settings.wandb)
        quiet_logs()
        settings, nodes = use_cluster(settings)  # connected, or UsageError with nothing written
        print(f"Ray cluster at {settings.address}: {describe_nodes(nodes)}")
        warn_of_room(settings)
        try:
            return begin(settings, searcher, resume).run(owns_ray=False)
        finally:
            ray.shutdown()
    if ray.is_initialized():
        return begin(settings, searcher, resume).run(owns_ray=False)
    set_wandb_environment(settings.wandb)  # before Ray starts its processes
    return start_ray_while(lambda: begin(settings, searcher, resume)).run(owns_ray=True)


def _announce(settings: SearchSettings, wandb_mode: str) -> None:
    """The first line of a new search: where, how many trials, of what."""
    remote = remote_experiment(settings)
    shown = shown_path(settings.experiment_dir)
    where = f"{remote.uri} (working copy {shown})" if remote else shown
    print(
        f"Experiment {where}: {settings.num_samples} trials of up to {settings.max_epochs} "
        f"epochs, {settings.concurrency} at a time, space {settings.space!r}, "
        f"{_backbone_text(settings)}, weights {settings.weights!r}, "
        f"sampler {settings.sampler}, W&B {wandb_mode}{_budget_text(settings)}"
    )
    if settings.weights == "none":
        print(
            f"Note: freeze_depth is fixed to {SCRATCH_FREEZE_DEPTH}, not searched: with "
            "--weights none the backbone starts from random weights, whose frozen stages "
            "would be random features rather than transferred ones"
        )


def _backbone_text(settings: SearchSettings) -> str:
    if settings.searches_backbone:
        return f"backbone searched among {', '.join(settings.candidates)}"
    return f"backbone {settings.backbone}"


def _budget_text(settings: SearchSettings) -> str:
    return f", time budget {budget.text(settings.time_budget)}" if settings.time_budget else ""


def _announce_resume(settings: SearchSettings) -> int:
    """Say what the resume will run; return how many trials are left to run or finish."""
    remote = remote_experiment(settings)
    shown = shown_path(settings.experiment_dir)
    where = f"{remote.uri} (working copy {shown})" if remote else shown
    added = extension_size(settings)  # recorded once every check passed (_fit)
    left = _unfinished(settings)
    if added:
        print(
            f"Extending experiment {where} by {added} trials to {settings.num_samples}, "
            f"warm-started from its study: {left} to run{_budget_text(settings)}"
        )
    else:
        print(
            f"Resuming experiment {where}: {left} of {settings.num_samples} trials to finish"
            f"{_budget_text(settings)}"
        )
    return left


def _prepare(
    settings: SearchSettings, fixed: TrialConfig, searched: list[str], resume: bool, left: int
) -> Prepared:
    """The data and starting weights of the trials, checked; a new experiment's folder with
    its settings.json and TensorBoard board. A problem (UsageError) leaves no folder behind."""
    data = prepare_inputs(settings, fixed)
    root = settings.experiment_dir
    if not resume:
        print(f"Data {settings.data}: {describe_data(data)}")
        print(describe_rungs(settings, len(data.train), len(data.val), fixed.batch_size))
        claim(root, create=True)  # made and held: a second search of this name is refused
        (root / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
        space = space_of(settings)
        missing = write_experiment_board(root, space, searched, fixed.to_dict(), len(data.classes))
        if missing:
            print(f"Note: no model graph in TensorBoard for {settings.backbone} ({missing})")
        remote = remote_experiment(settings)
        if remote:  # settings.json and the experiment's board, there from the start
            try:
                remote.upload()
            except OSError as error:  # checked writable a moment ago: the network, say
                shutil.rmtree(root)  # nothing ran: no working copy to refuse the next try
                raise UsageError(f"cannot write to {remote.uri}: {error_line(error)}") from None
    if left <= 0:
        return Prepared(data, {})
    # The starting weights, loaded once here and handed to every trial (through Ray's object
    # store): cluster nodes need neither the weights cache nor a download.
    try:
        states = {
            backbone: load_weights(fixed.weights, backbone, fixed.data, fixed.image_size,
                                   fixed.cache_dir)
            for backbone in settings.candidates
        }  # fmt: skip
    except WeightsError as error:  # e.g. a weights file moved since the search was made
        raise UsageError(str(error)) from None
    if resume:  # a lean checkpoint resumes only on the frozen stages it trained with
        problems = checkpoint_problems(resumed_trial_folders(root), fixed, states)
        if problems:
            raise UsageError(f"--resume: {'; '.join(problems)}")
        return Prepared(data, states)
    screen = run_prescreen(settings, fixed, data, states)
    if screen is not None:
        write_prescreen(root, screen)
    return Prepared(data, states, screen)


def _drop_unrecorded_trials(settings: SearchSettings) -> None:
    """Remove the folders of trials Tune started after its last saved state (the driver was
    killed): Tune would never resume them, and their study trials run again in new folders
    (search.run.optuna_bridge). They hold nothing Tune logged."""
    for folder in unrecorded_trial_folders(settings.experiment_dir):
        shutil.rmtree(folder)
        print(
            f"Removed {folder.name}: it started after the experiment's last saved state, "
            "before the search was killed; its configuration runs again"
        )


def _searcher(settings: SearchSettings, screen: Prescreen | None) -> BudgetAwareOptunaSearch:
    """The harness's searcher over the backbones the pre-screen kept, its best pairs first."""
    if screen is None:
        return build_searcher(settings)
    return build_searcher(settings, screen.kept, screen.study_params())


def _fit(
    settings: SearchSettings,
    searched: list[str],
    wandb_mode: str,
    searcher: Searcher | None,
    resume: bool,
    prepared: Prepared,
) -> tuple[tune.Tuner, str | None]:
    """Run (or restore and continue) the Tuner; return it, and why the storage stopped it
    (None: it ran to the end, or Ctrl-C or SIGTERM stopped it)."""
    states, val_images = prepared.states, len(prepared.data.val)
    previous = signal.signal(signal.SIGTERM, forward_to_sigint)
    interrupt = signal.getsignal(signal.SIGINT)
    try:
        if resume:
            record_extension(settings)  # --extend: settings.json, then Tune's search state
            grown = grow_search_state(settings.experiment_dir, settings.num_samples)
            if searcher is None:  # the harness's searcher: its study hears every logged epoch
                catch_up(settings.experiment_dir, settings.name)
            remote = remote_experiment(settings)
            if remote:  # Tune restores from the stored copy
                remote.upload([grown.name, SETTINGS_FILE])
            else:
                _drop_unrecorded_trials(settings)
            # callbacks and searcher come from the saved state
            tuner = restore_tuner(settings, states)
        else:
            progress = ProgressReporter(searched, settings.num_samples, settings.max_epochs)
            callbacks = [progress, *build_callbacks(settings, searched, wandb_mode)]
            remote = remote_experiment(settings)
            if remote and searcher is None:  # the harness's searcher writes optuna.db
                callbacks.append(StudyUpload(remote))
            callbacks.append(SupersededCheckpoints(Store.of(settings)))
            if searcher is None:
                searcher = _searcher(settings, prepared.prescreen)
            tuner = build_tuner(settings, callbacks, searcher, states, val_images)
        # A running trial may write a checkpoint of up to the whole model (a lean one less).
        checkpoint = max(largest_checkpoint_bytes(s or {}) for s in states.values())
        reserve = settings.concurrency * (checkpoint or DEFAULT_CHECKPOINT_BYTES)
        watch = StorageWatch(settings.experiment_dir, reserve) if not remote else nullcontext()
        with state_saved_every_checkpoint(), watch:
            tuner.fit()  # Ctrl-C (or SIGTERM): Tune stops the trials, saves its state, returns
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, interrupt)  # Tune's own handler would outlive its fit
    return tuner, getattr(watch, "problem", None)
