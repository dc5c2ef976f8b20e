"""The real CLI with --address on a multi-node Ray cluster on this machine.

A head without CPUs and two worker nodes of one CPU each (`ray.cluster_utils.Cluster`), so that
every trial must run on a worker. Once the first checkpoint is written, one worker node is
removed: the trial it ran resumes from its checkpoint on the other. The experiment is stored at
a `file://` URI, which takes the path of a cloud bucket's (search.experiment.storage), and is then
extended by one trial on this machine from the stored copy alone. Every process the tests start is
stopped by its handle, even when a test fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray
from helpers import popen_cli, run_cli
from optuna.trial import TrialState
from ray.cluster_utils import Cluster

from search.config.settings import working_copy
from search.run.cluster import connect, node_resources, storage_problems

pytestmark = pytest.mark.sweep
NUM_SAMPLES, MAX_EPOCHS = 4, 4


@dataclass(frozen=True)
class ClusterSweep:
    done: subprocess.CompletedProcess
    root: Path
    summary: dict
    head: str  # node ids
    workers: list[str]
    removed: str
    address: str
    work: Path
    storage: str  # the file:// URI the experiment is stored at


def _node_of_first_report(root: Path, workers: list, process: subprocess.Popen) -> Any:
    """The worker node of a trial that has saved a checkpoint and has epochs left to run (its
    trial.log, synced with the checkpoint, names the node)."""
    deadline = time.monotonic() + 600  # pretraining and three raylets on a loaded machine
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no trial reported within 600 s"
        for trial in root.glob("train_transfer_*"):
            log, result = trial / "trial.log", trial / "result.json"
            if not (any(trial.glob("checkpoint_*")) and log.exists() and result.exists()):
                continue
            found = re.search(r"^node (\w+);", log.read_text(), re.M)
            if found and len(result.read_text().splitlines()) < MAX_EPOCHS - 1:
                return next(w for w in workers if w.node_id == found.group(1))
        time.sleep(0.05)


@pytest.fixture(scope="session")
def cluster_sweep(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> ClusterSweep:
    work = tmp_path_factory.mktemp("cluster")
    storage = f"file://{work}/bucket/runs"  # not a folder path: the harness treats it as a bucket
    root = work / "bucket" / "runs" / "c"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    process = None
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        process = popen_cli(
            "--address", cluster.address,
            "--num-samples", str(NUM_SAMPLES), "--max-epochs", str(MAX_EPOCHS),
            "--grace-period", str(MAX_EPOCHS),  # no ASHA stop: every trial runs all epochs
            "--name", "c", "--storage-path", storage, "--cache-dir", str(cache_dir),
            "--wandb", "offline",
            "--no-feature-cache",  # epochs of ~0.5 s: the cut-off trial has 2 or 3 left
            cwd=work,
        )  # fmt: skip
        removed = _node_of_first_report(root, workers, process)
        cluster.remove_node(removed)  # the trial that just reported epoch 1 is cut off
        out, err = process.communicate(timeout=600)
        done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        summary_file = root / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        return ClusterSweep(
            done, root, summary, cluster.head_node.node_id,
            [w.node_id for w in workers], removed.node_id, cluster.address, work, storage,
        )  # fmt: skip
    finally:  # the cluster and the CLI, by their handles, whatever happened
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
        cluster.shutdown()


def test_the_sweep_finishes_on_the_cluster_with_every_trial_accounted_for(
    cluster_sweep: ClusterSweep,
) -> None:
    done = cluster_sweep.done
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Ray cluster at {cluster_sweep.address}: 3 nodes, 2 CPUs, 0 GPUs" in done.stdout
    assert f"Stored at: {cluster_sweep.storage}/c" in done.stdout
    settings = json.loads((cluster_sweep.root / "settings.json").read_text())
    assert settings["max_concurrent"] == 2  # one trial per worker node, saved for a resume
    trials = cluster_sweep.summary["trials"]
    assert len(trials) == NUM_SAMPLES
    assert all(t["stop_reason"] == "completed" and t["epochs"] == MAX_EPOCHS for t in trials)
    assert "Traceback" not in done.stdout + done.stderr


def test_the_working_copy_downloads_and_the_bucket_keeps_only_the_kept_checkpoints(
    cluster_sweep: ClusterSweep, cache_dir: Path
) -> None:
    """While the trials ran, their superseded checkpoints were removed at the URI; each
    trial's best alone was downloaded, and the end removed the rest on both sides, to the best
    3 trials' best (--keep-checkpoints 3)."""
    copy = working_copy(cluster_sweep.storage, "c", str(cache_dir))

    def checkpoints(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.glob("train_transfer_*/checkpoint_*")}

    kept = {t["checkpoint"] for t in cluster_sweep.summary["trials"] if t["checkpoint"]}
    assert len(kept) == 3
    assert checkpoints(cluster_sweep.root) == kept == checkpoints(copy)
    removed = re.search(r"^Removed (\d+) checkpoints \(", cluster_sweep.done.stdout, re.M)
    # At the end a trial holds at most its best, the one the stored state names and a newer
    # one (every epoch's, 4 per trial, when nothing is removed while the trials run).
    assert removed and int(removed.group(1)) <= 3 * NUM_SAMPLES - len(kept)


