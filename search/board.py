"""`scripts/board.py EXPERIMENT_DIR`: TensorBoard on one experiment, for this machine only.

TensorBoard binds to 127.0.0.1 unless `--host` says otherwise: its pages show the experiment's
configurations and results to anyone who can reach the port.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from search.storage import EXPERIMENT_HELP, local_experiment
from search.usage import OneLineErrorParser, UsageError

LOCAL_HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    """The flags of scripts/board.py."""
    p = OneLineErrorParser(
        prog="board.py", description="Browse an experiment's trials in TensorBoard."
    )
    p.add_argument("experiment", help=EXPERIMENT_HELP)
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to serve on; 0: any free port (default: the first free one from 6006)",
    )
    p.add_argument(
        "--host",
        default=LOCAL_HOST,
        help=f"address to bind (default: {LOCAL_HOST}, this machine only; 0.0.0.0 exposes the "
        "board to the network)",
    )
    return p


def experiment_logdir(path: str) -> Path:
    """The experiment folder `path`, checked to hold TensorBoard event files."""
    root = local_experiment(path)
    if not root.is_dir():
        raise UsageError(f"no experiment folder at {root}")
    if next(root.glob("*/events.out.tfevents.*"), None) is None:
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


def main(argv: list[str] | None = None) -> int:
    """Serve TensorBoard on the experiment until Ctrl-C; exit 2 on bad input."""
    try:
        args = build_parser().parse_args(argv)
        root = experiment_logdir(args.experiment)
        url = start_board(root, args.host, args.port)
    except UsageError as error:
        print(f"board.py: error: {error}", file=sys.stderr)
        return 2
    print(f"TensorBoard on {root}: {url}", flush=True)
    print(
        "HParams tab: one row per trial (set Log scale for backbone_lr and head_lr in the "
        "parallel-coordinates view); Scalars: per-epoch curves; Images: confusion matrices. "
        "Ctrl-C stops it."
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
