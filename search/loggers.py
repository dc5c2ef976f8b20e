"""Where results stream: TensorBoard (Tune's TBX logger) and Weights & Biases (its Tune callback).

W&B never needs an account: `auto` logs online only when W&B is configured (an API key in
the environment or in ~/.netrc, or WANDB_MODE set), else offline into the experiment folder,
to be uploaded later with `wandb sync`.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune import Callback
from ray.tune.logger import TBXLoggerCallback

from search.settings import SearchSettings, UsageError

WANDB_PROJECT = "transfer-tune"  # override with the WANDB_PROJECT environment variable
# Seconds the end of a sweep waits for W&B runs to finish writing (offline: well under one).
WANDB_FINISH_TIMEOUT_S = 30


def wandb_has_credentials() -> bool:
    """True when W&B can log in without asking: an API key in the environment or ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str) -> str:
    """The W&B mode a search runs with: "online", "offline" or "disabled"."""
    if requested == "auto":
        env = os.environ.get("WANDB_MODE", "")
        if env in ("offline", "disabled", "online"):
            return env
        return "online" if wandb_has_credentials() else "offline"
    if requested == "online" and not wandb_has_credentials():
        raise UsageError(
            "--wandb online needs W&B credentials (WANDB_API_KEY or `wandb login`); "
            "use --wandb offline and `wandb sync` later"
        )
    return requested


def build_callbacks(settings: SearchSettings, wandb_mode: str) -> list[Callback]:
    """TensorBoard event files per trial, and one W&B run per trial grouped by experiment."""
    callbacks: list[Callback] = [TBXLoggerCallback()]
    if wandb_mode != "disabled":
        callbacks.append(
            WandbLoggerCallback(
                project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
                group=settings.name,
                upload_timeout=WANDB_FINISH_TIMEOUT_S,
                # passed on to wandb.init:
                job_type=settings.space,
                mode=wandb_mode,
                dir=str(settings.experiment_dir),  # runs land in <experiment>/wandb/
            )
        )
    return callbacks


def wandb_offline_runs(experiment_dir: Path) -> list[Path]:
    """The offline W&B runs written by a search, to pass to `wandb sync`."""
    return sorted((experiment_dir / "wandb").glob("offline-run-*"))
