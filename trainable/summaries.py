"""What a trial writes to TensorBoard itself: what only the live model can show.

- text: the trial's resolved config, once at the start;
- histograms: the weights of the head and of the deepest backbone stage that trains;
- images: the validation confusion matrix and a grid of misclassified validation images.

Histograms and images cost ~15 ms together (a histogram is drawn from a 65 k sample of the
weights), written at epoch 1, every `summary_every` epochs and the last, not every epoch.
Scalars and the HParams session are written by the search's logger from the metrics the trial
reports (search/tensorboard.py), so they do not depend on this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from trainable.backbones import stage_parameters
from trainable.catalog import get_backbone
from trainable.config import TrialConfig
from trainable.data import SplitLike

HISTOGRAM_BINS = 64
HISTOGRAM_SAMPLE = 65_536  # values a weight histogram is computed from (see histogram())
MAX_MISCLASSIFIED = 16  # images in the grid: a 4 x 4 mosaic
TILE = 64  # pixels per shown image (digits are 32 px: upscaled 2x, nearest)
CELL = 36  # pixels per confusion-matrix cell
SUFFIX = ".trial"  # event files of the trial itself, next to the search logger's


def config_markdown(cfg: TrialConfig) -> str:
    """The config as a two-column Markdown table, for TensorBoard's Text tab."""
    rows = [f"| {key} | {value} |" for key, value in cfg.to_dict().items()]
    return "\n".join(["| setting | value |", "| --- | --- |", *rows])


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """counts[true, predicted] over a split."""
    flat = labels * classes + predicted
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def render_confusion(counts: torch.Tensor, classes: tuple[str, ...]) -> np.ndarray:
    """The confusion matrix as an RGB image (H, W, 3): rows true, columns predicted, counts
    printed, each cell shaded by its share of its row."""
    n = len(classes)
    margin = CELL
    image = Image.new("RGB", (margin + n * CELL, margin + n * CELL + CELL // 2), "white")
    draw, font = ImageDraw.Draw(image), _font(CELL // 3)
    shares = counts.float() / counts.sum(dim=1, keepdim=True).clamp(min=1)
    for i, name in enumerate(classes):
        x = margin + i * CELL + CELL // 2
        draw.text((x, margin // 2), name, fill="black", font=font, anchor="mm")  # predicted
        draw.text((margin // 2, x), name, fill="black", font=font, anchor="mm")  # true
        for j in range(n):
            share = float(shares[i, j])
            shade = (int(255 * (1 - share)), int(255 * (1 - 0.6 * share)), 255)
            box = (
                margin + j * CELL,
                margin + i * CELL,
                margin + (j + 1) * CELL,
                margin + (i + 1) * CELL,
            )
            draw.rectangle(box, fill=shade, outline="grey")
            ink = "white" if share > 0.5 else "black"
            centre = (box[0] + CELL // 2, box[1] + CELL // 2)
            draw.text(centre, str(int(counts[i, j])), fill=ink, font=font, anchor="mm")
    bottom = margin + n * CELL + CELL // 4
    draw.text(
        (margin, bottom),
        "rows: true, columns: predicted",
        fill="black",
        font=_font(10),
        anchor="lm",
    )
    return np.asarray(image)


def render_misclassified(
    split: SplitLike, predicted: torch.Tensor, classes: tuple[str, ...]
) -> np.ndarray | None:
    """Up to MAX_MISCLASSIFIED wrong validation images, each captioned `true -> predicted`, as
    one RGB image (H, W, 3); None when every image is right."""
    wrong = torch.nonzero(predicted != split.labels).flatten()[:MAX_MISCLASSIFIED]
    if len(wrong) == 0:
        return None
    columns = min(4, len(wrong))
    rows = (len(wrong) + columns - 1) // columns
    caption = 14
    mosaic = Image.new("RGB", (columns * TILE, rows * (TILE + caption)), "white")
    draw, font = ImageDraw.Draw(mosaic), _font(11)
    for k, index in enumerate(wrong.tolist()):
        pixels = split.image(index)
        pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()).clamp(min=1e-8)
        tile = Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        x, y = (k % columns) * TILE, (k // columns) * (TILE + caption)
        mosaic.paste(tile.resize((TILE, TILE), Image.NEAREST), (x, y))
        true, guess = classes[int(split.labels[index])], classes[int(predicted[index])]
        draw.text((x + TILE // 2, y + TILE + caption // 2), f"{true} -> {guess}", fill="black",
                  font=font, anchor="mm")  # fmt: skip
    return np.asarray(mosaic)


def trained_stage(cfg: TrialConfig) -> tuple[str, ...]:
    """Module names of the deepest backbone stage that trains; () for a linear probe."""
    stages = get_backbone(cfg.backbone).stages
    return stages[-1] if cfg.freeze_depth < len(stages) else ()


class TrialSummaries:
    """Writes one trial's text, histograms and images into `log_dir` (the trial's folder)."""

    def __init__(self, log_dir: Path, cfg: TrialConfig, classes: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.classes = classes
        self.writer = SummaryWriter(str(log_dir), filename_suffix=SUFFIX)
        self.writer.add_text("config", config_markdown(cfg), global_step=0)
        self.writer.flush()

    def due(self, epoch: int) -> bool:
        """Histograms and images at epoch 1, every `summary_every` epochs, and the last."""
        every = self.cfg.summary_every
        return epoch == 1 or epoch == self.cfg.max_epochs or (every > 0 and epoch % every == 0)

    def histogram(self, tag: str, weights: list[torch.Tensor], epoch: int) -> None:
        """A histogram of `weights`, from at most HISTOGRAM_SAMPLE of their values.

        layer4 of ResNet-18 holds 8.4 M weights: a full histogram took ~60 ms, 15 % of a
        digits epoch. Every k-th value of each tensor (k = total / HISTOGRAM_SAMPLE) shows the
        same distribution in ~1 ms; the counts are scaled back to the whole.
        """
        total = sum(w.numel() for w in weights)
        stride = max(1, -(-total // HISTOGRAM_SAMPLE))  # ceil
        values = torch.cat([w.detach().flatten()[::stride] for w in weights]).float()
        low, high = (float(v) for v in values.aminmax())
        counts = torch.histc(values, bins=HISTOGRAM_BINS, min=low, max=high) * (total / len(values))
        self.writer.add_histogram_raw(
            tag,
            min=low,
            max=high,
            num=total,
            sum=float(values.sum()) * total / len(values),
            sum_squares=float(values.square().sum()) * total / len(values),
            bucket_limits=torch.linspace(low, high, HISTOGRAM_BINS + 1)[1:].tolist(),
            bucket_counts=counts.tolist(),
            global_step=epoch,
        )

    def epoch_end(
        self, epoch: int, model: nn.Module, val: SplitLike, predicted: torch.Tensor
    ) -> None:
        """Write this epoch's histograms and images when they are due."""
        if not self.due(epoch):
            return
        head = get_backbone(self.cfg.backbone).head
        self.histogram(f"weights/{head}", [model.get_submodule(head).weight], epoch)
        stage = trained_stage(self.cfg)
        if stage:
            weights = [p for _, p in stage_parameters(model, stage)]
            self.histogram(f"weights/{'+'.join(stage)}", weights, epoch)
        counts = confusion_matrix(val.labels, predicted, len(self.classes))
        self.writer.add_image(
            "val/confusion_matrix", render_confusion(counts, self.classes), epoch, dataformats="HWC"
        )
        wrong = render_misclassified(val, predicted, self.classes)
        if wrong is not None:
            self.writer.add_image("val/misclassified", wrong, epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
