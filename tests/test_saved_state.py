"""search.experiment.saved_state reads Ray's and Optuna's on-disk state and private
attributes for the releases in SUPPORTED: the installed ones must be inside it, and
pyproject.toml must pin the same ranges, so a new release is a deliberate step
(docs/development.md), never a surprise in a user's `--resume`."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from pathlib import Path

import pytest
from helpers import ROOT

from search.experiment import saved_state
from search.experiment.pickle_names import pickle_globals


def test_the_installed_versions_are_the_supported_ones() -> None:
    assert saved_state.unsupported_versions() == []


def test_a_version_outside_the_range_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saved_state, "SUPPORTED", {"optuna": ("4.0", "5.0"), "ray": ("2.61", "3")})
    problems = saved_state.unsupported_versions()
    assert len(problems) == 2
    assert problems[0].startswith("optuna 5.") and problems[0].endswith(">=4.0,<5.0")


@pytest.mark.parametrize(
    ("version", "release"),
    [("2.60.0", (2, 60, 0)), ("5.1.0rc1", (5, 1, 0)), ("2.14.1+cu130", (2, 14, 1))],
)
def test_release_numbers(version: str, release: tuple[int, ...]) -> None:
    assert saved_state._release(version) == release


def test_pyproject_pins_what_is_supported() -> None:
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_-]+)(\[[^]]*\])?>=([\d.]+),<([\d.]+)", dep)
        assert match, f"{dep!r} is not pinned as NAME>=LOW,<HIGH"
        pins[match[1]] = (match[3], match[4])
    for package, bounds in saved_state.SUPPORTED.items():
        assert pins[package] == bounds, package


class _Payload:
    """What a tampered state file holds: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _short(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()  # SHORT_BINUNICODE


def test_a_pickle_that_would_run_code_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "searcher-state-x.pkl"
    path.write_bytes(pickle.dumps({"_ot_trials": _Payload(marker)}))
    assert saved_state.foreign_globals(path, "pickle") == [f"{os.system.__module__}.system"]
    reason = saved_state._unreadable(path, "pickle")
    assert reason and "refused unread" in reason and not marker.exists()


def test_a_name_hidden_by_stack_tricks_is_still_read(tmp_path: Path) -> None:
    """`posix numpy POP system dtype POP STACK_GLOBAL`: the last two strings are numpy.dtype,
    but the stack holds posix.system."""
    data = (
        b"\x80\x04" + _short("posix") + _short("numpy") + b"0" + _short("system")
        + _short("dtype") + b"0" + b"\x93" + _short("true") + b"\x85" + b"R."
    )  # fmt: skip
    assert pickle.loads(data) == 0  # it really is posix.system("true")
    assert pickle_globals(data) == [("posix", "system")]


def test_a_pickle_embedded_in_rays_json_state_is_read_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Payload(marker)).hex()
    trial = json.dumps({"storage": {"_type": "CLOUDPICKLE_FALLBACK", "value": payload}})
    path = tmp_path / "experiment_state-x.json"
    path.write_text(json.dumps({"trial_data": [trial]}))
    assert saved_state.foreign_globals(path, "json") == [f"{os.system.__module__}.system"]
    assert not marker.exists()


def test_the_harness_own_state_passes(tmp_path: Path) -> None:
    import datetime

    import numpy as np
    from optuna.distributions import FloatDistribution

    from search.run.optuna_bridge import ConditionalSpace

    state = {
        "space": ConditionalSpace({"head_lr": FloatDistribution(1e-4, 1.0, log=True)}, 5),
        "rng": np.random.RandomState(0), "at": datetime.datetime(2026, 12, 5), "ids": {"a"},
    }  # fmt: skip
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps(state))
    assert saved_state.foreign_globals(path, "pickle") == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy.ctypeslib", "ctypes.CDLL"),  # an attribute of an attribute
        ("search.experiment.lock", "filelock"),  # a module, not a class
        ("search.experiment.storage", "Path"),  # a class it imports, not one it defines: ok
        ("numpy", "memmap"),  # a class that writes a file its pickle names
        ("builtins", "eval"),
    ],
)
def test_only_classes_trusted_packages_define_pass(module: str, name: str) -> None:
    allowed = (module, name) == ("search.experiment.storage", "Path")  # pathlib is trusted
    assert saved_state.STATE_GLOBALS.allows(module, name) is allowed


def test_a_trials_hex_field_is_read_too(tmp_path: Path) -> None:
    """Ray keeps a trial's non-JSON fields as bare hex pickles in its experiment state."""
    trial = json.dumps({"placement_group_factory": pickle.dumps(_Payload(tmp_path)).hex()})
    path = tmp_path / "experiment_state-x.json"
    path.write_text(json.dumps({"trial_data": [trial]}))
    assert saved_state.foreign_globals(path, "json") == [f"{os.system.__module__}.system"]


def test_the_check_itself_never_imports_what_it_refuses(tmp_path: Path) -> None:
    """The unpickler that reads the state during the check refuses the same names, also
    any the opcode reader could not tell."""
    marker = tmp_path / "ran"
    with pytest.raises(pickle.UnpicklingError, match=r"refused to import \S+\.system"):
        saved_state._load_inert(io.BytesIO(pickle.dumps(_Payload(marker))))
    assert not marker.exists()


def test_a_stored_experiments_filesystem_passes() -> None:
    """Ray pickles an s3:// or gs:// experiment's pyarrow filesystem in its state."""
    import pyarrow.fs

    for fs in (
        pyarrow.fs.S3FileSystem(region="us-east-1", anonymous=True),
        pyarrow.fs.GcsFileSystem(anonymous=True),
    ):
        named = pickle_globals(pickle.dumps(fs))
        assert named and all(saved_state.STATE_GLOBALS.allows(m, n) for m, n in named), named
