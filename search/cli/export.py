"""`scripts/export.py EXPERIMENT_DIR --out MODEL.pt [--retrain]`: the best model, ready to use
(search/results/export.py does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.config.usage import EXPERIMENT_HELP, OneLineErrorParser, UsageError, check_out


def build_parser(prog: str = "export.py") -> argparse.ArgumentParser:
    """The flags of scripts/export.py."""
    p = OneLineErrorParser(
        prog=prog,
        description="Export the best model of an experiment, evaluated on its test split.",
    )
    p.add_argument("experiment", help=EXPERIMENT_HELP)
    p.add_argument("--out", required=True, help="the model file to write (must not exist)")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="fit the best configuration again on train+validation images for the full "
        "epoch budget (seeded) instead of taking its checkpoint",
    )
    p.add_argument(
        "--test-images",
        metavar="DIR",
        help="also write the test split's images as PNG files, DIR/CLASS/NNNNN.png, for "
        "predict.py (DIR must not exist or be empty)",
    )
    return p


def main(argv: list[str] | None = None, prog: str = "export.py") -> int:
    """Export the best model; exit 2 on bad input (one line)."""
    try:
        args = build_parser(prog).parse_args(argv)
        from search.experiment.storage import best_checkpoint, local_experiment

        root = local_experiment(args.experiment)
        best_checkpoint(root)  # before torch is imported: a wrong folder answers at once
        check_out(Path(args.out), "--out")
        test_images = Path(args.test_images) if args.test_images else None
        from search.results.export import export_best  # torch: the input is good

        export_best(root, Path(args.out), args.retrain, test_images)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted before the model file was written.", file=sys.stderr)
        return 130
    return 0
