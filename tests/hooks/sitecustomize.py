"""Test hook: Python imports this at start-up when tests put this folder on PYTHONPATH.

It registers the space `diverging`, whose head_lr choices include one that makes the loss
overflow in the first epoch, so a real CLI sweep can show how a diverged trial ends.
"""

from spaces.registry import SPACES, Space


def diverging() -> dict:
    """A linear probe whose head learning rate is fine (1e-2) or absurd (1e38)."""
    from ray import tune

    return {
        "freeze_depth": 5,
        "backbone_lr": 1e-3,
        "head_lr": tune.choice([1e-2, 1e38]),  # 1e38: float32 overflows in one epoch
    }


SPACES["diverging"] = Space(diverging, "resnet18")
