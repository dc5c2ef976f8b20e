"""A cheap pre-screen of (backbone, freeze_depth) candidates: probes on frozen features.

How well the output of a backbone's frozen stages already separates the target classes is
measured in seconds, before any trial trains: a k-nearest-neighbour probe and a closed-form
ridge-regression probe, both fit on the training images' features and scored on the
validation images'. The features come from the frozen-feature cache (trainable.features), so
the pre-screen writes exactly the entries the trials at each depth read later: their first
epoch runs no forward pass of the frozen stages.

`kendall_tau` compares the probes' ranking of candidates with the ranking the trials give.
Plain PyTorch, no Ray: runnable in a notebook.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trainable.catalog import get_backbone
from trainable.config import TrialConfig
from trainable.data import SplitLike, TransferData
from trainable.engine import autocast
from trainable.features import (
    BUILD_BATCH,
    FORWARD_STEPS,
    CachedFeatures,
    Steps,
    cached_features,
    prefix_length,
    split_model,
    uses,
)
from trainable.loop import build_trial_model
from trainable.pipeline import Pipeline

# Neighbours that vote: few enough that a 5-shot class can win its own images' votes, enough
# to outvote one mislabelled or atypical neighbour. Fewer when the smallest training class
# has fewer images (with 1 shot per class, 5 neighbours would be mostly other classes).
KNN_K = 5
# Ridge penalty on standardised features scaled by 1/sqrt(width), so that an image's squared
# norm is about 1 at any width: 0.1 (a tenth of an image's similarity to itself) keeps the
# solve well conditioned when features outnumber images, where no penalty would interpolate
# the training labels, and barely shrinks directions that many images support (their
# eigenvalues grow like images / width).
RIDGE_LAMBDA = 0.1
# Rows handled at a time: pooling reads a memory-mapped cache entry piecewise, and kNN's
# similarity matrix holds this many validation images against every training image.
CHUNK_ROWS = 1024
KNN_CHUNK_ROWS = 256


@dataclass(frozen=True)
class ProbeScore:
    """How well one candidate's frozen features separate the target classes."""

    backbone: str
    freeze_depth: int  # stages frozen (1..max); the probes read the frozen prefix's output
    knn_acc: float  # cosine kNN (KNN_K neighbours, fewer for tiny classes) on validation
    ridge_acc: float  # ridge regression onto one-hot labels (RIDGE_LAMBDA) on validation
    # Wall time of this candidate: its features and both probes (not the model, built once
    # for every depth of the backbone)
    seconds: float
    cached: bool  # its features came from, or were written to, the frozen-feature cache

    @property
    def score(self) -> float:
        """What candidates are ranked by: the mean of the two accuracies.

        The probes err in different directions (ridge asks for linear separability, which a
        fine-tuned suffix does not need; kNN asks for tight neighbourhoods, which wide early
        features lack), and on a few hundred validation images each moves in steps of a few
        tenths of a percent: their mean is steadier than either, and no tie-break is needed.
        """
        return (self.knn_acc + self.ridge_acc) / 2


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """One float32 vector per image from a frozen prefix's output: spatial maps (N, C, H, W)
    averaged over positions, ViT tokens (N, 1 + P, D) averaged over the P patch tokens,
    vectors (N, D) as they are."""
    if features.ndim == 4:
        return features.float().mean(dim=(2, 3))
    if features.ndim == 3:
        # ViT's class token reads the patches only through the layers after it: at depth 1 it
        # is the same for every image, and until the final LayerNorm (depth 5, whose prefix
        # already selects it) it is not yet the head's input.
        return features[:, 1:].float().mean(dim=1)
    if features.ndim == 2:
        return features.float()
    raise ValueError(
        f"features must be (N, D), (N, T, D) or (N, C, H, W), but got shape {tuple(features.shape)}"
    )


def _pooled_rows(features: torch.Tensor) -> torch.Tensor:
    """pool_features of a (memory-mapped) tensor, read CHUNK_ROWS images at a time."""
    parts = [
        pool_features(features[i : i + CHUNK_ROWS]) for i in range(0, len(features), CHUNK_ROWS)
    ]
    return torch.cat(parts) if parts else torch.empty(0, 0)


