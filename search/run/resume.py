"""Continuing an experiment: its saved settings, a check that its state on disk is whole, and
growing it by `--extend N` trials.

Ray Tune restores from the newest `experiment_state-*.json` and silently starts over when that
file is damaged, hiding past trials. `--resume` checks every file a restore reads, before Ray
starts, and stops with one line naming what is wrong instead.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from search.config.filesystems import uri_problems
from search.config.parse import cluster_address, given_flags
from search.config.preflight import free_space_problems, gpu_problems
from search.config.settings import SearchSettings, is_uri, join_uri, resolve, working_copy
from search.config.usage import UsageError
from search.config.validate import local_resource_problems
from search.experiment.layout import CHECKPOINT_GLOB, SETTINGS_FILE
from search.experiment.lock import abandon, claim
from search.experiment.saved_state import load_settings, saved_study_url, state_problems
from search.experiment.storage import RemoteExperiment
from search.experiment.study import study_url
from trainable.config import TrialConfig, default_cache_dir, error_line
from trainable.files import write_json_atomically


def setting_differences(saved: SearchSettings, given: dict[str, Any]) -> list[str]:
    """Flags given with --resume whose values differ from the experiment's settings."""
    return [
        f"--{key.replace('_', '-')} {value!r} (the experiment has {getattr(saved, key)!r})"
        for key, value in given.items()
        if key not in ("name", "storage_path") and value != getattr(saved, key)
    ]


def parse_resume(argv: list[str] | None) -> SearchSettings:
    """The settings of the experiment `--resume` (or `--extend N`) names, after checking that
    its state is whole; `--extend N` adds N to its `num_samples`."""
    given = given_flags(argv)
    given.pop("resume", None)
    extend = given.pop("extend", 0)
    # Where the trials run is not part of the experiment: a resume may use another cluster.
    address = cluster_address(given.pop("address", None))
    # Nor how many trials' checkpoints it keeps: a resume may keep more, or fewer.
    keep = given.pop("keep_checkpoints", None)
    # Nor how long it may take: each run of the search gets its own --time-budget.
    budget = given.pop("time_budget", 0.0)
    command = "--extend" if extend else "--resume"
    if "name" not in given:
        raise UsageError(f"{command} needs --name NAME, the experiment to continue")
    if extend and "num_samples" in given:
        raise UsageError(
            f"--extend {extend} adds {extend} trials to the experiment's --num-samples; "
            "leave --num-samples out"
        )
    storage_path = given.get("storage_path", SearchSettings.storage_path)
    remote = _stored_experiment(command, storage_path, given["name"], given.get("cache_dir"))
    root = remote.local if remote else Path(storage_path).expanduser().resolve() / given["name"]
    if root.is_dir():  # held before anything of it is read or downloaded: one writer
        claim(root, create=False)
    saved = load_settings(root)
    if saved.name != root.name:  # its Ray and Optuna state still point at the original
        raise UsageError(
            f"{command}: {remote.uri if remote else root} holds experiment {saved.name!r}, "
            "renamed or copied; resume it under its own name"
        )
    if remote and root != working_copy(storage_path, saved.name, saved.cache_dir):
        raise UsageError(
            f"{command}: {remote.uri} keeps its working copy and study under the cache folder it "
            f"was started with; resume it with --cache-dir {saved.cache_dir}"
        )
    if "cache_dir" in given:  # compared as a new search would store it
        given["cache_dir"] = str(Path(given["cache_dir"]).expanduser().resolve())
    # Relative paths and defaults as a new search would resolve them: `--data
    # imagefolder:./photos` is the experiment's `imagefolder:/home/me/photos`.
    as_given = resolve(dataclasses.replace(saved, **given))
    given = {key: getattr(as_given, key) for key in given}
    differences = setting_differences(saved, given)
    if differences:
        raise UsageError(
            f"{command} continues an experiment with the settings it was created with, "
            f"but these flags differ: {'; '.join(differences)}"
        )
    settings = dataclasses.replace(
        saved,
        storage_path=storage_path if remote else str(root.parent),
        num_samples=saved.num_samples + extend,
        address=address,
        keep_checkpoints=saved.keep_checkpoints if keep is None else keep,
        time_budget=budget,
    )
    if settings.keep_checkpoints < 0:
        raise UsageError(
            f"`--keep-checkpoints >= 0` must hold, but got {settings.keep_checkpoints}"
        )
    if not address:  # made on a cluster perhaps, resumed here: this machine must hold a trial
        local = local_resource_problems(settings) + gpu_problems(settings.gpus_per_trial)
        if local:
            raise UsageError(f"{command} on this machine: {'; '.join(local)}")
    if not remote:  # a volume that filled up: room made since?
        room = free_space_problems(settings)
        if room:
            raise UsageError(f"{command}: {room[0]}")
    if remote:  # everything else checked: now the whole experiment
        try:
            copied = remote.download()
        except OSError as error:
            reason = error_line(error)
            raise UsageError(f"{command}: {remote.uri} cannot be read: {reason}") from None
        print(f"Downloaded {copied} files of {remote.uri} to its working copy {root}")
    problems = state_problems(settings)
    if problems:
        raise UsageError(
            f"{command}: the saved state of {root} is incomplete or damaged, so nothing was "
            f"resumed or overwritten: {'; '.join(problems)}"
        )
    url = saved_study_url(root)
    if url and url != study_url(root):  # Ray would reopen the study where it was made
        made_at = Path(url.removeprefix("sqlite:///")).parent
        if remote:
            raise UsageError(
                f"{command}: {remote.uri} was moved or copied from where it was made, and its "
                f"saved search state writes to that experiment's study ({url}); continue it there"
            )
        raise UsageError(
            f"{command}: {root} was moved or copied from {made_at}, and its saved search "
            f"state writes to the study there; continue it at {made_at} (--storage-path "
            f"{made_at.parent})"
        )
    return settings


