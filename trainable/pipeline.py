"""A trial's input pipeline: image files decoded by persistent DataLoader workers.

Splits held in memory (digits, cached features) are sliced in the trial's own process, as
before. Splits decoded from files (image folders, torchvision data sets) go through one
`torch.utils.data.DataLoader` per trial, shared by its splits: `workers` processes, started
on the first batch and kept for every later pass (persistent, `prefetch` batches ahead each),
copying into pinned memory when the trial trains on a GPU. The batches and their order are
planned in the trial's process (trainable.data.batch_indices) and each sample's augmentation
is drawn from its own generator (trainable.data.sample_rng): what a trial sees does not depend
on the number of workers. An image that cannot be read comes back as its one-line DataError,
raised in the trial's process, not as a worker traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from trainable.catalog import DataError
from trainable.data import SplitLike, batch_indices

PREFETCH = 4  # batches queued per worker: a GPU step never waits while a worker is between files


def default_workers(cpus: float) -> int:
    """Loader workers for a trial given `cpus` CPUs: one per whole CPU, at least one. With one
    CPU the worker decodes while the trial's own thread waits on the GPU (or trains)."""
    return max(1, int(cpus))


@dataclass(frozen=True)
class _Failed:
    """A sample whose image could not be read: its one-line message."""

    message: str


class _Samples(Dataset):
    """(split name, epoch, index) -> (image, label), or _Failed."""

    def __init__(self, splits: dict[str, SplitLike]) -> None:
        self.splits = splits

    def __len__(self) -> int:  # not used: the plan names every sample
        return sum(len(split) for split in self.splits.values())

    def __getitem__(self, key: tuple[str, int, int]) -> tuple[torch.Tensor, int] | _Failed:
        name, epoch, index = key
        split = self.splits[name]
        try:
            return split.sample(index, epoch), int(split.labels[index])
        except DataError as error:  # a file changed since the search checked it
            return _Failed(str(error))


class _Plan:
    """The DataLoader's batch sampler: the batches of the current pass, set before each pass
    (it is iterated in the trial's process, so the workers see every new plan)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[str, int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor] | _Failed:
    failed = next((item for item in items if isinstance(item, _Failed)), None)
    if failed is not None:
        return failed
    # PyTorch's own: in a worker it stacks straight into shared memory (no copy to send it)
    return default_collate(items)


class Pipeline:
    """The batches of a trial's splits; `workers` 0 decodes in this process."""

    def __init__(
        self, splits: dict[str, SplitLike], workers: int, pin_memory: bool = False
    ) -> None:
        self.splits = splits
        self.workers = workers
        self.pin_memory = pin_memory
        self._plan = _Plan()
        self._loader: DataLoader | None = None  # made on the first decoded pass

    def split(self, name: str) -> SplitLike:
        """Split `name`, its batches through this pipeline (in memory: the split itself)."""
        split = self.splits[name]
        if not split.decodes or self.workers == 0:
            return split
        return PipedSplit(self, name)

    def batches(
        self, name: str, batch_size: int, generator: torch.Generator | None, epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The mini-batches of split `name` in `epoch`, decoded by the workers."""
        size = len(self.splits[name])
        self._plan.batches = [
            [(name, epoch, int(i)) for i in index]
            for index in batch_indices(size, batch_size, generator)
        ]
        iterator = iter(self._started())
        try:
            for batch in iterator:
                if isinstance(batch, _Failed):
                    raise DataError(batch.message)
                yield batch
        finally:  # a pass left early (an error, or its consumer stopped): end it cleanly
            self._plan.batches.clear()  # no more batches are asked for
            with contextlib.suppress(Exception):
                for _ in iterator:  # and those in flight are taken: the workers stand idle
                    pass

    def _started(self) -> DataLoader:
        if self._loader is None:
            self._loader = DataLoader(
                _Samples(self.splits),
                batch_sampler=self._plan,
                num_workers=self.workers,
                collate_fn=_collate,
                pin_memory=self.pin_memory,
                persistent_workers=True,
                prefetch_factor=PREFETCH,
                # Its own seed source: the iterator it starts draws a seed, which from torch's
                # global generator would shift the trial's dropout by the number of workers.
                generator=torch.Generator(),
                # Linux's default start method: the workers inherit the data set as it is.
                multiprocessing_context="fork" if os.name == "posix" else None,
            )
        return self._loader

    def close(self) -> None:
        """Stop the workers now. Left to the garbage collector, an iterator caught in a
        reference cycle (a DataError's traceback holds one) has its queues closed before it
        can tell the workers to stop, and each waits out a 5 s join."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)  # PyTorch keeps the persistent one here
        if iterator is not None:
            iterator._shutdown_workers()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class PipedSplit(SplitLike):
    """A decoded split whose mini-batches come from its pipeline's workers."""

    pipeline: Pipeline
    name: str

    @property
    def source(self) -> SplitLike:
        return self.pipeline.splits[self.name]

    @property
    def labels(self) -> torch.Tensor:  # type: ignore[override]
        return self.source.labels

    def sample(self, index: int, epoch: int = 0, key: int | None = None) -> torch.Tensor:
        return self.source.sample(index, epoch, key)

    def inputs(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.source.inputs(images, device)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, epoch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.pipeline.batches(self.name, batch_size, generator, epoch)

    def fingerprint(self) -> str:
        return self.source.fingerprint()
