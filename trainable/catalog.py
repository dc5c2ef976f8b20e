"""What a trial can be given, as plain data: backbone families, starting weights, data sets.

Nothing here imports torch, torchvision or Ray, so that the command lines check their flags
(names, stage counts, image sizes, files to look for) in milliseconds; the modules that build
models and read data (trainable.backbones, trainable.datasets, trainable.weights) take their
facts from here. tests/test_catalog.py checks each fact against the library it describes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainable.config import lookup

# ---------------------------------------------------------------------------------------------
# Backbone families


@dataclass(frozen=True)
class Family:
    """A torchvision model family: its stages counted from the input, and its classifier."""

    # Names of each stage's modules (or bare parameters, as ViT's class token), from the input.
    stages: tuple[tuple[str, ...], ...]
    head: str  # module path of the classifier's last Linear, replaced for the target classes
    imagenet_file: str  # torchvision's DEFAULT ImageNet weights, as named in torch's hub cache
    min_image_size: int = 16  # smaller inputs shrink to nothing before the head
    image_multiple: int = 1  # the image size must be a multiple of this (ViT's patch size)
    traceable: bool = True  # torch.jit.trace draws its graph for TensorBoard

    @property
    def max_freeze_depth(self) -> int:
        """freeze_depth of a linear probe: every stage frozen."""
        return len(self.stages)


_RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _features(*groups: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    """Stages made of `features.<i>` blocks, one group of block indices each."""
    return tuple(tuple(f"features.{i}" for i in group) for group in groups)


# MobileNetV3-Large: the stem, then the blocks grouped by resolution (/2, /4, /8, /16, /32), then
# the last 1x1 conv with the pretrained 960->1280 layer before the classifier.
_MOBILENET_V3_STAGES = (
    *_features((0,), (1,), (2, 3), (4, 5, 6), tuple(range(7, 13)), (13, 14, 15)),
    ("features.16", "classifier.0"),
)
# EfficientNet-B0: the stem, its seven MBConv stages, the last 1x1 conv.
_EFFICIENTNET_B0_STAGES = _features(*((i,) for i in range(9)))
# ConvNeXt-Tiny: the stem, then each of its four stages with the downsampling layer before it;
# the last one with the LayerNorm before the classifier.
_CONVNEXT_STAGES = (
    *_features((0,), (1,), (2, 3), (4, 5)),
    ("features.6", "features.7", "classifier.0"),
)
# ViT-B/16: the patch embedding with the class token and position embedding, then its twelve
# encoder layers in four groups of three, the last with the final LayerNorm.
_VIT_LAYERS = [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
_VIT_STAGES = (
    ("conv_proj", "class_token", "encoder.pos_embedding"),
    tuple(_VIT_LAYERS[0:3]),
    tuple(_VIT_LAYERS[3:6]),
    tuple(_VIT_LAYERS[6:9]),
    (*_VIT_LAYERS[9:12], "encoder.ln"),
)

# Backbones a space picks by name (its "backbone"). The head is the last Linear, replaced for
# the target classes; every other parameter belongs to exactly one stage.
BACKBONES: dict[str, Family] = {
    "resnet18": Family(_RESNET_STAGES, "fc", "resnet18-f37072fd.pth"),
    "resnet34": Family(_RESNET_STAGES, "fc", "resnet34-b627a593.pth"),
    "resnet50": Family(_RESNET_STAGES, "fc", "resnet50-11ad3fa6.pth"),
    "mobilenet_v3_large": Family(
        _MOBILENET_V3_STAGES, "classifier.3", "mobilenet_v3_large-5c1a4163.pth"
    ),
    "efficientnet_b0": Family(
        _EFFICIENTNET_B0_STAGES, "classifier.1", "efficientnet_b0_rwightman-7f5810bc.pth"
    ),
    # Unpadded 4x4 then three 2x2 stride-2 convolutions: 32 px is the least that reaches the head.
    "convnext_tiny": Family(
        _CONVNEXT_STAGES, "classifier.2", "convnext_tiny-983f1562.pth", min_image_size=32
    ),
    # 16 px patches: the image size is a multiple of 16. torch.jit.trace's check finds its
    # graphs differ between runs: no graph in TensorBoard.
    "vit_b_16": Family(
        _VIT_STAGES, "heads.head", "vit_b_16-c867db91.pth", image_multiple=16, traceable=False
    ),
}


def get_backbone(name: str) -> Family:
    """The facts of a registered backbone; unknown names list the choices."""
    return lookup(BACKBONES, "backbone", name)


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() as torch computes it by default: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub."""
    home = os.environ.get("TORCH_HOME")
    if home is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(cache, "torch")
    return Path(os.path.expanduser(home)) / "hub"