def _stored_experiment(
    command: str, storage_path: str, name: str, cache_dir: str | None
) -> RemoteExperiment | None:
    """For a URI --storage-path, the stored experiment with its settings.json downloaded into
    its working copy (the rest comes once the settings are checked); None for a folder.
    UsageError (one line) when it is not there or can't be read."""
    if not is_uri(storage_path):
        return None
    problems = uri_problems(storage_path)
    if problems:
        raise UsageError(problems[0])
    cache = str(Path(cache_dir).expanduser().resolve()) if cache_dir else default_cache_dir()
    remote = RemoteExperiment(join_uri(storage_path, name), working_copy(storage_path, name, cache))
    claim(remote.local, create=not remote.local.exists())  # its working copy: one writer here
    try:
        remote.fetch_settings(
            f"{command}: no experiment at {remote.uri}; check --name and --storage-path"
        )
    except UsageError:
        abandon(remote.local)  # a working copy made for nothing goes again
        raise
    return remote


def extension_size(settings: SearchSettings) -> int:
    """How many trials `--extend` adds to the experiment (0 for a plain `--resume`)."""
    saved = json.loads((settings.experiment_dir / SETTINGS_FILE).read_text())
    return max(0, settings.num_samples - saved["num_samples"])


def record_extension(settings: SearchSettings) -> int:
    """Save the `num_samples` grown by `--extend` in settings.json; return the trials added.
    Called once everything is checked: a refused extension leaves the experiment as it was."""
    saved = json.loads((settings.experiment_dir / SETTINGS_FILE).read_text())
    added = settings.num_samples - saved["num_samples"]
    if added > 0:
        save_num_samples(settings.experiment_dir, settings.num_samples)
    return added


def save_num_samples(root: Path, num_samples: int) -> None:
    """Set the --num-samples saved in the experiment's settings.json (--extend grows it; a
    search --time-budget ended keeps the trials it ran)."""
    path = root / SETTINGS_FILE
    write_json_atomically(path, {**json.loads(path.read_text()), "num_samples": num_samples})


def checkpoint_problems(
    trial_folders: list[Path], fixed: TrialConfig, states: dict[str, dict | None]
) -> list[str]:
    """The trials (of `trial_folders`) whose newest checkpoint trained on other frozen stages
    than `states` (each backbone's starting weights the search has now): a lean checkpoint
    holds only what trained (trainable.checkpoint), and would fail in the trial."""
    import torch

    from trainable.checkpoint import CHECKPOINT_FILE
    from trainable.loop import build_trial_model, frozen_fingerprint

    expected: dict[tuple[str, int], str] = {}
    problems = []
    for trial in trial_folders:
        for folder in sorted(trial.glob(CHECKPOINT_GLOB), reverse=True):
            try:
                saved = torch.load(folder / CHECKPOINT_FILE, mmap=True, weights_only=True)
            except Exception:  # half written: the trial takes an older one (trainable.ray_entry)
                continue
            if "frozen_fingerprint" not in saved:  # a whole model: nothing to rebuild
                break
            cfg = dataclasses.replace(TrialConfig.from_dict(saved["config"]), device="cpu")
            key = (cfg.backbone, cfg.freeze_depth)
            if key not in expected:
                model = build_trial_model(cfg, len(saved["classes"]), states.get(cfg.backbone))
                expected[key] = frozen_fingerprint(model, cfg)[1]
            if saved["frozen_fingerprint"] != expected[key]:
                problems.append(
                    f"{trial.name}'s checkpoint {folder.name} trained on frozen "
                    f"stages other than the starting weights --weights {fixed.weights} gives "
                    "now (they changed since the search started); put back the weights it "
                    "started from"
                )
            break
    return problems
