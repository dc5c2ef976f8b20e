"""Every default of transfer-tune, once, each with its reason.

The command line (search.config.parse), the search's settings (search.config.settings) and a
trial's recipe (trainable.config.TrialConfig) read this table instead of restating values. It
sits at the bottom of the import graph, in `trainable/`, because a trial never imports
`search`. A default of None is derived from other settings by search.config.settings.resolve;
its reason says from what. Plain values only: every command line reads this before importing
anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Default:
    value: Any  # None: derived by search.config.settings.resolve
    reason: str


# The values a derived default takes, by data set.
DIGITS_IMAGE_SIZE = 32  # digits are 8x8: 32 px keeps ResNet-18's stride-32 output at 1x1
IMAGE_SIZE = 224  # what torchvision's ImageNet backbones saw
DIGITS_SHOTS = 20  # digits' few-shot target task: 20 x 5 classes = 100 training images
DIGITS_WEIGHTS = "source"  # pretrained once on digits 0-4, cached: runs offline
DEFAULT_BACKBONE = "resnet18"  # resnet_small's backbone

DEFAULTS: dict[str, Default] = {
    # What to search, on what
    "space": Default("resnet_small", "ResNet-18: trains in minutes on 2 CPU cores"),
    "data": Default("digits", "the embedded data set: runs offline, shows a transfer effect"),
    "weights": Default(None, "source for digits (pretrained on digits 0-4), else imagenet"),
    "backbone": Default(None, "the space's own backbone"),
    "backbones": Default("", "one backbone: the space's (or --backbone)"),
    "prescreen": Default(True, "with several backbones: probes on frozen features first"),
    "image_size": Default(None, f"{DIGITS_IMAGE_SIZE} px for digits, else {IMAGE_SIZE} px"),
    "shots": Default(None, f"{DIGITS_SHOTS} per class for digits (few-shot); else all (0)"),
    "val_fraction": Default(0.2, "per class, when the data set has no validation split"),
    "augment": Default(True, "random resized crops and flips of training images (not digits)"),
    "feature_cache": Default(True, "frozen stages computed once, shared by epochs and trials"),
    "download": Default(False, "nothing is fetched unless asked: runs offline and repeatably"),
    # How long
    "num_samples": Default(16, "enough for TPE to leave its random start-up trials"),
    "max_epochs": Default(9, "ASHA rungs at epochs 1, 3, 9 for grace period 1 and factor 3"),
    "grace_period": Default(1, "one epoch already separates diverging from learning trials"),
    "reduction_factor": Default(3, "keep the best third at every rung (ASHA's usual value)"),
    "patience": Default(0, "off: ASHA alone stops trials early"),
    "time_budget": Default(0, "none: the search runs --num-samples trials"),
    # Where and with what
    "max_concurrent": Default(None, "as many trials as the CPUs (or the cluster) hold"),
    "cpus_per_trial": Default(1.0, "one torch thread per trial: 2 trials at once on 2 cores"),
    "gpus_per_trial": Default(0.0, "CPU unless asked; 0.5 puts two trials on one GPU"),
    "loader_workers": Default(None, "one image-decoding process per whole CPU of a trial"),
    "address": Default(None, "a local Ray on this machine ($RAY_ADDRESS when set)"),
    # What is kept
    "keep_checkpoints": Default(3, "the best trial, its runner-up and a tie to compare"),
    "max_failures": Default(1, "a worker that died (OOM, killed) gets one more chance"),
    "name": Default(None, "<space>-<date>-<time>: a new experiment every run"),
    "storage_path": Default("runs", "runs/ in the working folder, as the README's commands use"),
    "seed": Default(0, "same seed, same suggestions, splits and initial weights"),
    "sampler": Default("tpe", "Optuna's TPE; random is the baseline it should beat"),
    "wandb": Default("auto", "online only when W&B is configured, else offline; never prompts"),
    "cache_dir": Default(None, "$TRANSFER_TUNE_CACHE, else ~/.cache/transfer-tune"),
    # A trial's recipe, fixed by the harness
    "batch_size": Default(16, "100 digits training images: 7 optimizer steps per epoch"),
    "momentum": Default(0.9, "SGD's usual momentum for fine-tuning"),
    "weight_decay": Default(5e-4, "the usual ResNet fine-tuning weight decay"),
    "head_lr": Default(1e-2, "a trial's head learning rate when a space fixes none"),
    "summary_every": Default(3, "TensorBoard histograms at epoch 1, every 3rd and the last"),
}


def default(name: str) -> Any:
    """The default value of setting `name` (None: derived)."""
    return DEFAULTS[name].value
