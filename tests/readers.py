"""Read back what a search wrote, with the tools' own code: TensorBoard's event loader and
HParams parsers, and W&B's protobuf records."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.util import tensor_util
from wandb.proto import wandb_internal_pb2


@dataclass
class Session:
    """One trial as the HParams tab sees it."""

    hparams: dict[str, Any]
    group: str  # the session group's name: Tune's trial id
    status: int  # api_pb2.Status; STATUS_UNKNOWN while no end was written
    last: dict[str, float]  # the last value of every scalar tag


@dataclass
class Board:
    """An experiment folder as TensorBoard loads it."""

    experiment: api_pb2.Experiment | None
    sessions: dict[str, Session]  # run (trial folder) -> session
    steps: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # run -> tag -> steps
    graphs: list[str] = field(default_factory=list)  # runs holding a model graph


def _value(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    return getattr(value, kind)


def read_board(root: Path) -> Board:
    """The HParams experiment, the sessions and their last scalars under `root`."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    contents = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    experiment = None
    sessions = {}
    for run, tags in contents.items():
        if metadata.EXPERIMENT_TAG in tags:
            experiment = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
        if metadata.SESSION_START_INFO_TAG not in tags:
            continue
        start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
        status = api_pb2.STATUS_UNKNOWN
        if metadata.SESSION_END_INFO_TAG in tags:
            end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
            status = end.status
        last = {}
        for tag in multiplexer.GetAccumulator(run).Tags()["tensors"]:
            if multiplexer.SummaryMetadata(run, tag).plugin_data.plugin_name != "scalars":
                continue  # histograms, images, text
            events = multiplexer.Tensors(run, tag)
            last[tag] = float(tensor_util.make_ndarray(events[-1].tensor_proto))
        hparams = {key: _value(value) for key, value in start.hparams.items()}
        sessions[run] = Session(hparams, start.group_name, status, last)
    steps = {
        run: {tag: [e.step for e in multiplexer.Tensors(run, tag)] for tag in tags["tensors"]}
        for run, tags in multiplexer.Runs().items()
    }
    graphs = [run for run, tags in multiplexer.Runs().items() if tags["graph"]]
    return Board(experiment, sessions, steps, graphs)


# W&B's run file (`run-<id>.wandb`): a 7-byte header, then LevelDB-log records of 32 KiB blocks,
# each record a serialized wandb_internal_pb2.Record (W&B 0.31 ships no Python reader).
_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version
_RECORD = struct.Struct("<IHB")  # crc32 of type + data, length, type
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of a W&B run file, checksums verified."""
    data = path.read_bytes()
    ident, magic, _ = _HEADER.unpack_from(data)
    if (ident, magic) != (b":W&B", 0xBEE1):
        raise ValueError(f"{path} is not a W&B run file")
    position, pending, records = _HEADER.size, b"", []
    while position + _RECORD.size <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < _RECORD.size:  # a block's tail too short for a header is padding
            position += left
            continue
        checksum, length, kind = _RECORD.unpack_from(data, position)
        position += _RECORD.size
        chunk = data[position : position + length]
        position += length
        if kind == 0:  # zero padding at the end of a file still being written
            break
        if zlib.crc32(bytes([kind]) + chunk) != checksum:
            raise ValueError(f"{path}: bad checksum at byte {position}")
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@dataclass
class WandbRun:
    """What a W&B offline run recorded."""

    run_id: str
    name: str  # the display name
    group: str
    job_type: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    artifacts: list[wandb_internal_pb2.ArtifactRecord]


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_wandb_run(folder: Path) -> WandbRun:
    """The run in an `offline-run-*` folder, from its records."""
    (path,) = folder.glob("run-*.wandb")
    run, config, history, summary, artifacts = None, {}, [], {}, []
    for record in read_wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config.update({i.key: json.loads(i.value_json) for i in run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            artifacts.append(record.artifact)
    assert run is not None, f"no run record in {path}"
    return WandbRun(
        run.run_id,
        run.display_name,
        run.run_group,
        run.job_type,
        config,
        history,
        summary,
        artifacts,
    )
