"""An experiment at a URI and its local working copy (search.experiment.storage), through
pyarrow's real filesystems: `file://` URIs stand in for a bucket."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from search.config.filesystems import uri_problems, writable_problems
from search.config.settings import join_uri, split_uri, working_copy
from search.config.usage import UsageError
from search.experiment.storage import (
    RemoteExperiment,
    driver_owned,
    local_experiment,
)
from search.tracking.callbacks import StudyUpload


def test_a_name_joins_the_path_of_a_uri_and_keeps_its_query() -> None:
    uri = "s3://bucket/runs/?endpoint_override=localhost%3A9000&scheme=http"
    assert join_uri(uri, "exp") == (
        "s3://bucket/runs/exp?endpoint_override=localhost%3A9000&scheme=http"
    )


def test_the_working_copy_is_one_folder_per_uri_and_name_without_credentials() -> None:
    copy = working_copy("s3://key:secret@bucket/a b/runs", "exp", "/cache")
    assert copy == Path("/cache/storage/s3/bucket/a_b/runs/exp")
    assert copy != working_copy("gs://bucket/a b/runs", "exp", "/cache")
    # the same bucket on two endpoints: two stores
    minio = working_copy("s3://bucket/runs?endpoint_override=minio:9000", "exp", "/cache")
    other = working_copy("s3://bucket/runs?endpoint_override=other:9000", "exp", "/cache")
    assert minio.parent.parent.name.startswith("bucket-") and minio != other
    assert working_copy("s3://bucket/runs?region=eu-west-1", "exp", "/cache") == Path(
        "/cache/storage/s3/bucket/runs/exp"
    )  # the region names no other store


def test_an_unknown_scheme_is_a_problem_naming_the_value() -> None:
    (problem,) = uri_problems("nosuch://bucket/runs")
    assert "a URI Ray supports" in problem and "'nosuch://bucket/runs'" in problem
    assert uri_problems("s3://bucket/runs?region=us-east-1") == []  # opened, not yet read


def test_a_uri_that_cannot_be_opened_is_a_problem_saying_so() -> None:
    # pyarrow opens HDFS through Java's libjvm, which neither this machine nor CI has
    (problem,) = uri_problems("hdfs://namenode:8020/runs")
    assert problem.startswith("--storage-path 'hdfs://namenode:8020/runs' cannot be opened: ")


def test_a_uri_that_cannot_be_written_is_a_problem_saying_so(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    (problem,) = writable_problems(f"file://{tmp_path}/a_file/runs")
    assert problem.startswith(f"--storage-path 'file://{tmp_path}/a_file/runs' cannot be written")
    assert writable_problems(f"file://{tmp_path}/runs") == []
    assert not (tmp_path / "runs").exists()  # the marker is removed, and the folder it needed


@pytest.mark.parametrize(
    ("path", "owned"),
    [
        ("settings.json", True),
        ("optuna.db", True),
        ("events.out.tfevents.1.host.experiment", True),
        ("wandb/offline-run-1/run.wandb", True),
        ("train_transfer_1/events.out.tfevents.2.host.interrupted", True),
        ("experiment_state-2026.json", False),
        ("train_transfer_1/result.json", False),
        ("train_transfer_1/events.out.tfevents.2.host.search", False),
        ("train_transfer_1/checkpoint_000001/checkpoint.pt", False),
    ],
)
def test_each_file_has_one_writer(path: str, owned: bool) -> None:
    assert driver_owned(path) is owned


def _experiment(tmp_path: Path) -> tuple[RemoteExperiment, Path]:
    stored = tmp_path / "bucket" / "runs" / "exp"
    return RemoteExperiment(f"file://{stored}", tmp_path / "copy"), stored


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_download_takes_what_changed_there_and_keeps_what_changed_here(tmp_path: Path) -> None:
    experiment, stored = _experiment(tmp_path)
    _write(experiment.local / "settings.json", "the search's settings")
    assert experiment.upload() == 1
    _write(stored / "train_transfer_1" / "result.json", '{"epoch": 1}\n{"epoch": 2}\n')  # Ray's
    _write(experiment.local / "summary.json", "written here, not yet uploaded")

    assert experiment.download() == 1  # result.json
    assert (experiment.local / "train_transfer_1" / "result.json").read_text().count("epoch") == 2
    assert (experiment.local / "summary.json").read_text() == "written here, not yet uploaded"
    assert experiment.download() == 0  # nothing changed

    # Another driver resumed the experiment elsewhere: its settings are the newer ones
    _write(stored / "settings.json", "extended elsewhere")
    assert experiment.download() == 1
    assert (experiment.local / "settings.json").read_text() == "extended elsewhere"
    assert experiment.upload() == 1  # summary.json; settings.json came from there

    # Ray rewrites a state file in place: same size, new content
    _write(stored / "train_transfer_1" / "result.json", '{"epoch": 3}\n{"epoch": 4}\n')
    os.utime(stored / "train_transfer_1" / "result.json", ns=(1, 10**18))
    assert experiment.download() == 1
    assert "4" in (experiment.local / "train_transfer_1" / "result.json").read_text()


def test_upload_sends_only_the_drivers_files_that_changed(tmp_path: Path) -> None:
    experiment, stored = _experiment(tmp_path)
    _write(experiment.local / "summary.json", "{}")
    _write(experiment.local / "wandb" / "offline-run-1" / "run.wandb", "w")
    _write(experiment.local / "train_transfer_1" / "result.json", "Ray's, not ours to send")

    assert experiment.upload() == 2
    assert (stored / "summary.json").read_text() == "{}"
    assert (stored / "wandb" / "offline-run-1" / "run.wandb").exists()
    assert not (stored / "train_transfer_1").exists()
    assert experiment.upload() == 0
    assert experiment.upload(["train_transfer_1/result.json"]) == 1  # named: sent
    _write(experiment.local / "summary.json", "[]")  # rewritten at the same size
    assert experiment.upload() == 1
    assert (stored / "summary.json").read_text() == "[]"


def test_the_study_is_uploaded_as_a_consistent_copy_while_it_is_open(tmp_path: Path) -> None:
    experiment, stored = _experiment(tmp_path)
    experiment.local.mkdir(parents=True)
    study = sqlite3.connect(experiment.local / "optuna.db")
    try:
        study.execute("create table trials (number integer)")
        study.executemany("insert into trials values (?)", [(0,), (1,)])
        study.commit()
        experiment.upload_study()
    finally:
        study.close()
    copy = sqlite3.connect(stored / "optuna.db")
    try:
        assert copy.execute("select count(*) from trials").fetchone() == (2,)
    finally:
        copy.close()
    assert not list(experiment.local.glob("*.upload"))  # the snapshot is removed

    # A told trial rarely grows the file: comparing sizes would keep the stale study.
    study = sqlite3.connect(experiment.local / "optuna.db")
    try:
        study.execute("insert into trials values (2)")
        study.commit()
    finally:
        study.close()
    assert experiment.upload() == 1  # the study is always sent
    copy = sqlite3.connect(stored / "optuna.db")
    try:
        assert copy.execute("select count(*) from trials").fetchone() == (3,)
    finally:
        copy.close()


def test_a_missing_experiment_does_not_exist(tmp_path: Path) -> None:
    experiment, stored = _experiment(tmp_path)
    assert not experiment.exists()
    stored.mkdir(parents=True)
    assert experiment.exists()


def test_a_uri_splits_into_its_storage_and_the_experiment_name() -> None:
    assert split_uri("s3://bucket/runs/exp?region=x") == ("s3://bucket/runs?region=x", "exp")


def test_a_script_given_a_uri_reads_the_downloaded_working_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSFER_TUNE_CACHE", str(tmp_path / "cache"))
    experiment, stored = _experiment(tmp_path)
    _write(stored / "settings.json", "{}")
    _write(stored / "summary.json", "{}")
    local = local_experiment(experiment.uri)
    assert local == working_copy(f"file://{tmp_path}/bucket/runs", "exp", str(tmp_path / "cache"))
    assert (local / "summary.json").read_text() == "{}"
    assert local_experiment("runs/exp") == Path("runs/exp").resolve()
    with pytest.raises(UsageError, match=r"^no experiment at file://.*/bucket/runs/other$"):
        local_experiment(f"file://{tmp_path}/bucket/runs/other")
    # The storage above the experiments is no experiment: nothing of it is downloaded
    with pytest.raises(UsageError, match=r"^no experiment at file://.*/bucket/runs$"):
        local_experiment(f"file://{tmp_path}/bucket/runs")


def test_the_study_is_uploaded_when_a_trial_ends_and_a_failure_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment, stored = _experiment(tmp_path)
    experiment.local.mkdir(parents=True)
    sqlite3.connect(experiment.local / "optuna.db").close()
    StudyUpload(experiment).on_trial_complete(1, [], None)
    assert (stored / "optuna.db").is_file()

    (tmp_path / "a_file").write_text("not a folder")
    broken = RemoteExperiment(f"file://{tmp_path}/a_file/exp", experiment.local)
    StudyUpload(broken).on_trial_start(2, [], None)  # the search goes on
    assert capsys.readouterr().err.startswith("Warning: optuna.db was not uploaded: ")


def test_a_folder_ray_removed_at_the_uri_is_still_removed_from_the_working_copy(
    tmp_path: Path,
) -> None:
    """A resumed trial's old checkpoint: Ray deleted it at the URI, the working copy has it."""
    stored = tmp_path / "bucket" / "exp"
    (stored / "trial" / "checkpoint_000001").mkdir(parents=True)
    (stored / "trial" / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x")
    local = tmp_path / "copy"
    (local / "trial" / "checkpoint_000000").mkdir(parents=True)
    (local / "trial" / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"x")
    experiment = RemoteExperiment(f"file://{stored}", local)
    experiment.delete("trial/checkpoint_000000")  # gone at the URI already: no error
    assert not (local / "trial" / "checkpoint_000000").exists()
    experiment.delete("trial/checkpoint_000001")
    assert not (stored / "trial" / "checkpoint_000001").exists()
