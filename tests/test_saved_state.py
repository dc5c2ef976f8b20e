"""search.experiment.saved_state reads Ray's and Optuna's on-disk state and private
attributes for the releases in SUPPORTED: the installed ones must be inside it, and
pyproject.toml must pin the same ranges, so a new release is a deliberate step
(docs/development.md), never a surprise in a user's `--resume`."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

from search.experiment import saved_state


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