def hub_weights_file(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `backbone`, as torch finds its hub from
    the environment (trainable.weights.imagenet_file asks torch itself)."""
    return torch_hub_dir() / "checkpoints" / get_backbone(backbone).imagenet_file


def imagenet_url(backbone: str) -> str:
    """Where torchvision downloads the ImageNet weights of `backbone` from."""
    return f"https://download.pytorch.org/models/{get_backbone(backbone).imagenet_file}"


# ---------------------------------------------------------------------------------------------
# Starting weights (--weights), read by trainable.weights

SOURCE, IMAGENET, NONE = "source", "imagenet", "none"
NAMED_WEIGHTS = (SOURCE, IMAGENET, NONE)
WEIGHTS_CHOICES = f"{', '.join(NAMED_WEIGHTS)}, or a path to a state-dict file"


# ---------------------------------------------------------------------------------------------
# Data sets (--data NAME[:ROOT]), built by trainable.datasets

DIGITS, IMAGE_FOLDER = "digits", "imagefolder"
SOURCE_DATASETS = (DIGITS,)  # data sets with a source task to pretrain on (trainable.pretrain)
# Digits' target task holds 174 images of its smallest class, 50 of them validation:
# trainable.digits.digits_target takes 1 to 123 training images per class.
DIGITS_MAX_SHOTS = 123


@dataclass(frozen=True)
class TorchvisionFiles:
    """What a torchvision data set reads below its ROOT, and where those files come from."""

    files: tuple[str, ...]  # what must exist below ROOT (folders end in "/")
    url: str  # the page or archive the files come from


def _cifar_files(folder: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{folder}/{name}" for name in names)


TORCHVISION_FILES: dict[str, TorchvisionFiles] = {
    "cifar10": TorchvisionFiles(
        _cifar_files(
            "cifar-10-batches-py",
            *(f"data_batch_{i}" for i in range(1, 6)),
            "test_batch",
            "batches.meta",
        ),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": TorchvisionFiles(
        _cifar_files("cifar-100-python", "train", "test", "meta"),
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
    "flowers102": TorchvisionFiles(
        ("flowers-102/jpg/", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
    ),
    "oxford_iiit_pet": TorchvisionFiles(
        (
            "oxford-iiit-pet/images/",
            "oxford-iiit-pet/annotations/trainval.txt",
            "oxford-iiit-pet/annotations/test.txt",
        ),
        "https://www.robots.ox.ac.uk/~vgg/data/pets/",
    ),
}
DATASETS = (DIGITS, IMAGE_FOLDER, *TORCHVISION_FILES)  # the names --data accepts
DATA_CHOICES = ", ".join(
    [DIGITS, f"{IMAGE_FOLDER}:PATH", *(f"{n}[:ROOT]" for n in TORCHVISION_FILES)]
)


class DataError(ValueError):
    """A problem with the user's data: one line saying what is wrong, where, and what to do."""


@dataclass(frozen=True)
class DataSpec:
    """`--data NAME[:ROOT]` parsed: `name` is one of DATASETS, `root` "" when not given."""

    name: str
    root: str = ""

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        """Split `NAME[:ROOT]` and check the name; raise DataError naming the choices."""
        name, _, root = text.partition(":")
        if name not in DATASETS:
            raise DataError(f"unknown data set {name!r}; choose one of: {DATA_CHOICES}")
        if name == DIGITS and root:
            raise DataError(f"digits is embedded and reads no folder, but got --data {text!r}")
        if name == IMAGE_FOLDER and not root:
            raise DataError("--data imagefolder needs a folder: --data imagefolder:PATH")
        return cls(name, root)

    def __str__(self) -> str:
        return f"{self.name}:{self.root}" if self.root else self.name


def missing_files(name: str, root: Path) -> list[str]:
    """The files of torchvision data set `name` not found below `root`."""
    files = lookup(TORCHVISION_FILES, "data set", name).files
    return [f for f in files if not (root / f).exists()]


def check_present(name: str, root: Path) -> None:
    """Raise a DataError naming the files of data set `name` missing below `root`, where they
    go and where they come from."""
    missing = missing_files(name, root)
    if missing:
        raise DataError(
            f"{name} is not in {root}: missing {', '.join(missing[:4])}"
            f"{f' and {len(missing) - 4} more' if len(missing) > 4 else ''}; "
            f"put its files there (from {TORCHVISION_FILES[name].url}) or add --download to "
            "fetch them"
        )
