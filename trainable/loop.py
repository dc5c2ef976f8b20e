"""The plain-PyTorch transfer-learning loop of one trial; no Ray here, runnable in a notebook."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainable import metrics
from trainable.backbones import (
    build_model,
    count_trainable,
    freeze_stages,
    frozen_state_keys,
    load_backbone_state,
    parameter_groups,
)
from trainable.catalog import get_backbone
from trainable.checkpoint import lean_state, load_trained
from trainable.config import TrialConfig
from trainable.data import SplitLike, TransferData, tensor_hash, train_and_val
from trainable.datasets import build_data
from trainable.engine import classes_missed, evaluate, train_one_epoch
from trainable.features import cached_features
from trainable.pipeline import Pipeline
from trainable.summaries import TrialSummaries
from trainable.weights import load_weights


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite: the learning rates are too high."""


def build_trial_model(
    cfg: TrialConfig, num_classes: int, backbone_state: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    """The backbone with its pretrained weights, a new head, and the first stages frozen.

    `backbone_state` is `cfg.weights` already loaded (the search hands it to every trial, so
    that a cluster node needs no cache or download of its own); None loads it here.
    """
    torch.manual_seed(cfg.seed)  # the new head's initialisation (and the backbone's, from scratch)
    model = build_model(cfg.backbone, num_classes, cfg.image_size)
    state = backbone_state
    if state is None:
        state = load_weights(cfg.weights, cfg.backbone, cfg.data, cfg.image_size, cfg.cache_dir)
    if state is not None:
        load_backbone_state(model, cfg.backbone, state)
    # A zero head starts every trial at loss log(classes): a random head on large pretrained
    # features starts near loss 5 and its first gradients wreck the backbone (as in BiT).
    head = model.get_submodule(get_backbone(cfg.backbone).head)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    freeze_stages(model, cfg.backbone, cfg.freeze_depth)
    return model


def build_optimizer(model: nn.Module, cfg: TrialConfig) -> torch.optim.Optimizer:
    """SGD with momentum over the two named parameter groups."""
    groups = parameter_groups(model, cfg.backbone, cfg.backbone_lr, cfg.head_lr)
    return torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def frozen_fingerprint(model: nn.Module, cfg: TrialConfig) -> tuple[set[str], str]:
    """The state-dict keys of the trial's frozen stages and a hash of their tensors (names,
    shapes, bytes), which a lean checkpoint carries and a restore compares."""
    frozen = frozen_state_keys(model, cfg.backbone, cfg.freeze_depth)
    state = model.state_dict()
    names = "|".join(sorted(frozen)).encode()
    digest = hashlib.sha256(names)
    digest.update(tensor_hash(*(state[key] for key in sorted(frozen))).encode())
    return frozen, digest.hexdigest()


def trained_model(
    cfg: TrialConfig,
    checkpoint: dict[str, Any],
    backbone_state: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """The whole model of a checkpoint, in eval mode: its frozen stages rebuilt from the
    trial's starting weights (`backbone_state`, or loaded as the trial loads them), the rest
    from the checkpoint. CheckpointError when the starting weights differ from the ones the
    checkpoint trained with. A checkpoint made before lean ones holds every tensor: it needs
    no starting weights."""
    if "frozen_fingerprint" not in checkpoint:
        model = build_model(cfg.backbone, len(checkpoint["classes"]), cfg.image_size)
        freeze_stages(model, cfg.backbone, cfg.freeze_depth)
        load_trained(model, checkpoint, set(), "")
        return model.eval()
    model = build_trial_model(cfg, len(checkpoint["classes"]), backbone_state)
    frozen, fingerprint = frozen_fingerprint(model, cfg)
    load_trained(model, checkpoint, frozen, fingerprint)
    return model.eval()


def run_trial(
    cfg: TrialConfig,
    resume: dict[str, Any] | None = None,
    data: TransferData | None = None,
    log_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    backbone_state: dict[str, torch.Tensor] | None = None,
    on_trained: Callable[[dict[str, Any]], None] | None = None,
    pipeline: Pipeline | None = None,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Train epoch by epoch; yield each epoch's metrics and the state a checkpoint must hold.

    `resume` is a loaded checkpoint: training continues after its epoch. `log_dir` receives the
    trial's own TensorBoard summaries (trainable.summaries); None writes none. `log` hears
    whether the trial trains on cached frozen features, and why not. `backbone_state`: see
    build_trial_model. `on_trained` receives each epoch's checkpoint state as soon as the
    epoch has trained, before it is validated (trainable.ray_entry writes it meanwhile: the
    weights do not change until the next epoch). `pipeline` decodes image files (a new one
    with cfg.loader_workers when None). The yielded state references live tensors, so save it
    before advancing the generator.
    """
    torch.set_num_threads(cfg.num_threads)
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be 'cpu' or 'cuda', but got device={cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda', but torch sees no GPU in this trial's process")
    device = torch.device(cfg.device)  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
    data = data or build_data(cfg)
    own_pipeline = pipeline is None  # made here: its workers stop when the trial does
    pipeline = pipeline or trial_pipeline(cfg, data)
    model = build_trial_model(cfg, len(data.classes), backbone_state).to(device)
    frozen, fingerprint = frozen_fingerprint(model, cfg)
    # On a GPU: bf16 autocast and channels-last convolutions (trainable.engine), and cuDNN's
    # fastest kernels for the trial's fixed input size, timed once.
    amp = device.type == "cuda"
    if amp:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    start, best_val_acc, best_epoch = 0, -math.inf, 0
    if resume is not None:
        load_trained(model, resume, frozen, fingerprint)
        if resume.get("optimizer"):  # {} after a trial's last epoch
            optimizer.load_state_dict(resume["optimizer"])
        start = int(resume["epoch"])
    trainable_params = count_trainable(model)
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    # With the frozen stages' output cached, each epoch runs only the rest of the model on it.
    features = cached_features(cfg, model, data, pipeline, first_epoch=start + 1)
    if isinstance(features, str):
        net, train, val_split = model, pipeline.split("train"), pipeline.split("val")
        note = f"frozen-feature cache not used: {features}"
    else:
        net, train, val_split, note = features.suffix, None, features.val, features.note
    if log is not None:
        log(note)
    if resume is not None:
        best_val_acc = float(resume.get("best_val_acc", -math.inf))  # a checkpoint before lean
        best_epoch = start
        if "prior_best_val_acc" in resume and start < cfg.max_epochs:
            # Its own epoch's score is not in the file (written while it was validated):
            # measured again, as it was.
            prior = float(resume["prior_best_val_acc"])
            own = evaluate(net, val_split, amp=amp).acc
            best_val_acc = max(prior, own)
            if own <= prior:  # made before the best epoch was saved: patience counts from here
                best_epoch = int(resume.get("prior_best_epoch", start))
    # Stopped on its plateau already (the driver died before Tune ended it): no more epochs.
    plateaued = bool(cfg.patience) and start - best_epoch >= cfg.patience
    last = start if plateaued else cfg.max_epochs
    summaries = TrialSummaries(log_dir, cfg, data.classes) if log_dir is not None else None
    try:
        for epoch in range(start + 1, last + 1):
            began = time.perf_counter()
            if not isinstance(features, str):
                train = features.train(epoch)  # the epoch's augmented views, if augmented
            train_loss = train_seeded_epoch(net, optimizer, train, cfg, epoch, amp)
            state = {
                "model": lean_state(model, frozen),
                # The last epoch's state is never trained on: no momentum to keep.
                "optimizer": optimizer.state_dict() if epoch < cfg.max_epochs else {},
                "epoch": epoch,
                "prior_best_val_acc": best_val_acc,
                "prior_best_epoch": best_epoch,
                "config": cfg.to_dict(),
                "classes": list(data.classes),
                "frozen_fingerprint": fingerprint,
            }
            if on_trained is not None:
                on_trained(state)
            val = evaluate(net, val_split, amp=amp)
            if val.acc > best_val_acc:
                best_val_acc, best_epoch = val.acc, epoch
            if summaries is not None:
                summaries.epoch_end(epoch, model, data.val, val.predicted)
            result = {
                metrics.EPOCH: epoch,
                metrics.TRAIN_LOSS: train_loss,
                metrics.VAL_LOSS: val.loss,
                metrics.VAL_ACC: val.acc,
                metrics.BEST_VAL_ACC: best_val_acc,
                metrics.EPOCH_SECONDS: time.perf_counter() - began,
                metrics.TRAINABLE_PARAMS: trainable_params,
                metrics.CACHED_FEATURES: int(not isinstance(features, str)),
                metrics.VAL_CLASSES_MISSED: classes_missed(val_split.labels, val.predicted),
                metrics.LR: rates,
            }
            plateau = cfg.patience and epoch - best_epoch >= cfg.patience
            if plateau and epoch < cfg.max_epochs:
                result[metrics.PLATEAU] = 1
            yield result, state
            if plateau:
                break
    finally:
        if summaries is not None:
            summaries.close()
        if own_pipeline:
            pipeline.close()


def trial_pipeline(cfg: TrialConfig, data: TransferData) -> Pipeline:
    """The trial's input pipeline: its train and validation splits, cfg.loader_workers
    processes decoding image files (none for data in memory), pinned memory on a GPU."""
    return Pipeline(
        {"train": data.train, "val": data.val}, cfg.loader_workers, cfg.device == "cuda"
    )


def train_seeded_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: SplitLike,
    cfg: TrialConfig,
    epoch: int,
    amp: bool,
) -> float:
    """One training epoch seeded per (seed, epoch): a resumed trial sees the batches, the
    augmented views (trainable.data.sample_rng) and the dropout it would have seen. Returns the
    mean training loss; DivergedError when it is not finite."""
    epoch_seed = cfg.seed * 1_000_003 + epoch
    generator = torch.Generator().manual_seed(epoch_seed)
    torch.manual_seed(epoch_seed)
    train_loss = train_one_epoch(net, optimizer, train, cfg.batch_size, generator, amp, epoch)
    if not math.isfinite(train_loss):
        raise DivergedError(
            f"train_loss is {train_loss} at epoch {epoch}: diverged ({_rates_text(cfg)})"
        )
    return train_loss


def retrain(
    cfg: TrialConfig, data: TransferData, log: Callable[[str], None] | None = None
) -> nn.Module:
    """Fit `cfg` on the training and validation images together for `cfg.max_epochs` epochs,
    seeded as a trial is; return the model (frozen stages as in the trial, in eval mode).

    Nothing is held out to select an epoch: the budget is the trial's full one.
    """
    torch.set_num_threads(cfg.num_threads)
    device = torch.device(cfg.device)
    both = train_and_val(data.train, data.val)
    model = build_trial_model(cfg, len(data.classes)).to(device)
    optimizer = build_optimizer(model, cfg)
    amp = device.type == "cuda"
    with Pipeline({"train": both}, cfg.loader_workers, cfg.device == "cuda") as pipeline:
        train = pipeline.split("train")
        for epoch in range(1, cfg.max_epochs + 1):
            train_loss = train_seeded_epoch(model, optimizer, train, cfg, epoch, amp)
            if log is not None:
                log(f"  retrain epoch {epoch}/{cfg.max_epochs}: train_loss {train_loss:.3f}")
    return model.eval()


def _rates_text(cfg: TrialConfig) -> str:
    """The learning rates of a trial, for messages: `backbone_lr=0.1, head_lr=1`."""
    rates = f"head_lr={cfg.head_lr:.3g}"
    if cfg.backbone_lr is not None:  # None: a linear probe
        rates = f"backbone_lr={cfg.backbone_lr:.3g}, {rates}"
    return rates
