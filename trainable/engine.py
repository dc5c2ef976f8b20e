"""One training epoch and one evaluation pass: shared by source pretraining and trials."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trainable.data import SplitLike


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: SplitLike,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over `split` in a shuffled order; returns the mean training loss."""
    model.train()
    device = next(model.parameters()).device
    total, seen = 0.0, 0
    for images, labels in split.batches(batch_size, generator):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        seen += len(labels)
    return total / seen


class Evaluation(NamedTuple):
    """Mean cross-entropy loss and accuracy on a split, and the predicted label of each sample."""

    loss: float
    acc: float
    predicted: torch.Tensor  # (N,) in the split's order


@torch.no_grad()
def evaluate(model: nn.Module, split: SplitLike, batch_size: int = 256) -> Evaluation:
    """Loss, accuracy and predictions of `model` on `split`."""
    model.eval()
    device = next(model.parameters()).device
    loss, predicted = 0.0, []
    for images, labels in split.batches(batch_size):
        logits = model(images.to(device))
        loss += F.cross_entropy(logits, labels.to(device), reduction="sum").item()
        predicted.append(logits.argmax(dim=1).cpu())
    labels_hat = torch.cat(predicted)
    acc = int((labels_hat == split.labels).sum()) / len(split)
    return Evaluation(loss / len(split), acc, labels_hat)
