"""One training epoch and one evaluation pass: shared by source pretraining and trials."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trainable.data import SplitLike


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast when `amp` (the loop sets it on a GPU: tensor cores, half the activation
    memory, and no loss scaling, unlike fp16); else full precision."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: SplitLike,
    batch_size: int,
    generator: torch.Generator,
    amp: bool = False,
    epoch: int = 0,
) -> float:
    """One pass over `split` in a shuffled order (the augmented views of `epoch`); returns the
    mean training loss."""
    model.train()
    device = next(model.parameters()).device
    total, seen = 0.0, 0
    for images, labels in split.batches(batch_size, generator, epoch):
        images, labels = split.inputs(images, device), labels.to(device, non_blocking=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(images).float(), labels)
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


def classes_missed(labels: torch.Tensor, predicted: torch.Tensor) -> int:
    """How many classes present in `labels` appear nowhere in `predicted`."""
    return len(set(labels.tolist()) - set(predicted.tolist()))


@torch.no_grad()
def evaluate(
    model: nn.Module, split: SplitLike, batch_size: int = 256, amp: bool = False
) -> Evaluation:
    """Loss, accuracy and predictions of `model` on `split`."""
    model.eval()
    device = next(model.parameters()).device
    loss, predicted = 0.0, []
    for images, labels in split.batches(batch_size):
        with autocast(device, amp):
            logits = model(split.inputs(images, device)).float()
        loss += F.cross_entropy(logits, labels.to(device), reduction="sum").item()
        predicted.append(logits.argmax(dim=1).cpu())
    labels_hat = torch.cat(predicted)
    acc = int((labels_hat == split.labels).sum()) / len(split)
    return Evaluation(loss / len(split), acc, labels_hat)
