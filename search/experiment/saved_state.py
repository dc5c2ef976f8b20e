"""What the harness knows of Ray Tune's and Optuna's saved state and private attributes, in
one module, for the versions in SUPPORTED (pyproject.toml pins the same ranges).

Nothing here is a promise of Ray or Optuna: file names and pickle contents of Tune's
experiment state, the keys of OptunaSearch's saved state, and the private attributes the
Optuna bridge uses. When you move a pin (docs/development.md), read this module against the
new release, widen SUPPORTED, and run the whole suite: tests/test_saved_state.py fails while
the installed versions are outside SUPPORTED.

Ray Tune restores from the newest `experiment_state-*.json` and silently starts over when that
file is damaged, hiding past trials. `--resume` checks every file a restore reads, before Ray
starts, and stops with one line naming what is wrong instead.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from search.config.settings import SearchSettings, resolve
from search.config.usage import UsageError
from search.experiment.layout import (
    SEARCHER_STATE_FORMAT,
    SETTINGS_FILE,
    STATE_PATTERNS,
    STUDY_FILE,
    TRIAL_FOLDER_PREFIX,
    TUNER_FILE,
)
from search.experiment.pickle_names import Allowed, pickle_globals
from search.experiment.study import study_url
from trainable.files import write_atomically

if TYPE_CHECKING:
    import optuna

# The releases whose saved state and private attributes this module was checked against
# (the upper bound excluded), as pyproject.toml pins them.
SUPPORTED = {"ray": ("2.60", "2.61"), "optuna": ("5.1", "5.2"), "wandb": ("0.31", "0.32")}


def _release(version: str) -> tuple[int, ...]:
    """'2.60.0' -> (2, 60, 0); a suffix such as 'rc1' or '+cu130' is dropped."""
    numbers = []
    for part in version.split("+")[0].split("."):
        leading = re.match(r"\d+", part)
        if leading is None:
            break
        numbers.append(int(leading[0]))
        if leading[0] != part:  # 0rc1: the pre-release of 0
            break
    return tuple(numbers)


def unsupported_versions() -> list[str]:
    """The installed packages outside SUPPORTED, as lines (empty when all are inside)."""
    problems = []
    for package, (low, high) in SUPPORTED.items():
        installed = metadata.version(package)
        if not _release(low) <= _release(installed) < _release(high):
            problems.append(f"{package} {installed} is outside the supported >={low},<{high}")
    return problems


class OptunaSearchInternals:
    """Mixed into the subclass of Ray's OptunaSearch (search.run.optuna_bridge): the private
    attributes of ray.tune.search.optuna.OptunaSearch it uses, named in this one place."""

    _ot_study: optuna.Study | None
    _ot_trials: dict[str, optuna.Trial]
    _completed_trials: set[str]

    @property
    def study(self) -> optuna.Study | None:
        """The Optuna study (None until the search's metric and mode are set)."""
        return self._ot_study

    @property
    def study_trials(self) -> dict[str, optuna.Trial]:
        """Tune trial id -> its open study trial."""
        return self._ot_trials

    @property
    def told(self) -> set[str]:
        """Tune trial ids whose end the study has been told."""
        return self._completed_trials

    def set_space(self, space: Any) -> None:
        """The define-by-run function OptunaSearch samples with."""
        self._space = space

    def create_study(self, metric: str | None, mode: str | None) -> None:
        """Create (or load) the study with TuneConfig's metric and direction."""
        self._metric, self._mode = metric, mode
        self._setup_study(mode)  # type: ignore[attr-defined]


def force_on_current_node() -> dict[str, Any]:
    """Ray actor options that place an actor on the driver's node (a private Ray helper)."""
    from ray.air.util.node import _force_on_current_node

    return _force_on_current_node()


def load_settings(root: Path) -> SearchSettings:
    """The settings an experiment was created with, from its settings.json."""
    if not root.is_dir():
        raise UsageError(f"--resume: no experiment at {root}; check --name and --storage-path")
    path = root / SETTINGS_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(
            f"--resume: {path} is missing or damaged ({error}); {root} was not made by this "
            "harness or its state is broken, so nothing was resumed"
        ) from None
    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    # Settings added since the experiment was made take their defaults; unknown ones refuse.
    if not isinstance(saved, dict) or not {"name", "space"} <= set(saved) <= fields:
        keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise UsageError(f"--resume: {path} does not hold transfer-tune settings (got {keys})")
    # Made before --keep-checkpoints: it kept every checkpoint; keep every trial's best.
    saved.setdefault("keep_checkpoints", 0)
    # Made when "unset" was 0 or "" rather than None (every other unset one was resolved).
    for key in ("max_concurrent", "address"):
        saved[key] = saved.get(key) or None
    return resolve(SearchSettings(**saved))


def _newest(root: Path, pattern: str) -> Path | None:
    """The newest file matching `pattern` (Ray names them by timestamp, so by name)."""
    matches = sorted(root.glob(pattern))
    return matches[-1] if matches else None


class _PickledStorage:
    """Stands in for a pickled Optuna RDBStorage: keeps its fields (`url`), opens nothing."""


class _InertUnpickler(pickle.Unpickler):
    """Loads Ray's state pickles without reconnecting their Optuna storage.

    Unpickling an RDBStorage opens its SQLite URL and creates the file if missing: for a moved
    experiment, an empty optuna.db at the old place.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("optuna.storages._rdb.storage", "RDBStorage"):
            return _PickledStorage
        if not STATE_GLOBALS.allows(module, name):  # also what the opcode reader could not tell
            raise pickle.UnpicklingError(f"refused to import {module}.{name}")
        return super().find_class(module, name)


def _load_inert(f: IO[bytes]) -> Any:
    unpickler = _InertUnpickler(f)
    try:
        return unpickler.load()
    finally:
        # Its memo would keep what it made alive past the caller (until the interpreter
        # exits, when Ray's W&B callback's __del__ fails without Ray's module: a traceback).
        unpickler.memo.clear()


# What a pickle of this harness's and Ray's saved state may name (checked before anything is
# unpickled): classes these packages define, these functions (reconstructors and stored
# values), and these builtins. A pickle runs what it names when loaded; a tampered file
# naming anything else (os.system, builtins.eval, cloudpickle's code objects) is refused.
STATE_GLOBALS = Allowed(
    packages=(
        "search", "trainable", "spaces", "ray.tune", "ray.train", "ray.air", "optuna", "numpy",
        "datetime", "collections", "enum", "uuid", "pathlib", "functools", "pyarrow._fs",
    ),
    functions=frozenset({
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("pyarrow._fs", "FileSystem._from_uri"),
        # a URI experiment's filesystem, as Ray's StorageContext pickles it
        ("pyarrow._s3fs", "S3FileSystem._reconstruct"),
        ("pyarrow._gcsfs", "GcsFileSystem._reconstruct"),
        ("pyarrow._azurefs", "AzureFileSystem._reconstruct"),
        ("pyarrow._hdfs", "HadoopFileSystem._reconstruct"),
        ("ray.train._internal.storage", "_upload_to_fs_path"),
        ("optuna.samplers._tpe.sampler", "default_weights"),
        ("optuna.samplers._tpe.sampler", "default_gamma"),
        ("search.run.tuner", "trial_dirname"),
        ("search.builders", "trial_dirname"),  # an experiment made before search/ had layers
    }),
    builtins=frozenset({"set", "frozenset", "list", "dict", "tuple", "bytes", "bytearray",
                        "complex", "float", "int", "str", "bool", "slice", "range", "object"}),
    refused=frozenset({("numpy", "memmap")}),  # builds a file where its pickle says
)  # fmt: skip


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)


def _embedded_pickles(value: Any) -> Iterator[bytes]:
    """The pickles Ray's experiment state embeds in its JSON (`CLOUDPICKLE_FALLBACK`, hex),
    also inside JSON held as strings (its trials)."""
    if isinstance(value, dict):
        if value.get("_type") == "CLOUDPICKLE_FALLBACK" and isinstance(value.get("value"), str):
            yield bytes.fromhex(value["value"])
        for item in value.values():
            yield from _embedded_pickles(item)
    elif isinstance(value, list):
        for item in value:
            yield from _embedded_pickles(item)
    elif isinstance(value, str) and value.startswith("80") and _is_hex(value):
        yield bytes.fromhex(value)  # a trial's non-JSON fields: a pickle (protocol 2+) in hex
    elif isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            inner = json.loads(value)
        except ValueError:
            return
        yield from _embedded_pickles(inner)


def searcher_json(path: Path) -> dict | None:
    """The harness's searcher state in `path` (JSON: search.run.optuna_bridge); None when the
    file is a pickle (an experiment made before). ValueError when it is JSON of another kind."""
    data = path.read_bytes()
    if not data.lstrip().startswith(b"{"):
        return None
    state = json.loads(data)
    if state.get("format") != SEARCHER_STATE_FORMAT:
        raise ValueError(f"not a searcher state of this harness ({state.get('format')!r})")
    return state


def _pickles(path: Path, kind: str) -> list[bytes]:
    """The pickle `path`, or the pickles a JSON state file embeds (a parse error: damage)."""
    if kind == "json":
        return list(_embedded_pickles(json.loads(path.read_text())))
    if kind == "searcher" and searcher_json(path) is not None:
        return []  # JSON: nothing to unpickle
    return [path.read_bytes()]


def _foreign(pickles: list[bytes]) -> list[str]:
    named = {pair for data in pickles for pair in pickle_globals(data)}
    return sorted(f"{m}.{n}" for m, n in named if not STATE_GLOBALS.allows(m, n))


def foreign_globals(path: Path, kind: str) -> list[str]:
    """What the pickle `path` (or the pickles a JSON state file embeds) would import that
    this harness's state never holds; empty when nothing. Nothing is unpickled."""
    return _foreign(_pickles(path, kind))


def _unreadable(path: Path, kind: str) -> str | None:
    """Why `path` cannot be read as `kind` ('json' or 'pickle'); None when it can. A pickle
    naming what the harness's state never holds is refused before it is loaded. The file is
    read and parsed once."""
    reason = None
    try:
        pickles = _pickles(path, kind)
        foreign = _foreign(pickles)
        if foreign:
            return (
                f"it would import {', '.join(foreign[:3])}, which this harness's state never "
                "holds: refused unread, as a tampered file would run it"
            )
        if kind != "json" and pickles:  # a pickle (a searcher state made before JSON ones)
            _load_inert(io.BytesIO(pickles[0]))
    except Exception as error:  # any failure to load means a restore would fail or start over
        reason = f"{type(error).__name__}: {error}"
    return reason


def state_problems(settings: SearchSettings) -> list[str]:
    """What is missing or damaged in the experiment's saved state (empty when it is whole)."""
    root = settings.experiment_dir
    problems = []
    tuner = root / TUNER_FILE
    if not tuner.is_file():
        problems.append(f"{tuner} is missing")
    elif reason := _unreadable(tuner, "pickle"):
        problems.append(f"{tuner} is damaged ({reason})")
    for what, (pattern, kind) in STATE_PATTERNS.items():
        newest = _newest(root, pattern)
        if newest is None:
            problems.append(f"no {what} ({pattern}) in {root}")
        elif reason := _unreadable(newest, kind):
            problems.append(f"the newest {what} {newest.name} is damaged ({reason})")
    problems += _study_problems(settings)
    return problems


def _study_problems(settings: SearchSettings) -> list[str]:
    """Problems of the experiment's Optuna study: missing, or made for another space."""
    import optuna

    path = settings.experiment_dir / STUDY_FILE
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        study = optuna.load_study(study_name=settings.name, storage=study_url(path.parent))
    except Exception as error:
        return [f"{path} holds no readable study {settings.name!r} ({type(error).__name__})"]
    space = study.user_attrs.get("space")
    if space != settings.space:
        return [f"{path} belongs to space {space!r}, but the experiment's is {settings.space!r}"]
    known, held = _searcher_trials(path.parent), len(study.get_trials(deepcopy=False))
    if known > held:  # Optuna would fail on the first trial it cannot find
        return [
            f"{path} holds {held} trials, fewer than the {known} the saved search state names "
            "(the study is older than the rest of the state)"
        ]
    return []


def _searcher_trials(root: Path) -> int:
    """How many study trials the experiment's newest searcher state names."""
    newest = _newest(root, STATE_PATTERNS["searcher state"][0])
    if newest is None or _unreadable(newest, "searcher"):  # reported on its own
        return 0
    state = searcher_json(newest)
    if state is not None:
        return len(state["trials"])
    with newest.open("rb") as f:
        return len(_load_inert(f).get("_ot_trials", {}))


def saved_study_url(root: Path) -> str | None:
    """The study URL the experiment's newest searcher state points at (None if it has none)."""
    newest = _newest(root, STATE_PATTERNS["searcher state"][0])
    if newest is None:
        return None
    state = searcher_json(newest)
    if state is not None:
        return state.get("storage_url")
    with newest.open("rb") as f:
        storage = _load_inert(f).get("_storage")
    return getattr(storage, "url", None)


def grow_search_state(root: Path, total: int) -> Path:
    """Let Tune's restored search create trials up to `total` (`--extend`).

    Tune restores the trial budget from its newest search state, not from the Tuner, so that is
    where an extension takes effect; a search that --time-budget ended made fewer trials than
    that budget, and has a finished search state. Idempotent: an interrupted extension resumes
    the same way. Returns that file.
    """
    newest = _newest(root, STATE_PATTERNS["search state"][0])
    assert newest is not None, "checked by state_problems"
    from ray import cloudpickle

    with newest.open("rb") as f:
        state = cloudpickle.load(f)
    grows = state["total_samples"] < total or state["finished"]
    if state["counter"] < total and grows:
        state.update(total_samples=total, finished=False)
        write_atomically(newest, lambda f: cloudpickle.dump(state, f))
    return newest


def end_live_trials(root: Path, trial_ids: set[str]) -> None:
    """Tell Tune's newest search state that these trials have ended.

    A Tune stopper's stop_all (--time-budget) ends the running trials without telling the
    concurrency limiter around the searcher, which keeps counting them as running: restored
    (--extend), it would hand out no trial.
    """
    newest = _newest(root, STATE_PATTERNS["search state"][0])
    if newest is None or not trial_ids:
        return
    from ray import cloudpickle

    with newest.open("rb") as f:
        state = cloudpickle.load(f)
    limiter = state.get("name:ConcurrencyLimiter")
    if not limiter or not trial_ids & set(limiter["live_trials"]):
        return
    live = set(limiter["live_trials"]) - trial_ids
    limiter.update(live_trials=live, num_unfinished_live_trials=len(live))
    write_atomically(newest, lambda f: cloudpickle.dump(state, f))


def unrecorded_trial_folders(root: Path) -> list[Path]:
    """Trial folders of the experiment that its saved state does not name: trials Tune started
    after its last state save, before the driver was killed. Tune never resumes them."""
    from ray.tune import ExperimentAnalysis

    known = {Path(trial.path).name for trial in ExperimentAnalysis(str(root)).trials}
    return sorted(
        folder
        for folder in root.glob(f"{TRIAL_FOLDER_PREFIX}*")
        if folder.is_dir() and folder.name not in known
    )


def resumed_trial_folders(root: Path) -> list[Path]:
    """The folders of the experiment's trials that a resume continues (all but the ended)."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(root)).trials
    return [Path(trial.path) for trial in trials if trial.status != "TERMINATED"]
