"""What the trials will read, fetched and checked once in the driver before Ray starts.

Downloads (with --download) happen here, never in several trials at once; the user's images
are decoded once (cached) and unreadable ones skipped with a count; the data set is split as
every trial will split it, so a class too small for the splits stops the search here.
"""

from __future__ import annotations

from pathlib import Path

from search.config.settings import SearchSettings
from search.config.usage import UsageError
from trainable.catalog import DIGITS, IMAGE_FOLDER, IMAGENET, SOURCE, DataError, DataSpec
from trainable.config import TrialConfig
from trainable.data import TransferData
from trainable.datasets import build_data, prepare_torchvision_set
from trainable.pretrain import ensure_source_weights
from trainable.weights import WeightsError, check_imagenet, prepare_imagenet


def prepare_inputs(settings: SearchSettings, fixed: TrialConfig) -> TransferData:
    """Fetch and check the data and weights of the search; return the data as trials split it.

    Raises UsageError for a problem the user must fix (one line).
    """
    spec = DataSpec.parse(settings.data)
    try:
        if spec.name not in (DIGITS, IMAGE_FOLDER):
            prepare_torchvision_set(spec.name, Path(spec.root), settings.download)
        if settings.weights == IMAGENET:
            prepare_imagenet(settings.backbone, settings.download)
            check_imagenet(settings.backbone)
        data = build_data(fixed, log=print)  # decodes each image once (cached for the trials)
    except (DataError, WeightsError) as error:
        raise UsageError(str(error)) from None
    if fixed.weights == SOURCE:  # pretrain once here, not in several trials at once
        ensure_source_weights(fixed.backbone, fixed.data, fixed.image_size, fixed.cache_dir)
    return data


def describe_data(data: TransferData) -> str:
    """'3 classes (cat, dog, fox), 120 train / 30 val / 0 test images' for the console."""
    names = ", ".join(data.classes[:5]) + (", ..." if len(data.classes) > 5 else "")
    return (
        f"{len(data.classes)} classes ({names}), {len(data.train)} train / {len(data.val)} val / "
        f"{len(data.test)} test images"
    )
