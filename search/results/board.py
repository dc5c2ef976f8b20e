"""TensorBoard on one experiment, for this machine only (search/cli/board.py runs it).

TensorBoard binds to 127.0.0.1 unless `--host` says otherwise: its pages show the experiment's
configurations and results to anyone who can reach the port.
"""

from __future__ import annotations

import sys
from pathlib import Path

from search.config.usage import UsageError
from search.experiment.layout import EVENTS_GLOB
from search.experiment.storage import local_experiment


def experiment_logdir(path: str) -> Path:
    """The experiment folder `path`, checked to hold TensorBoard event files."""
    root = local_experiment(path)
    if not root.is_dir():
        raise UsageError(f"no experiment folder at {root}")
    if next(root.glob(f"*/{EVENTS_GLOB}"), None) is None:
        raise UsageError(
            f"{root} holds no trial with TensorBoard event files; give an experiment folder "
            "(runs/NAME) whose trials have started"
        )
    return root


def start_board(root: Path, host: str, port: int | None) -> str:
    """Start TensorBoard on `root` in a background thread; return its URL."""
    from tensorboard import program  # imported here: it takes a second, and --help needs none

    if port is not None and not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {port}")
    board = program.TensorBoard()
    # A trial's folder holds several event files (the search's and the trial's own, and one
    # more per resume): reload them all, not only the newest, while trials still run.
    flags = [sys.argv[0], "--logdir", str(root), "--host", host, "--reload_multifile", "true"]
    if port is not None:
        flags += ["--port", str(port)]
    board.configure(argv=flags)
    try:
        return board.launch()
    except program.TensorBoardPortInUseError:
        raise UsageError(
            f"port {port} is in use; choose another --port (0: any free port)"
        ) from None
