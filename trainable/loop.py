"""The plain-PyTorch transfer-learning loop of one trial; no Ray here, runnable in a notebook."""

from __future__ import annotations

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
    get_backbone,
    load_backbone_state,
    parameter_groups,
)
from trainable.config import TrialConfig
from trainable.data import SplitLike, TransferData, train_and_val
from trainable.datasets import build_data
from trainable.engine import evaluate, train_one_epoch
from trainable.features import cached_features
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


def run_trial(
    cfg: TrialConfig,
    resume: dict[str, Any] | None = None,
    data: TransferData | None = None,
    log_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    backbone_state: dict[str, torch.Tensor] | None = None,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Train epoch by epoch; yield each epoch's metrics and the state a checkpoint must hold.

    `resume` is a loaded checkpoint: training continues after its epoch. `log_dir` receives the
    trial's own TensorBoard summaries (trainable.summaries); None writes none. `log` hears
    whether the trial trains on cached frozen features, and why not. `backbone_state`: see
    build_trial_model. The yielded state
    references live tensors, so save it before advancing the generator.
    """
    torch.set_num_threads(cfg.num_threads)
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be 'cpu' or 'cuda', but got device={cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda', but torch sees no GPU in this trial's process")
    device = torch.device(cfg.device)  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
    data = data or build_data(cfg)
    model = build_trial_model(cfg, len(data.classes), backbone_state).to(device)
    # On a GPU: bf16 autocast and channels-last convolutions (trainable.engine).
    amp = device.type == "cuda"
    if amp:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    start, best_val_acc = 0, -math.inf
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        start = int(resume["epoch"])
        best_val_acc = float(resume.get("best_val_acc", best_val_acc))  # older checkpoints lack it
    trainable_params = count_trainable(model)
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    # With the frozen stages' output cached, each epoch runs only the rest of the model on it.
    features = cached_features(cfg, model, data)
    if isinstance(features, str):
        net, train, val_split, note = (
            model,
            data.train,
            data.val,
            f"frozen-feature cache not used: {features}",
        )
    else:
        net, train, val_split, note = features.suffix, features.train, features.val, features.note
    if log is not None:
        log(note)
    summaries = TrialSummaries(log_dir, cfg, data.classes) if log_dir is not None else None
    try:
        for epoch in range(start + 1, cfg.max_epochs + 1):
            began = time.perf_counter()
            train_loss = train_seeded_epoch(net, optimizer, train, cfg, epoch, amp)
            val = evaluate(net, val_split, amp=amp)
            best_val_acc = max(best_val_acc, val.acc)
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
                metrics.LR: rates,
            }
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "config": cfg.to_dict(),
                "classes": list(data.classes),
                "best_val_acc": best_val_acc,
            }
            yield result, state
    finally:
        if summaries is not None:
            summaries.close()


def train_seeded_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: SplitLike,
    cfg: TrialConfig,
    epoch: int,
    amp: bool,
) -> float:
    """One training epoch seeded per (seed, epoch): a resumed trial sees the batches (and the
    augmentations, drawn from torch's global generator) it would have seen. Returns the mean
    training loss; DivergedError when it is not finite."""
    epoch_seed = cfg.seed * 1_000_003 + epoch
    generator = torch.Generator().manual_seed(epoch_seed)
    torch.manual_seed(epoch_seed)
    train_loss = train_one_epoch(net, optimizer, train, cfg.batch_size, generator, amp)
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
    train = train_and_val(data.train, data.val)
    model = build_trial_model(cfg, len(data.classes)).to(device)
    optimizer = build_optimizer(model, cfg)
    amp = device.type == "cuda"
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