def _standardised(train: torch.Tensor, val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets in float64, centred and scaled by the training images' statistics
    (a feature constant on them is only centred)."""
    train, val = train.double(), val.double()
    mean, std = train.mean(dim=0), train.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (val - mean) / std


def _check_probe_inputs(
    train: torch.Tensor, train_labels: torch.Tensor, val: torch.Tensor, val_labels: torch.Tensor
) -> None:
    """Raise a ValueError naming every way the probes' inputs do not fit together."""
    problems = []
    if train.ndim != 2 or val.ndim != 2 or train.shape[1] != val.shape[1]:
        problems.append(
            "features must be (N, D) with the same D, "
            f"but got {tuple(train.shape)} and {tuple(val.shape)}"
        )
    if len(train) != len(train_labels) or len(val) != len(val_labels):
        problems.append(
            "each image needs one label, but got "
            f"{len(train)} training images with {len(train_labels)} labels and "
            f"{len(val)} validation images with {len(val_labels)} labels"
        )
    if len(train) == 0 or len(val) == 0:
        problems.append(f"both splits must hold images, but got {len(train)} and {len(val)}")
    if problems:
        raise ValueError("; ".join(problems))


def knn_accuracy(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    val: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = KNN_K,
) -> float:
    """Accuracy on `val` of a majority vote of each image's `k` most cosine-similar training
    images (fewer when the smallest training class has fewer), ties going to the class with
    the larger total similarity.

    Cosine on standardised features: post-ReLU features are all positive, so raw cosines
    crowd near 1 and the few loudest channels decide them.
    """
    _check_probe_inputs(train, train_labels, val, val_labels)
    train, val = _standardised(train, val)
    train = nn.functional.normalize(train, dim=1)
    val = nn.functional.normalize(val, dim=1)
    counts = torch.bincount(train_labels)
    k = max(1, min(k, int(counts[counts > 0].min())))
    classes = len(counts)
    correct = 0
    for start in range(0, len(val), KNN_CHUNK_ROWS):
        similar, nearest = (val[start : start + KNN_CHUNK_ROWS] @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(nearest), classes, dtype=torch.float64)
        votes.scatter_add_(1, train_labels[nearest], torch.ones_like(similar))
        # Similarity shifted into [0, 1] and divided by k + 1 adds less than one vote: it
        # only breaks ties between classes with as many votes.
        closeness = torch.zeros_like(votes)
        closeness.scatter_add_(1, train_labels[nearest], (similar + 1) / 2 / (k + 1))
        predicted = (votes + closeness).argmax(dim=1)
        correct += int((predicted == val_labels[start : start + KNN_CHUNK_ROWS]).sum())
    return correct / len(val)


def _ridge_scores(
    train: torch.Tensor, train_labels: torch.Tensor, val: torch.Tensor, dual: bool | None = None
) -> torch.Tensor:
    """Class scores (N_val, classes) of ridge regression from standardised features onto
    one-hot labels, with an intercept; solved in the dual (kernel) form when features
    outnumber images (`dual` None), so the matrix solved is the smaller of the two."""
    train, val = _standardised(train, val)
    width = train.shape[1]
    train, val = train / math.sqrt(width), val / math.sqrt(width)
    targets = nn.functional.one_hot(train_labels).double()
    offset = targets.mean(dim=0)  # the intercept: features are centred, so it is the class share
    targets = targets - offset
    if dual if dual is not None else width > len(train):
        gram = train @ train.T + RIDGE_LAMBDA * torch.eye(len(train), dtype=torch.float64)
        scores = (val @ train.T) @ torch.linalg.solve(gram, targets)
    else:
        gram = train.T @ train + RIDGE_LAMBDA * torch.eye(width, dtype=torch.float64)
        scores = val @ torch.linalg.solve(gram, train.T @ targets)
    scores = scores + offset
    scores[:, offset == 0] = -math.inf  # a class with no training image is never predicted
    return scores


def ridge_accuracy(
    train: torch.Tensor, train_labels: torch.Tensor, val: torch.Tensor, val_labels: torch.Tensor
) -> float:
    """Accuracy on `val` of closed-form ridge regression (RIDGE_LAMBDA, float64) from the
    standardised training features onto one-hot labels: a linear probe with no learning rate
    or epochs to choose."""
    _check_probe_inputs(train, train_labels, val, val_labels)
    predicted = _ridge_scores(train, train_labels, val).argmax(dim=1)
    return int((predicted == val_labels).sum()) / len(val)


def _holds_frozen_stages(model: nn.Module, backbone: str, depth: int) -> bool:
    """True when the cacheable prefix at `depth` runs every module of the frozen stages (not
    so for ViT with a position-embedding dropout, where every prefix ends before it)."""
    steps = FORWARD_STEPS[backbone]
    ran = {name for step in steps[: prefix_length(model, backbone, depth)] for name in uses(step)}
    return all(entry in ran for stage in get_backbone(backbone).stages[:depth] for entry in stage)


@torch.no_grad()
def _prefix_vectors(
    prefix: Steps, split: SplitLike, device: torch.device, epoch: int
) -> torch.Tensor:
    """pool_features of the prefix's output for every image of `split` (its views of
    `epoch`), computed as trainable.features computes a cache entry (BUILD_BATCH images at a
    time, bf16 autocast on a GPU), but pooled batch by batch: features too big to cache are
    never held whole."""
    prefix.eval()
    parts = []
    for images, _ in split.batches(BUILD_BATCH, None, epoch):
        with autocast(device, device.type == "cuda"):
            out = prefix(split.inputs(images, device)).float()
        parts.append(pool_features(out).cpu())
    return torch.cat(parts)


class _Vectors(NamedTuple):
    """One depth's pooled features and labels, and how they were obtained."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    cached: bool
    note: str  # for the log


def _depth_vectors(
    cfg: TrialConfig, model: nn.Module, data: TransferData, pipeline: Pipeline
) -> _Vectors:
    """The pooled features at cfg.freeze_depth, the training images as the trial's first
    epoch sees them: from the cache entry the trial reads, or computed here when there is
    none."""
    entry = cached_features(cfg, model, data, pipeline)
    if isinstance(entry, CachedFeatures):
        train = entry.train(1)
        how = "built into" if entry.built_seconds else "read from"
        return _Vectors(
            _pooled_rows(train.images),
            train.labels,
            _pooled_rows(entry.val.images),
            entry.val.labels,
            cached=True,
            note=f"features {how} the cache",
        )
    prefix, _ = split_model(model, cfg.backbone, cfg.freeze_depth)
    device = next(model.parameters()).device
    train, val = pipeline.split("train"), pipeline.split("val")
    return _Vectors(
        _prefix_vectors(prefix, train, device, 1),
        train.labels,
        _prefix_vectors(prefix, val, device, 0),
        val.labels,
        cached=False,
        note=f"features not cached: {entry}",
    )


def probe_scores(
    cfg: TrialConfig,
    data: TransferData,
    backbone_state: dict[str, torch.Tensor] | None,
    depths: Sequence[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[ProbeScore]:
    """Scores of cfg.backbone at each depth in `depths` (default: every depth
    1..max_freeze_depth whose frozen prefix the feature cache can hold), in that order.

    The model is built as a trial builds it (`backbone_state`: see
    trainable.loop.build_trial_model; cfg.freeze_depth is ignored), and each depth's features
    are taken from the frozen-feature cache when cfg and the entry's size allow, else computed
    here. `log` hears one line per depth.
    """
    spec = get_backbone(cfg.backbone)
    deepest = spec.max_freeze_depth
    if cfg.backbone not in FORWARD_STEPS:
        raise ValueError(f"{cfg.backbone} has no forward-step map (trainable.features)")
    wrong = [d for d in depths or () if not 1 <= d <= deepest]
    if wrong:
        raise ValueError(
            f"`1 <= freeze_depth <= {deepest}` must hold for {cfg.backbone}, but got depths {wrong}"
        )
    began = time.perf_counter()
    device = torch.device(cfg.device)
    # One model serves every depth: a prefix, its output and its cache key depend only on the
    # stages before the cut, which build_trial_model makes identical at every freeze_depth
    # (seeded, same weights; freezing swaps BatchNorm for the same statistics); the deeper
    # frozen stages lie after the cut. tests/test_probe.py checks that trials read its entries.
    full = dataclasses.replace(cfg, freeze_depth=deepest)
    model = build_trial_model(full, len(data.classes), backbone_state).to(device)
    if device.type == "cuda":  # as the trial's model (trainable.loop.run_trial)
        model = model.to(memory_format=torch.channels_last)
    held = [d for d in range(1, deepest + 1) if _holds_frozen_stages(model, cfg.backbone, d)]
    if depths is None:
        depths = held
    elif any(d not in held for d in depths):
        raise ValueError(
            f"the cacheable prefix of {cfg.backbone} must hold every frozen stage, but not at "
            f"depths {[d for d in depths if d not in held]} (held: {held})"
        )
    if log is not None:
        log(f"probe {cfg.backbone}: model built in {time.perf_counter() - began:.1f} s")
    scores = []
    with Pipeline({"train": data.train, "val": data.val}, 0) as pipeline:
        for depth in depths:
            began = time.perf_counter()
            at_depth = dataclasses.replace(cfg, freeze_depth=depth)
            found = _depth_vectors(at_depth, model, data, pipeline)
            probed = (found.train, found.train_labels, found.val, found.val_labels)
            score = ProbeScore(
                backbone=cfg.backbone,
                freeze_depth=depth,
                knn_acc=knn_accuracy(*probed),
                ridge_acc=ridge_accuracy(*probed),
                seconds=time.perf_counter() - began,
                cached=found.cached,
            )
            scores.append(score)
            if log is not None:
                log(
                    f"probe {cfg.backbone} freeze_depth={depth}: ridge {score.ridge_acc:.3f}, "
                    f"kNN {score.knn_acc:.3f} in {score.seconds:.1f} s ({found.note})"
                )
    return scores


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two scorings of the same candidates (ties corrected for); None
    when there are fewer than two candidates or one scoring is constant."""
    if len(a) != len(b):
        raise ValueError(f"`len(a) == len(b)` must hold, but got len(a)={len(a)}, len(b)={len(b)}")
    concordant = discordant = tied_a = tied_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            step_a = (a[i] > a[j]) - (a[i] < a[j])
            step_b = (b[i] > b[j]) - (b[i] < b[j])
            tied_a += step_a == 0
            tied_b += step_b == 0
            if step_a and step_b:
                concordant += step_a == step_b
                discordant += step_a != step_b
    pairs = len(a) * (len(a) - 1) // 2
    denominator = math.sqrt((pairs - tied_a) * (pairs - tied_b))
    if denominator == 0:  # fewer than two candidates, or one side constant
        return None
    return (concordant - discordant) / denominator
