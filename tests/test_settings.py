import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_image_folder

from search.config.preflight import checked_settings
from search.config.settings import SearchSettings, resolve
from search.config.usage import UsageError
from search.experiment.storage import remote_experiment
from search.run.tuner import build_param_space
from trainable.defaults import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]


def _parse(tmp_path: Path, *flags: str) -> SearchSettings:
    return checked_settings(["--storage-path", str(tmp_path), *flags])


def test_an_epoch_is_its_full_batches() -> None:
    from search.config.settings import steps_per_epoch

    assert steps_per_epoch(100, 16) == 6  # full batches only
    assert steps_per_epoch(10, 16) == 1  # one short batch


def test_defaults_are_a_valid_search(tmp_path: Path) -> None:
    settings = _parse(tmp_path)
    assert settings.space == "resnet_small" and settings.data == "digits"
    assert settings.weights == "source"  # digits' own default
    assert settings.name.startswith("resnet_small-")
    assert settings.experiment_dir == tmp_path.resolve() / settings.name


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--space", "huge"],
            r"unknown search space 'huge'; choose one of: "
            r"convnext, efficientnet, mobilenet, resnet_large, resnet_small, vit$",
        ),
        (["--data", "mnist"], r"unknown data set 'mnist'; choose one of: digits"),
        (
            ["--weights", "imagenet1k"],
            r"weights file \S*imagenet1k does not exist; --weights takes source, imagenet, none",
        ),
        (["--num-samples", "0"], r"`--num-samples >= 1` must hold, but got 0"),
        (["--max-epochs", "0"], r"`--max-epochs >= 1` must hold, but got 0"),
        (
            ["--grace-period", "4", "--max-epochs", "3"],
            r"`--grace-period <= --max-epochs` must hold, but got \(grace_period=4, max_epochs=3\)",
        ),
        (["--reduction-factor", "1"], r"`--reduction-factor >= 2` must hold, but got 1"),
        (["--patience", "-1"], r"`--patience >= 0` must hold \(0: off\), but got -1"),
        (["--max-concurrent", "-1"], r"`--max-concurrent >= 1` must hold, but got -1"),
        (["--cpus-per-trial", "999"], r"`0 < --cpus-per-trial <= \d+` .* but got 999"),
        (["--seed", "-3"], r"`0 <= --seed < 2\*\*32` must hold, but got -3"),
        (["--name", "../up"], r"--name must be a folder name .* but got '../up'"),
        (["--wandb", "maybe"], r"argument --wandb: invalid choice: 'maybe'"),
        (["--num-sample", "3"], r"unrecognized arguments: --num-sample 3"),
        (["--num-samples", "three"], r"argument --num-samples: invalid int value: 'three'"),
    ],
)
def test_bad_input_is_one_clear_message(tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        _parse(tmp_path, *flags)
    assert "\n" not in str(error.value)


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as error:
        _parse(tmp_path, "--num-samples", "0", "--reduction-factor", "1")
    assert "--num-samples" in str(error.value) and "--reduction-factor" in str(error.value)


def test_an_existing_experiment_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    with pytest.raises(UsageError, match=r"experiment .*mine already exists .*another --name"):
        _parse(tmp_path, "--name", "mine")


def test_the_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "search.py"),
            "--space",
            "nope",
            "--num-samples",
            "0",
            "--storage-path",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("search.py: error: unknown search space 'nope'; choose one of:")
    assert "--num-samples >= 1" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_user_data_settings_resolve_to_an_absolute_re_runnable_recipe(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "photos", per_class=2)
    settings = resolve(
        SearchSettings(data=f"imagefolder:{tmp_path}/photos/../photos", storage_path=str(tmp_path))
    )
    assert settings.data == f"imagefolder:{tmp_path / 'photos'}"
    assert (settings.weights, settings.image_size, settings.shots) == ("imagenet", 224, 0)
    params = build_param_space(settings)
    assert params["device"] == "cpu" and params["backbone"] == "resnet18"
    gpu = build_param_space(dataclasses.replace(settings, gpus_per_trial=0.5, backbone="resnet50"))
    assert gpu["device"] == "cuda" and gpu["backbone"] == "resnet50"
    digits = resolve(SearchSettings())
    assert (digits.weights, digits.image_size, digits.shots) == ("source", 32, 20)
    cifar = resolve(SearchSettings(data="cifar10", cache_dir=str(tmp_path)))
    assert cifar.data == f"cifar10:{tmp_path / 'datasets'}"


