"""Running the trials on a Ray cluster that is already up (`--address`, or `$RAY_ADDRESS`).

The driver (this process) connects to the cluster and ships the harness's own code to it as a
runtime environment (`py_modules`): its nodes need the Python packages of pyproject.toml
(torch, torchvision, ray, ...), not this repository. Before anything is written, the cluster's
nodes are checked to hold one trial's `--cpus-per-trial` and `--gpus-per-trial` (otherwise
Tune would wait forever for a node that never comes), and the nodes that can run trials to see
`--storage-path` (otherwise each trial would fail at its first checkpoint).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
from types import ModuleType
from typing import Any

import pyarrow.fs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import search
import spaces
import trainable
from search.config.filesystems import storage_filesystem, written_marker
from search.config.settings import SearchSettings
from search.config.usage import UsageError
from trainable.config import error_line

CODE: tuple[ModuleType, ...] = (trainable, search, spaces)  # what the nodes import


def runtime_env() -> dict[str, Any]:
    """The runtime environment of every trial: the harness's packages, uploaded by Ray."""
    return {"py_modules": list(CODE)}


PROBE_SECONDS = 5  # Ray itself retries an unreachable address for minutes


def probe(address: str) -> None:
    """UsageError (one line) unless HOST:PORT of `address` accepts a TCP connection."""
    if address == "auto":  # Ray finds the cluster of this machine, or says there is none
        return
    if address.startswith("ray://"):
        # Ray Client runs the Tuner on the head node: its progress, Ctrl-C and optuna.db
        # would not be this process's.
        raise UsageError(
            f"--address {address}: Ray Client (ray://) is not supported; run the command on a "
            "node of the cluster with --address HOST:PORT (the head's GCS port, e.g. 6379)"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address must be HOST:PORT or auto, but got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as error:
        raise UsageError(
            f"cannot reach the Ray cluster at {address!r} ({error_line(error)}): is it "
            "running (`ray status` on its head node), and is the port open from here?"
        ) from None


def connect(address: str) -> None:
    """Connect this process to the cluster at `address`; UsageError (one line) if it can't."""
    probe(address)
    try:
        ray.init(
            address=address,
            runtime_env=runtime_env(),
            logging_level=logging.WARNING,
            log_to_driver=False,  # as a local search: failures reach the progress lines
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        message = f"cannot connect to the Ray cluster at {address!r}: {error_line(error)}"
        raise UsageError(message) from None


def node_resources() -> list[dict[str, Any]]:
    """CPU, GPU, id and IP address of each live node of the connected cluster."""
    return [
        {
            "CPU": float(node["Resources"].get("CPU", 0)),
            "GPU": float(node["Resources"].get("GPU", 0)),
            "id": node["NodeID"],
            "ip": node["NodeManagerAddress"],
        }
        for node in ray.nodes()
        if node.get("Alive")
    ]


def trials_per_node(node: dict[str, Any], cpus: float, gpus: float) -> int:
    """How many trials of `cpus` CPUs and `gpus` GPUs one node holds at once."""
    fits = math.floor(node["CPU"] / cpus + 1e-9)
    if gpus > 0:
        fits = min(fits, math.floor(node["GPU"] / gpus + 1e-9))
    return max(0, fits)


def cluster_problems(settings: SearchSettings, nodes: list[dict[str, Any]]) -> list[str]:
    """Why no trial could ever start on these nodes (empty when one can)."""
    cpus, gpus = settings.cpus_per_trial, settings.gpus_per_trial
    if any(trials_per_node(node, cpus, gpus) for node in nodes):
        return []
    have = ", ".join(f"{n['CPU']:g} CPU / {n['GPU']:g} GPU" for n in nodes) or "no live node"
    return [
        f"no node of the cluster at {settings.address!r} holds one trial's --cpus-per-trial "
        f"{cpus:g} and --gpus-per-trial {gpus:g}; its nodes have: {have}"
    ]


STORAGE_CHECK_SECONDS = 120  # a node's first task sets up the runtime environment


@ray.remote(num_cpus=0)
def _sees(folder: str, marker: str) -> bool:
    """On one node: whether `marker` is in `folder` (a local folder or a URI)."""
    fs, path = storage_filesystem(folder)
    return fs.get_file_info(f"{path}/{marker}").type == pyarrow.fs.FileType.File


def _blindness(ref: ray.ObjectRef, ready: list[ray.ObjectRef]) -> str | None:
    """Why a node's _sees answer is not yes; None when it sees the marker."""
    if ref not in ready:
        return f"did not answer within {STORAGE_CHECK_SECONDS} s"
    try:
        return None if ray.get(ref) else "does not see it"
    except ray.exceptions.RayError as error:  # e.g. no credentials for the URI on that node
        return f"cannot open it ({error_line(error.as_instanceof_cause())})"


def storage_problems(storage: str, nodes: list[dict[str, Any]]) -> list[str]:
    """Why the folder or URI `storage` is not shared by these nodes (empty when it is).

    Ray would fail every trial on a node that does not see it at its first checkpoint. A
    marker file written here is looked for by a task on each node, then removed (with the
    folder, when this check made it).
    """
    try:
        with written_marker(storage) as marker:
            answers = {
                node["ip"]: _sees.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["id"], soft=False)
                ).remote(storage, marker)
                for node in nodes
            }
            ready, _ = ray.wait(list(answers.values()), num_returns=len(answers),
                                timeout=STORAGE_CHECK_SECONDS)  # fmt: skip
            blind = {ip: why for ip, ref in answers.items() if (why := _blindness(ref, ready))}
    except OSError as error:
        return [f"--storage-path {storage} cannot be written: {error_line(error)}"]
    if not blind:
        return []
    return [
        f"--storage-path {storage} must be shared by every node that runs trials (NFS, or a "
        f"cloud URI), but " + "; ".join(f"the node at {ip} {why}" for ip, why in blind.items())
    ]


def describe_nodes(nodes: list[dict[str, Any]]) -> str:
    """'3 nodes, 2 CPUs, 0 GPUs' for the console."""
    cpus, gpus = sum(n["CPU"] for n in nodes), sum(n["GPU"] for n in nodes)
    return f"{len(nodes)} nodes, {cpus:g} CPUs, {gpus:g} GPUs"


def use_cluster(settings: SearchSettings) -> tuple[SearchSettings, list[dict[str, Any]]]:
    """Connect to the cluster and check it can run the trials; return the settings with
    --max-concurrent (when 0) set to the trials its nodes hold at once, and the nodes. On a
    problem, the connection is closed and UsageError says why; nothing was written."""
    connect(settings.address)
    nodes = node_resources()
    cpus, gpus = settings.cpus_per_trial, settings.gpus_per_trial
    runners = [node for node in nodes if trials_per_node(node, cpus, gpus)]
    problems = cluster_problems(settings, nodes) or storage_problems(
        settings.storage_location, runners
    )
    if problems:
        ray.shutdown()
        raise UsageError("; ".join(problems))
    if not settings.max_concurrent:
        slots = sum(trials_per_node(node, cpus, gpus) for node in nodes)
        settings = dataclasses.replace(settings, max_concurrent=max(1, slots))
    return settings, nodes
