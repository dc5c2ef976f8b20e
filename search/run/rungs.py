"""ASHA whose rungs stop only trials that are clearly behind: a rung's decision must mean
something on the validation set the trials are measured on.

Ray's ASHA stops a trial at a rung when its metric is below the rung's cutoff (the best
1/reduction_factor of the trials recorded there), by however little. On few-shot data an early
rung's differences are mostly noise: on the digits image folder from scratch, a rung at epoch 2
or 3 stopped the trial that would end best in 2 of 2 seeds (BENCHMARKS.md, "ASHA's rungs").
Here a rung stops a trial only when it trails the cutoff by more than a 95 % test on the
validation set's size can tell apart (search.results.trust.detectable_difference): about 0.09
of accuracy at 0.5 with 250 images, 0.03 with 2,000.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from search.config.settings import METRIC, SearchSettings, asha_rungs, steps_per_epoch
from search.results.trust import detectable_difference


class _ClearlyBehindBracket(_Bracket):
    """A bracket whose cutoff is lowered by what `val_images` cannot tell apart."""

    def __init__(self, *args: Any, val_images: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.val_images = val_images

    def cutoff(self, recorded: dict) -> float | None:
        cut = super().cutoff(recorded)
        if cut is None or self.val_images <= 0:
            return cut
        return float(cut) - detectable_difference(float(cut), self.val_images)


class ClearlyBehindASHA(ASHAScheduler):
    """Ray's ASHA (one bracket), stopping at a rung only the trials whose accuracy trails the
    rung's cutoff by more than `val_images` validation images can tell apart. For a metric
    that is a share of `val_images` (val_acc), maximised."""

    def __init__(
        self,
        *,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        val_images: int,
    ) -> None:
        super().__init__(
            time_attr=time_attr,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
        self.val_images = val_images
        self._brackets = [
            _ClearlyBehindBracket(grace_period, max_t, reduction_factor, 0, val_images=val_images)
        ]


def describe_rungs(
    settings: SearchSettings, train_images: int, val_images: int, batch_size: int
) -> str:
    """When ASHA compares trials, and how far behind a trial must be for a rung to stop it."""
    per_epoch = steps_per_epoch(train_images, batch_size)
    steps = f"{per_epoch} optimizer step{'s' if per_epoch > 1 else ''} per epoch"
    rungs = asha_rungs(settings.grace_period, settings.reduction_factor, settings.max_epochs)
    if not rungs:
        return f"ASHA stops no trial: its first rung, epoch {settings.grace_period}, is the last"
    return (
        f"ASHA compares trials at epoch {', '.join(map(str, rungs))} ({steps}); a rung stops a "
        f"trial only when it trails the best 1/{settings.reduction_factor} by more than "
        f"{val_images} validation images can tell apart (about "
        f"{detectable_difference(0.5, val_images):.2f} in {METRIC} at 0.5)"
    )