def test_help_lists_every_flag_with_its_default() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "search.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--data", "--weights", "--image-size", "--no-augment", "--gpus-per-trial"):
        assert flag in done.stdout
    assert "number of trials (default: 16, " in done.stdout
    # Every flag's default and its reason come from the one table (trainable.defaults).
    squeezed = re.sub(r"\s+", "", done.stdout)  # argparse wraps, also at hyphens
    flags = {f.name for f in dataclasses.fields(SearchSettings)} - {"augment", "feature_cache"}
    for name in flags:
        assert re.sub(r"\s+", "", DEFAULTS[name].reason) in squeezed, name


def test_a_storage_uri_keeps_its_working_copy_in_the_cache_not_a_folder_named_s3(
    tmp_path: Path,
) -> None:
    uri = "s3://b/r?region=us-east-1"
    settings = SearchSettings(storage_path=uri, cache_dir=str(tmp_path), name="exp")
    remote = remote_experiment(settings)
    assert remote and remote.uri == "s3://b/r/exp?region=us-east-1"
    assert settings.experiment_dir == tmp_path / "storage" / "s3" / "b" / "r" / "exp"
    assert remote.local == settings.experiment_dir
    assert settings.storage_location == uri and settings.experiment_location == remote.uri
    local = SearchSettings(storage_path=str(tmp_path), name="exp")
    assert remote_experiment(local) is None
    assert local.storage_location == str(tmp_path.resolve())


def test_an_experiment_stored_at_a_uri_is_never_overwritten(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/bucket"
    (tmp_path / "bucket" / "exp").mkdir(parents=True)
    with pytest.raises(UsageError, match=rf"experiment {uri}/exp already exists"):
        checked_settings(["--storage-path", uri, "--name", "exp", "--cache-dir", str(tmp_path)])
    (tmp_path / "storage" / "file" / str(tmp_path)[1:] / "bucket" / "new").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"experiment its working copy .*/new already exists"):
        checked_settings(["--storage-path", uri, "--name", "new", "--cache-dir", str(tmp_path)])


def test_a_storage_uri_of_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"a URI Ray supports .* but 'nosuch://b/r' is neither"):
        _parse(tmp_path, "--storage-path", "nosuch://b/r")


def test_a_storage_uri_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    uri = f"file://{tmp_path}/a_file/runs"
    with pytest.raises(UsageError, match=rf"--storage-path '{uri}' cannot be written"):
        checked_settings(["--storage-path", uri, "--cache-dir", str(tmp_path / "cache")])
    assert not (tmp_path / "cache").exists()  # no working copy


def test_the_cluster_address_comes_from_the_flag_or_ray_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert _parse(tmp_path).address == "head:6379"
    assert _parse(tmp_path, "--address", "other:6379").address == "other:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert _parse(tmp_path).address is None
    # On a cluster, this machine's CPU count does not bound a trial's.
    assert _parse(tmp_path, "--address", "h:1", "--cpus-per-trial", "64").cpus_per_trial == 64


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("20m", 1200), ("2h", 7200), ("1.5h", 5400), ("45", 45)]
)
def test_a_time_budget_reads_seconds_minutes_or_hours(text: str, seconds: float) -> None:
    from search.config.parse import duration

    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "-5m", "20 minutes", "h", ""])
def test_a_malformed_time_budget_is_refused(text: str) -> None:
    import argparse

    from search.config.parse import duration

    with pytest.raises(argparse.ArgumentTypeError, match="such as 90s, 20m or 2h"):
        duration(text)


def test_backbones_are_checked_by_name_count_and_weights() -> None:
    from search.config.validate import settings_problems

    problems = " ".join(
        settings_problems(
            resolve(SearchSettings(backbones="resnet18,resnet18,nope", weights="x", name="x"))
        )
    )
    assert "unknown backbone in --backbones 'nope'; choose one of: convnext_tiny" in problems
    (twice,) = settings_problems(resolve(SearchSettings(backbones="resnet18,resnet18", name="x")))
    assert twice.startswith("--backbones needs two or more different backbones")
    assert "with --backbones choose source, imagenet, none" in problems
    ok = resolve(SearchSettings(backbones=" resnet18, mobilenet_v3_large ", name="x"))
    assert ok.candidates == ["resnet18", "mobilenet_v3_large"] and ok.backbone == "resnet18"
    assert settings_problems(ok) == []