def test_the_lost_nodes_trial_resumed_from_its_checkpoint(cluster_sweep: ClusterSweep) -> None:
    lines = cluster_sweep.done.stdout.splitlines()
    retried = [line for line in lines if "retrying from its last checkpoint" in line]
    assert retried, cluster_sweep.done.stdout[-3000:]
    trial_id = re.search(r"trial +\d+/\d+ \((\w+)\) failed", retried[0]).group(1)
    result = cluster_sweep.root / f"train_transfer_{trial_id}" / "result.json"
    epochs = [json.loads(row)["epoch"] for row in result.read_text().splitlines()]
    assert epochs == list(range(1, MAX_EPOCHS + 1))  # resumed, not restarted: no epoch twice
    log = (cluster_sweep.root / f"train_transfer_{trial_id}" / "trial.log").read_text()
    # It started on the node that was removed, and still ran every epoch once: elsewhere,
    # from its checkpoint.
    nodes = re.findall(r"^node (\w+);", log, flags=re.MULTILINE)
    assert nodes[0] == cluster_sweep.removed


def test_every_trial_ran_on_a_worker_with_the_code_the_driver_shipped(
    cluster_sweep: ClusterSweep,
) -> None:
    for trial in cluster_sweep.summary["trials"]:
        log = (cluster_sweep.root / trial["path"] / "trial.log").read_text()
        for node, shipped in re.findall(r"^node (\w+); code .*; shipped (.*)$", log, re.M):
            assert node in cluster_sweep.workers and node != cluster_sweep.head
            assert "_ray_pkg_" in shipped  # py_modules uploaded by Ray


@dataclass(frozen=True)
class Refusals:
    no_gpu: subprocess.CompletedProcess  # --gpus-per-trial 1 on a cluster without GPUs
    unshared: subprocess.CompletedProcess  # storage the node does not see
    shared: list[str]  # storage_problems of a folder the node sees
    work: Path
    cache_dir: Path


@pytest.fixture(scope="session")
def refusals(cluster_sweep: ClusterSweep, cache_dir: Path) -> Refusals:
    """Two searches a new one-node cluster refuses (the fixture's cluster is gone), and its
    storage check of a folder on this machine, from this process."""
    work = cluster_sweep.work
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        no_gpu = run_cli(
            "--address", cluster.address, "--gpus-per-trial", "1", "--name", "nogpu",
            "--storage-path", "runs", "--wandb", "disabled", cwd=work,
        )  # fmt: skip
        # Arrow's mock:// filesystem lives in the memory of each process that opens it: the
        # marker the driver writes there is invisible to the node, as a node-local disk would be.
        unshared = run_cli(
            "--address", cluster.address, "--name", "unshared",
            "--storage-path", "mock://bucket/runs", "--wandb", "disabled",
            "--cache-dir", str(cache_dir), cwd=work,
        )  # fmt: skip
        connect(cluster.address)
        try:
            shared = storage_problems(str(work / "runs"), node_resources())
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
    return Refusals(no_gpu, unshared, shared, work, cache_dir)


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return error[0]


def test_a_trial_no_node_can_hold_is_refused_before_anything_is_written(
    refusals: Refusals,
) -> None:
    error = _one_line_error(refusals.no_gpu)
    assert "no node of the cluster" in error and "1 CPU / 0 GPU" in error
    assert not (refusals.work / "runs" / "nogpu").exists()


def test_storage_a_node_does_not_see_is_refused_before_a_trial_starts(refusals: Refusals) -> None:
    error = _one_line_error(refusals.unshared)
    assert error.startswith(
        "search.py: error: --storage-path mock://bucket/runs must be shared by every node that "
        "runs trials (NFS, or a cloud URI), but the node at "
    )
    assert error.endswith(" does not see it")
    working_copy_ = working_copy("mock://bucket/runs", "unshared", str(refusals.cache_dir))
    assert not working_copy_.exists()


def test_a_folder_every_node_sees_passes_the_storage_check(refusals: Refusals) -> None:
    assert refusals.shared == []
    assert not (refusals.work / "runs").exists()  # made for the check, removed with its marker


@dataclass(frozen=True)
class Extension:
    done: subprocess.CompletedProcess
    summary: dict  # the stored summary.json
    study: list[optuna.trial.FrozenTrial]  # the stored optuna.db
    copy: Path  # the driver's working copy


@pytest.fixture(scope="session")
def extension(cluster_sweep: ClusterSweep, cache_dir: Path) -> Extension:
    """`--extend 1` of the stored experiment on this machine's own Ray, its working copy
    deleted first: all it has is what is stored, as on another machine."""
    copy = working_copy(cluster_sweep.storage, "c", str(cache_dir))
    assert (copy / "summary.json").exists()  # the search wrote its files here, then uploaded
    shutil.rmtree(copy)
    done = run_cli(
        "--extend", "1", "--name", "c", "--storage-path", cluster_sweep.storage,
        "--cache-dir", str(cache_dir), cwd=cluster_sweep.work,
    )  # fmt: skip
    stored = cluster_sweep.root
    summary = json.loads((stored / "summary.json").read_text())
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{stored / 'optuna.db'}")
    return Extension(done, summary, study.get_trials(), copy)


def test_the_stored_experiment_is_extended_from_the_stored_copy_alone(
    extension: Extension, cluster_sweep: ClusterSweep
) -> None:
    done = extension.done
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"of {cluster_sweep.storage}/c to its working copy" in done.stdout
    assert f"Stored at: {cluster_sweep.storage}/c" in done.stdout
    trials = extension.summary["trials"]
    assert len(trials) == NUM_SAMPLES + 1
    assert all(t["stop_reason"] == "completed" for t in trials)
    assert (extension.copy / "summary.json").exists()
    assert "Traceback" not in done.stdout + done.stderr


def test_the_stored_study_holds_every_trial_told(extension: Extension) -> None:
    assert len(extension.study) == NUM_SAMPLES + 1
    assert all(t.state == TrialState.COMPLETE for t in extension.study)
