"""The frozen-feature cache: compute a trial's frozen prefix once, then train only the rest.

A trial with its first k stages frozen computes the same activations of those stages for the
same input every time. This module cuts the model's forward pass in two at the end of the
frozen stages, computes the prefix's output for the validation images and for each view of the
training images once, and stores it in `cache_dir/features/<key>/`, keyed by a hash of the
prefix's weights and of the images (their files or pixels, split, transform and augmentation).
A view is what the training images look like in an epoch: one for all epochs without random
augmentation, one per epoch with it (the crops the uncached trial draws in that epoch). Every
later epoch, and every trial with the same prefix, trains the suffix on those features.

The forward pass of each family is a list of steps (FORWARD_STEPS): module paths in the order
the model's own `forward` runs them, plus a few named functions for what is not a module
(`flatten`, ViT's token assembly). A test checks that the steps reproduce `model(x)`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import PIL
import torch
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth

from trainable.catalog import get_backbone
from trainable.config import TrialConfig, error_line
from trainable.data import Split, SplitLike, TransferData, tensor_hash
from trainable.engine import autocast
from trainable.files import exclusive, write_atomically
from trainable.pipeline import Pipeline

FEATURES_DIR = "features"
FORMAT_VERSION = 2  # bump when what a cached entry holds changes
# A cache entry (validation features, and the training features of every view, float32)
# larger than this is not written: the trial trains uncached and says why. Building holds one
# view in memory; training reads it memory-mapped.
MAX_CACHE_BYTES = 4_000_000_000
BUILD_BATCH = 128  # images per forward pass of the prefix while building


def _vit_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ViT's patch embedding with the class token in front, as VisionTransformer.forward."""
    tokens = model._process_input(x)
    return torch.cat([model.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)


def _vit_position(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's position embedding and its dropout, as Encoder.forward begins."""
    return model.encoder.dropout(x + model.encoder.pos_embedding)


# Steps that are not a module call: (function, the modules and parameters it uses, and the
# parameter-free modules it runs, which must compute the same in training to be cached).
FUNCTIONS: dict[
    str,
    tuple[Callable[[nn.Module, torch.Tensor], torch.Tensor], tuple[str, ...], tuple[str, ...]],
] = {
    "flatten": (lambda _, x: torch.flatten(x, 1), (), ()),
    "vit_tokens": (_vit_tokens, ("conv_proj", "class_token"), ()),
    "vit_position": (_vit_position, ("encoder.pos_embedding",), ("encoder.dropout",)),
    "vit_class_token": (lambda _, x: x[:, 0], (), ()),
}

_RESNET = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
           "avgpool", "flatten", "fc")  # fmt: skip


def _features_then(count: int, *rest: str) -> tuple[str, ...]:
    return (*(f"features.{i}" for i in range(count)), *rest)


FORWARD_STEPS: dict[str, tuple[str, ...]] = {
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "resnet50": _RESNET,
    "mobilenet_v3_large": _features_then(
        17, "avgpool", "flatten", "classifier.0", "classifier.1", "classifier.2", "classifier.3"
    ),
    "efficientnet_b0": _features_then(9, "avgpool", "flatten", "classifier.0", "classifier.1"),
    "convnext_tiny": _features_then(8, "avgpool", "classifier.0", "classifier.1", "classifier.2"),
    "vit_b_16": (
        "vit_tokens",
        "vit_position",
        *(f"encoder.layers.encoder_layer_{i}" for i in range(12)),
        "encoder.ln",
        "vit_class_token",
        "heads.head",
    ),
}


def _run_step(model: nn.Module, step: str, x: torch.Tensor) -> torch.Tensor:
    if step in FUNCTIONS:
        return FUNCTIONS[step][0](model, x)
    return model.get_submodule(step)(x)


class Steps(nn.Module):
    """Part of a model's forward pass: `steps` run in order on the model's own modules."""

    def __init__(self, model: nn.Module, steps: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = _run_step(self.model, step, x)
        return x


def uses(step: str) -> tuple[str, ...]:
    """The modules and parameters whose weights a forward step uses (none: parameter-free)."""
    return FUNCTIONS[step][1] if step in FUNCTIONS else (step,)


def _stage_of(backbone: str, name: str) -> int | None:
    """Index of the stage holding module or parameter `name`, or None (the head, or a step
    with no parameters)."""
    for index, stage in enumerate(get_backbone(backbone).stages):
        if any(name == entry or name.startswith(f"{entry}.") for entry in stage):
            return index
    return None


def _fixed(module: nn.Module) -> bool:
    """True for a module without parameters that computes the same in train and eval mode."""
    if any(True for _ in module.parameters()):
        return False
    return not any(
        isinstance(m, (nn.Dropout, StochasticDepth)) and m.p > 0 for m in module.modules()
    )


def prefix_length(model: nn.Module, backbone: str, depth: int) -> int:
    """How many forward steps a frozen prefix of `depth` stages can hold: every step of the
    frozen stages, and after them the parameter-free deterministic ones (pooling, flatten)."""
    steps = FORWARD_STEPS[backbone]
    for index, step in enumerate(steps):
        stages = [_stage_of(backbone, name) for name in uses(step)]
        frozen = bool(stages) and all(stage is not None and stage < depth for stage in stages)
        if step in FUNCTIONS:
            free = not stages
            runs = [model.get_submodule(name) for name in FUNCTIONS[step][2]]
            if not all(_fixed(module) for module in runs):  # a dropout outside any stage
                return index
        else:
            free = stages == [None] and _fixed(model.get_submodule(step))
        if not (frozen or free):
            return index
    return len(steps)


def split_model(model: nn.Module, backbone: str, depth: int) -> tuple[Steps, Steps]:
    """(prefix, suffix): the frozen prefix of `depth` stages and the rest of the forward pass;
    suffix(prefix(x)) is model(x)."""
    steps = FORWARD_STEPS[backbone]
    cut = prefix_length(model, backbone, depth)
    return Steps(model, steps[:cut]), Steps(model, steps[cut:])


def why_uncached(cfg: TrialConfig) -> str | None:
    """Why this trial cannot use cached features, or None when it can (size aside)."""
    if not cfg.feature_cache:
        return "turned off (--no-feature-cache)"
    if cfg.freeze_depth == 0:
        return "no stage is frozen"
    if cfg.backbone not in FORWARD_STEPS:
        return f"{cfg.backbone} has no forward-step map"
    return None


def _augmented(split: SplitLike) -> bool:
    return getattr(split, "augment", None) is not None


class CachedFeatures:
    """The frozen prefix's output for the validation images and, per epoch, for the training
    images, and the suffix to train on them.

    Augmented training images have one view per epoch (the crops an uncached trial would see
    in that epoch: trainable.data.sample_rng), each computed once, when the first trial with
    this prefix reaches that epoch, and shared by every later one; unaugmented ones have one
    view for all epochs.
    """

    def __init__(
        self,
        folder: Path,
        prefix: Steps,
        suffix: Steps,
        train: SplitLike,
        val: Split,
        device: torch.device,
    ) -> None:
        self.folder = folder
        self.prefix = prefix
        self.suffix = suffix
        self.val = val
        self.augmented = _augmented(train)
        self.built_seconds = 0.0  # time this trial spent building views (0: all read)
        self._source = train
        self._device = device
        self._view: tuple[int, Split] | None = None

    @property
    def path(self) -> Path:
        """The entry's folder."""
        return self.folder

    def train(self, epoch: int) -> Split:
        """The training images' features as the model sees them in `epoch`."""
        view = epoch if self.augmented else 0
        if self._view is None or self._view[0] != view:
            name = f"train-epoch{view}.pt" if self.augmented else "train.pt"
            features = _stored(self.folder / name, self.prefix, self._source, self._device, view)
            self.built_seconds += features[1]
            self._view = (view, Split(features[0], self._source.labels))
        return self._view[1]

    @property
    def note(self) -> str:
        """One line for the trial's log: what is cached, where, and how it was obtained."""
        shape = "x".join(map(str, self.val.images.shape[1:]))
        how = f"built in {self.built_seconds:.1f} s" if self.built_seconds else "read from cache"
        views = ", a view per epoch of augmented training images" if self.augmented else ""
        return (
            f"frozen-feature cache: {len(self._source)}+{len(self.val)} images as {shape} "
            f"features{views}, {how} ({self.folder})"
        )


def cache_key(prefix: Steps, data: TransferData, image_size: int, device: torch.device) -> str:
    """A hash of everything the cached features depend on: the prefix's steps and weights
    (parameters and buffers of the modules it runs), the train and validation images (and the
    augmentation of the training ones), the device and precision that compute them, and the
    versions of the libraries that do."""
    versions = f"{torch.__version__}|{torchvision.__version__}|{PIL.__version__}"
    precision = "bf16" if device.type == "cuda" else "fp32"  # as the trial trains: engine.py
    digest = hashlib.sha256(
        f"v{FORMAT_VERSION}|{prefix.steps}|{image_size}|{device.type}-{precision}|{versions}".encode()
    )
    model = prefix.model
    for name in (name for step in prefix.steps for name in uses(step)):
        try:
            module = model.get_submodule(name)
            tensors = [*module.parameters(), *module.buffers()]
        except AttributeError:  # a bare parameter
            tensors = [model.get_parameter(name)]
        digest.update(tensor_hash(*tensors).encode())
    for split in (data.train, data.val):
        digest.update(split.fingerprint().encode())
    return digest.hexdigest()[:32]


@torch.no_grad()
def _compute(prefix: Steps, split: SplitLike, device: torch.device, epoch: int) -> torch.Tensor:
    """The prefix's output for every image of `split` (its views of `epoch`), in order, on the
    CPU, in float32: computed as the trial's uncached epochs compute it (bf16 autocast on a
    GPU)."""
    prefix.eval()
    features: torch.Tensor | None = None
    start = 0
    for images, _ in split.batches(BUILD_BATCH, None, epoch):
        with autocast(device, device.type == "cuda"):
            out = prefix(split.inputs(images, device)).float().cpu()
        if features is None:  # one tensor filled in place: no second copy while building
            features = torch.empty((len(split), *out.shape[1:]))
        features[start : start + len(out)] = out
        start += len(out)
    return features if features is not None else torch.empty(0)


@torch.no_grad()
def _feature_bytes(prefix: Steps, data: TransferData, device: torch.device, views: int) -> int:
    """Bytes of float32 features of `views` views of the training images and one of the
    validation images, from one image."""
    prefix.eval()
    one = prefix(data.val.inputs(data.val.sample(0)[None], device))
    return one.numel() * 4 * (len(data.train) * views + len(data.val))


def _stored(
    path: Path, prefix: Steps, split: SplitLike, device: torch.device, epoch: int
) -> tuple[torch.Tensor, float]:
    """The features in `path` (memory-mapped), built first unless they exist, and the seconds
    spent building them (0: they existed).

    Trials running at once with the same prefix wait for the first to build a file (a lock per
    file, trainable.files.exclusive: trials with other prefixes, or other epochs, build theirs
    meanwhile; the image loader's workers forked meanwhile do not keep it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    built = 0.0
    with exclusive(path):
        if not path.exists():
            began = time.perf_counter()
            features = _compute(prefix, split, device, epoch)
            write_atomically(path, lambda f: torch.save(features, f))
            built = time.perf_counter() - began
    return torch.load(path, mmap=True, weights_only=True), built


def cached_features(
    cfg: TrialConfig,
    model: nn.Module,
    data: TransferData,
    pipeline: Pipeline | None = None,
    first_epoch: int = 1,
) -> CachedFeatures | str:
    """The trial's cached features (its validation features built under a lock when absent,
    training views as epochs ask for them, from `first_epoch`'s: a resumed trial's first), or
    the reason the trial trains uncached. `pipeline` decodes the images to compute them (in
    this process when None)."""
    reason = why_uncached(cfg)
    if reason is not None:
        return reason
    prefix, suffix = split_model(model, cfg.backbone, cfg.freeze_depth)
    device = next(model.parameters()).device
    views = cfg.max_epochs if _augmented(data.train) else 1
    size = _feature_bytes(prefix, data, device, views)
    if size > MAX_CACHE_BYTES:
        limit = MAX_CACHE_BYTES / 1e6
        return f"its features would take {size / 1e6:,.0f} MB, over the {limit:,.0f} MB limit"
    folder = Path(cfg.cache_dir) / FEATURES_DIR / cache_key(prefix, data, cfg.image_size, device)
    pipeline = pipeline or Pipeline({"train": data.train, "val": data.val}, 0)
    try:
        val, built = _stored(folder / "val.pt", prefix, pipeline.split("val"), device, 0)
        entry = CachedFeatures(
            folder, prefix, suffix, pipeline.split("train"), Split(val, data.val.labels), device
        )
        entry.built_seconds = built
        if first_epoch <= cfg.max_epochs:  # its view now: a cache that cannot be used fails here
            entry.train(first_epoch)
    except OSError as error:  # a full disk, a read-only cache folder: train uncached
        return f"the cache in {folder.parent} cannot be used ({error_line(error)})"
    return entry
