"""Which W&B mode a search runs in. W&B never needs an account and never prompts.

`auto` logs online only when W&B is configured (an API key in the environment or in the netrc
file, or WANDB_MODE set by the user), else offline into the experiment folder, to be uploaded
later with `wandb sync`.
"""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

WANDB_MODES = ("auto", "offline", "online", "disabled")


def wandb_has_credentials() -> bool:
    """True when W&B can log in without asking: an API key in the environment or netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str) -> str:
    """The mode a search runs with, "online", "offline" or "disabled", for a `--wandb` value."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE", "")
    if env in ("offline", "disabled", "online"):
        return env
    return "online" if wandb_has_credentials() else "offline"


def set_wandb_environment(requested: str) -> str:
    """Resolve the W&B mode and put it in this process's environment, where W&B's Tune
    callback and every process Ray starts from now on read it; return it. Call it before Ray
    starts: Ray's worker processes keep the environment they were started with."""
    mode = resolve_wandb_mode(requested)
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")  # no W&B banner per trial
    return mode


def wandb_mode_problems(requested: str) -> list[str]:
    """[] when the requested mode can run here; else why not."""
    if requested == "online" and not wandb_has_credentials():
        return [
            "--wandb online needs W&B credentials (WANDB_API_KEY or `wandb login`); "
            "use --wandb offline and `wandb sync` later"
        ]
    return []
