"""The real CLI with --address on a multi-node Ray cluster on this machine.

A head without CPUs and two worker nodes of one CPU each (`ray.cluster_utils.Cluster`), so that
every trial must run on a worker. Once the first checkpoint is written, one worker node is
removed: the trial it ran resumes from its checkpoint on the other. Every process the tests
start is stopped by its handle, even when a test fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import popen_cli, run_cli
from ray.cluster_utils import Cluster

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
    root = work / "runs" / "c"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    process = None
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        process = popen_cli(
            "--address", cluster.address,
            "--num-samples", str(NUM_SAMPLES), "--max-epochs", str(MAX_EPOCHS),
            "--grace-period", str(MAX_EPOCHS),  # no ASHA stop: every trial runs all epochs
            "--name", "c", "--storage-path", "runs", "--cache-dir", str(cache_dir),
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
            [w.node_id for w in workers], removed.node_id, cluster.address, work,
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
    trials = cluster_sweep.summary["trials"]
    assert len(trials) == NUM_SAMPLES
    assert all(t["stop_reason"] == "completed" and t["epochs"] == MAX_EPOCHS for t in trials)
    assert "Traceback" not in done.stdout + done.stderr


def test_the_lost_nodes_trial_resumed_from_its_checkpoint(cluster_sweep: ClusterSweep) -> None:
    lines = cluster_sweep.done.stdout.splitlines()
    retried = [line for line in lines if "retrying from its last checkpoint" in line]
    assert retried, cluster_sweep.done.stdout[-3000:]
    trial_id = re.search(r"trial +\d+/\d+ (\w+) failed", retried[0]).group(1)
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


def test_a_trial_no_node_can_hold_is_refused_before_anything_is_written(
    cluster_sweep: ClusterSweep,
) -> None:
    # The fixture's cluster is gone; a new one-node cluster answers for the check.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        done = run_cli(
            "--address", cluster.address, "--gpus-per-trial", "1", "--name", "nogpu",
            "--storage-path", "runs", "--wandb", "disabled", cwd=cluster_sweep.work,
        )  # fmt: skip
    finally:
        cluster.shutdown()
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and "no node of the cluster" in error[0]
    assert "1 CPU / 0 GPU" in error[0] and "Traceback" not in done.stderr
    assert not (cluster_sweep.work / "runs" / "nogpu").exists()
