"""`scripts/board.py EXPERIMENT_DIR`: TensorBoard on one experiment, for this machine only.

TensorBoard binds to 127.0.0.1 unless `--host` says otherwise: its pages show the experiment's
configurations and results to anyone who can reach the port.
"""

from __future__ import annotations

import argparse
import sys
import time

from search.config.usage import EXPERIMENT_HELP, OneLineErrorParser, UsageError

LOCAL_HOST = "127.0.0.1"


def build_parser(prog: str = "board.py") -> argparse.ArgumentParser:
    """The flags of scripts/board.py."""
    p = OneLineErrorParser(prog=prog, description="Browse an experiment's trials in TensorBoard.")
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


def main(argv: list[str] | None = None, prog: str = "board.py") -> int:
    """Serve TensorBoard on the experiment until Ctrl-C; exit 2 on bad input."""
    try:
        args = build_parser(prog).parse_args(argv)
        from search.results.board import experiment_logdir, start_board

        root = experiment_logdir(args.experiment)
        url = start_board(root, args.host, args.port)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
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
